"""Integer-aware entropy networks (codec/integer_torch.py): the torch entropy networks of a model with
integer_bits compute exactly what the coder's integer networks compute, and a run trained that
way keeps its bits and exponents through resume and export."""
import numpy as np
import pytest
import torch

from aecodec.cli import main as cli_main
from aecodec.codec import engines
from aecodec.codec.families.checkerboard import anchors
from aecodec.codec.model import AecModel
from aecodec.codec.weights import Weights
from aecodec.errors import AecError
from aecodec.train.checkpoint import STATE_FILE, read_meta
from aecodec.codec.integer_torch import make_integer_aware
from aecodec.train.config import parse_integer_bits as parse_bits


@pytest.fixture(scope="module")
def narrow(kodim23):
    """The shipped default model calibrated at 8-bit weights and 9-bit activations on a crop."""
    from aecodec.codec.zoo import DEFAULT_MODEL, shipped_model_bytes
    from aecodec.train.evaluate import coding_copy
    from aecodec.train.export import integer_exponents

    shipped = Weights.from_bytes(shipped_model_bytes(DEFAULT_MODEL)[0])
    rgb = np.asarray(kodim23.crop((0, 0, 256, 192)))
    exps = integer_exponents(coding_copy(AecModel.from_weights(shipped)), [("crop", rgb)], (8, 9))
    return Weights(shipped.tensors, shipped.config.with_integer(exps, (8, 9)), "narrow", bytes(32), shipped.default_k)


@torch.no_grad()
def test_the_integer_aware_networks_compute_the_coders_values_exactly(narrow, kodim23):
    engine = engines.create("numpy", narrow)
    coder = engine.coder
    y_hat, z = engine.quantize(engine.analyze(np.asarray(kodim23.crop((256, 192, 512, 384)))), 2, narrow.config.M)
    y_hat = engine.to_chw(y_hat)
    z_hat = coder.z_hat(np.round(engine.to_chw(z) - coder.medians[:, None, None]).astype(np.int32))
    params = coder.hyper_parameters(z_hat)
    is_anchor = anchors(*y_hat.shape[1:])
    corrected = coder.context.correct(params, y_hat, is_anchor)

    model = AecModel.from_weights(narrow).eval()  # integer-aware: its config has integer_bits
    got = model.h_s(torch.from_numpy(z_hat)[None]).double()[0].numpy()
    assert np.array_equal(got, params)
    out = model.context(torch.from_numpy(params).float()[None], torch.from_numpy(y_hat)[None])[0].double().numpy()
    assert np.array_equal(out[:, ~is_anchor], corrected)
    assert np.array_equal(out[:, is_anchor], params[:, is_anchor].astype(np.float32))
    plain = AecModel(narrow.config.with_integer(None))  # the float networks differ: the rounding is real
    plain.load_state_dict(model.state_dict())
    assert not np.array_equal(plain.eval().h_s(torch.from_numpy(z_hat)[None]).double()[0].numpy(), params)
    # a copy computes with its own weights (the integer forwards are bound methods)
    import copy

    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.h_s[0].weight.mul_(0.5)
    assert not np.array_equal(twin.h_s(torch.from_numpy(z_hat)[None]).double()[0].numpy(), params)
    assert np.array_equal(model.h_s(torch.from_numpy(z_hat)[None]).double()[0].numpy(), params)
    make_integer_aware(model)  # idempotent
    assert np.array_equal(model.h_s(torch.from_numpy(z_hat)[None]).double()[0].numpy(), params)


def test_rounding_passes_gradients_straight_through_and_none_where_clipped():
    from aecodec.codec.integer_torch import activations

    x = torch.tensor([0.3, -0.3, 1000.0], requires_grad=True)
    activations(x, 2, False, 8).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 0.0]  # below 0 and above the top: clipped


def test_bits_are_parsed_or_refused():
    assert parse_bits("8,9") == (8, 9) and parse_bits("") is None
    for bad in ("8", "8,x", "1,9", "8,17", "8,9,10"):
        with pytest.raises(AecError, match="integer-bits"):
            parse_bits(bad)


def test_cli_integer_aware_run_keeps_its_bits_and_exponents(photo_dir, tiny_weights, tmp_path):
    rdir = tmp_path / "int"
    args = ["train", str(rdir), "--data", str(photo_dir), "--init", str(tiny_weights), "--steps", "2",
            "--batch", "2", "--crop", "64", "--threads", "1", "--no-compile", "--quiet", "--context"]
    assert cli_main(args + ["--integer-bits", "8,x"]) == 1
    assert cli_main(args + ["--integer-bits", "8,9"]) == 0
    meta = read_meta(rdir / STATE_FILE)
    assert meta["config"]["integer_bits"] == "8,9" and meta["model_config"]["integer_bits"] == [8, 9]
    exps = meta["model_config"]["integer"]
    assert set(exps) == {"h_s", "context"}
    assert cli_main(["train", str(rdir), "--steps", "1", "--quiet"]) == 0  # resumes integer-aware
    assert cli_main(["train", str(rdir), "--steps", "1", "--integer-bits", "12,12", "--quiet"]) == 1
    w = tmp_path / "int.safetensors"
    assert cli_main(["export", str(rdir), "-o", str(w), "--default-k", "8"]) == 0
    loaded = Weights.from_file(w)
    assert loaded.config.integer_bits == (8, 9) and dict(loaded.config.integer) == {k: tuple(v) for k, v in exps.items()}
    c = loaded.coder()
    assert c.h_s.abits == 9 and c.context.abits == 9
    again = tmp_path / "again.safetensors"  # an export of an export (new tables, say) keeps them too
    assert cli_main(["export", str(w), "-o", str(again), "--default-k", "8", "--data", str(photo_dir)]) == 0
    assert Weights.from_file(again).config == loaded.config
