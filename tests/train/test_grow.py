"""train/grow.py: a wider model computes exactly what the model it grew from computed, and its new
channels then learn."""
import pytest
import torch

from aecodec.codec.model import AecModel
from aecodec.codec.spec import ModelConfig
from aecodec.train.grow import widen

BASE = ModelConfig(N=16, M=24, family="checkerboard")
WIDE = BASE.with_layers(
    g_a=["conv 3>24 k5 s2 f32", "gdn 24", "conv 24>32 k5 s2", "gdn 32", "conv 32>32 k5 s2", "gdn 32",
         "conv 32>24 k5 s2 f32"],
    g_s=["deconv 24>32 k5 s2", "igdn 32", "deconv 32>32 k5 s2", "igdn 32", "deconv 32>24 k5 s2", "igdn 24",
         "deconv 24>3 k5 s2 f32"])


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    m = AecModel(BASE)
    with torch.no_grad():  # trained-looking GDNs and a context that matters
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.add_(0.05 * torch.rand_like(p))
        m.context.ep[-1].weight.normal_(0, 0.05)
    return m


def test_a_wider_model_computes_the_same_function(base):
    wide = widen(base, WIDE)
    assert wide.g_s[0].weight.shape == (24, 32, 5, 5) and wide.config.layers()["g_a"][2].cout == 32
    x, q, noise = torch.rand(2, 3, 64, 64), torch.tensor([2, 8]), torch.rand(2, 24, 4, 4) - 0.5
    a, b = base.eval()(x, q, 16, noise=noise), wide.eval()(x, q, 16, noise=noise)
    assert torch.allclose(a["y"], b["y"], atol=1e-6)
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-6)
    assert torch.equal(a["likelihoods"]["z"], b["likelihoods"]["z"])
    assert torch.allclose(a["likelihoods"]["y"], b["likelihoods"]["y"], rtol=1e-5)


def test_the_new_channels_learn(base):
    wide = widen(base, WIDE).train()
    x, q = torch.rand(2, 3, 64, 64), torch.tensor([2, 8])
    opt = torch.optim.SGD(wide.parameters(), lr=1e-2)
    for _ in range(2):  # the first step moves the zero weights, the second the new units' inputs too
        out = wide(x, q, 16)
        loss = (out["x_hat"] - x).square().mean() - sum(torch.log(v).mean() for v in out["likelihoods"].values()) * 1e-3
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert wide.g_s[2].weight[:16, 16:].abs().sum() > 0  # old outputs now read new inputs
    assert wide.g_s[0].weight.grad[:, 16:].abs().sum() > 0  # new units get a gradient


def test_only_wider_layouts_grow(base):
    narrower = BASE.with_layers(g_s=["deconv 24>8 k5 s2", "igdn 8", "deconv 8>16 k5 s2", "igdn 16",
                                     "deconv 16>16 k5 s2", "igdn 16", "deconv 16>3 k5 s2 f32"])
    with pytest.raises(ValueError, match="at least as many channels"):
        widen(base, narrower)
    with pytest.raises(ValueError, match="keeps N"):
        widen(base, ModelConfig(N=24, M=24, family="checkerboard"))


def test_widened_names_the_hidden_widths_and_a_run_grows_with_it(photo_dir, tmp_path):
    from aecodec.cli import main as cli_main
    from aecodec.codec.weights import export_bytes
    from aecodec.errors import AecError
    from aecodec.train.checkpoint import STATE_FILE, read_meta
    from aecodec.train.grow import widened

    assert widened(BASE, "g_s=32").layers()["g_s"] == ModelConfig(N=32, M=24, family="checkerboard").layers()["g_s"]
    assert widened(BASE, "g_a=32,h_s=20").layers()["h_s"][-1].cout == 48  # its ends stay
    with pytest.raises(AecError, match="--widen"):
        widened(BASE, "g_x=3")
    torch.manual_seed(0)
    src = tmp_path / "cb.safetensors"
    src.write_bytes(export_bytes(AecModel(BASE), "cb", [12] * 8))
    rdir = tmp_path / "wide"
    assert cli_main(["train", str(rdir), "--data", str(photo_dir), "--init", str(src), "--steps", "1",
                     "--batch", "2", "--crop", "64", "--threads", "1", "--quiet", "--widen", "g_s=32"]) == 0
    config = read_meta(rdir / STATE_FILE)["model_config"]
    assert config["layers"]["g_s"][0] == "deconv 24>32 k5 s2"
    assert cli_main(["train", str(rdir), "--steps", "1", "--quiet", "--widen", "g_s=40"]) == 1  # a run keeps it
