"""The checkerboard context: coding is exact and identical across engines, a model gains a context
without its coding changing, the float64 coder computes what the torch model trains, damaged
streams are refused, and a context run trains, resumes and exports."""
import numpy as np
import pytest
import torch

from aecodec.codec.entropy_coder import CheckerboardContext, checkerboard
from aecodec.codec.layers import anchor_mask
from aecodec.codec.model import PAD, AecModel, ModelConfig
from aecodec.codec.numpy_model import NumpyModel
from aecodec.codec.weights import export_bytes
from aecodec.train.checkpoint import initial_model

TINY = ModelConfig(N=16, M=24, means=True, context=True)


@pytest.fixture(scope="module")
def ctx_model():
    torch.manual_seed(0)
    m = AecModel(TINY)
    with torch.no_grad():  # a correction that matters (it starts at zero)
        m.context.ep[-1].weight.normal_(0, 0.05)
        m.context.ep[-1].bias.normal_(0, 0.5)
        m.h_s[4].bias[24:] = torch.linspace(-3, 3, 24)
    return m.eval().update(force=True) and m


def _latents(m, seed=0, size=(2 * PAD, 3 * PAD)):
    torch.manual_seed(seed)
    with torch.no_grad():
        return m.analyze(torch.rand(1, 3, *size) * 3, 6, 16)


def _params(m, z, y_hat):
    med = m.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
    return m.h_s(torch.round(z - med) + med), y_hat


def test_masks_agree_and_taps_are_the_anchors():
    assert np.array_equal(checkerboard(5, 6), anchor_mask(5, 6)[0, 0].numpy().astype(bool))
    assert checkerboard(1, 1)[0, 0] and not checkerboard(1, 2)[0, 1]
    assert len(CheckerboardContext.TAPS) == 12  # the 5x5 neighbours of a non-anchor that are anchors


def test_context_codes_exactly_and_the_same_in_both_engines(ctx_model):
    y_hat, z = _latents(ctx_model)
    y_bytes, z_bytes = ctx_model.encode_latents(y_hat, z)
    assert torch.equal(ctx_model.decode_latents(y_bytes, z_bytes, (2, 3)), y_hat)
    tensors = {k: v.numpy() for k, v in ctx_model.state_dict().items()}
    numpy_model = NumpyModel(tensors, TINY, "tiny", b"\0" * 32, [16] * 8)
    y_np = numpy_model.decode_latents(y_bytes, z_bytes, (2, 3))
    assert np.array_equal(y_np, y_hat[0].permute(1, 2, 0).numpy())
    assert numpy_model.encode_latents(y_np, z[0].permute(1, 2, 0).numpy()) == (y_bytes, z_bytes)


def test_float64_context_matches_the_trained_network(ctx_model):
    """What the coder computes is what training optimised: torch float32 vs numpy float64."""
    y_hat, z = _latents(ctx_model, seed=1)
    with torch.no_grad():
        params, _ = _params(ctx_model, z, y_hat)
        trained = ctx_model.context(params, y_hat)[0].numpy()
    coder = ctx_model.entropy_coder()
    anchors = checkerboard(*y_hat.shape[-2:])
    coded = coder.context.correct(params[0].double().numpy(), y_hat[0].numpy(), anchors)
    assert np.abs(coded - trained[:, ~anchors]).max() < 1e-4 * (1 + np.abs(trained).max())
    assert np.array_equal(trained[:, anchors], params[0].numpy()[:, anchors])  # anchors: hyperprior only


def test_a_model_gains_a_context_with_its_coding_unchanged(tmp_path):
    torch.manual_seed(2)
    base = AecModel(ModelConfig(N=16, M=24, means=True))
    with torch.no_grad():
        base.h_s[4].bias[24:] = torch.linspace(-3, 3, 24)
    base.eval().update(force=True)
    f = tmp_path / "base.safetensors"
    f.write_bytes(export_bytes(base, "base", [12] * 8))
    m = initial_model(str(f), context=True).eval()
    assert m.config.context and m.config.means
    m.update(force=True)
    y_hat, z = _latents(base, seed=3)
    with torch.no_grad():
        params, _ = _params(base, z, y_hat)
        assert torch.equal(m.context(params, y_hat), params)  # zero correction
    a, b = base.encode_latents(y_hat, z), m.encode_latents(y_hat, z)
    assert a[1] == b[1] and abs(len(a[0]) - len(b[0])) <= 0.01 * len(a[0]) + 4  # same rate, other order
    assert torch.equal(m.decode_latents(*b, (2, 3)), y_hat)


@pytest.mark.parametrize("damage", ["truncate", "flip", "append"])
def test_damaged_context_streams_are_refused(ctx_model, damage):
    y_hat, z = _latents(ctx_model, seed=4)
    y_bytes, z_bytes = ctx_model.encode_latents(y_hat, z)
    bad = {"truncate": y_bytes[: len(y_bytes) // 2],
           "flip": y_bytes[:10] + bytes([y_bytes[10] ^ 0x40]) + y_bytes[11:],
           "append": y_bytes + b"\x01\x02"}[damage]
    with pytest.raises(ValueError):
        ctx_model.decode_latents(bad, z_bytes, (2, 3))


def test_context_trains_and_refines(ctx_model):
    m = AecModel(TINY).train()
    x = torch.rand(2, 3, 64, 64)
    out = m(x, torch.tensor([2, 7]), k=12)
    loss = out["x_hat"].mean() + out["likelihoods"]["y"].log().mean()
    loss.backward()
    assert m.context.ep[-1].weight.grad.abs().sum() > 0  # the correction learns from the rate
    assert m.context.ctx_weight.grad is not None  # zero at first: the correction starts at zero
    m.eval()
    from aecodec.codec.refine import refine

    y_hat, z = _latents(ctx_model, seed=5, size=(PAD, PAD))
    with torch.no_grad():
        g, _ = ctx_model._gains(6, "cpu")
        y_scaled = ctx_model.g_a(torch.rand(1, 3, PAD, PAD)) * g
    costs = []

    def real_cost(y, zz):
        yb, zb = ctx_model.encode_latents(y, zz)
        costs.append(len(yb) + len(zb))
        return costs[-1]

    best = refine(ctx_model, torch.rand(1, 3, PAD, PAD), (PAD, PAD), y_scaled, ctx_model.h_a(y_hat.abs()), 6, 16, 1,
                  real_cost)
    assert len(costs) > 1 and real_cost(*best) == min(costs)


def test_training_only_the_context_skips_synthesis_with_the_same_gradient(ctx_model):
    """--train-only context.: g_s runs on every 8th step only; the context's gradient is unchanged."""
    from aecodec.train.config import TrainConfig
    from aecodec.train.step import SYNTHESIS_EVERY, Trainer

    x, q = torch.rand(2, 3, 64, 64), torch.tensor([2, 7])
    noise = torch.rand(2, 24, 4, 4) - 0.5
    grads, g_s_runs = [], []
    for skip in (False, True):
        m = AecModel(TINY)
        m.load_state_dict(ctx_model.state_dict())
        m.g_s.register_forward_hook(lambda *a: g_s_runs.append(skip))
        t = Trainer(m.train(), TrainConfig(train_only="context."))
        assert t.rate_only
        t.steps = 1 if skip else 0  # the first step always synthesizes (the logged PSNR needs one)
        t.last_mse = torch.tensor(0.01)
        t.opt.step = lambda: None  # keep the weights: compare gradients only
        torch.manual_seed(1)
        t.step(x, q, 12, noise=noise)
        grads.append({n: p.grad.clone() for n, p in m.context.named_parameters()})
    assert all(torch.allclose(grads[0][n], grads[1][n], rtol=0, atol=0) for n in grads[0])
    assert g_s_runs == [False] and SYNTHESIS_EVERY > 1
    assert not Trainer(AecModel(TINY), TrainConfig()).rate_only
