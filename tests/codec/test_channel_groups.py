"""The channel-checkerboard family (codec/families/channel_checkerboard.py): it codes exactly in
both engines, its float64 coder computes what the torch model trains, each pass sees only what the
decoder has decoded, a checkerboard model grows into it with its coding unchanged, damaged streams
are refused, and the corrections learn from the rate."""
import numpy as np
import pytest
import torch

from aecodec.codec import engines, families
from aecodec.codec.config import PAD
from aecodec.codec.families.channel_checkerboard import group_bounds
from aecodec.codec.model import AecModel
from aecodec.codec.spec import ModelConfig
from aecodec.codec.weights import Weights, export_bytes
from aecodec.train.checkpoint import initial_model
from test_families import assert_codes_exactly_in_both_engines, damaged

TINY = ModelConfig(N=16, M=24, family="channel-checkerboard")


def _engine(m, kind="torch"):
    return engines.create(kind, Weights.from_model(m, "tiny"), **({"device": "cpu"} if kind == "torch" else {}))


def _randomize_corrections(m, scale=0.05):
    with torch.no_grad():  # corrections that matter (they start at zero)
        for net in m.channel_context.nets:
            net.out[-1].weight.normal_(0, scale)
            net.out[-1].bias.normal_(0, 10 * scale)
        m.context.ep[-1].weight.normal_(0, scale)
        m.h_s[4].bias[24:] = torch.linspace(-3, 3, 24)


@pytest.fixture(scope="module")
def cc_model():
    torch.manual_seed(0)
    m = AecModel(TINY)
    _randomize_corrections(m)
    return m.eval().update(force=True) and m


def _latents(m, seed=0, size=(2 * PAD, 3 * PAD)):
    torch.manual_seed(seed)
    with torch.no_grad():
        return m.quantize_latents(m.g_a(torch.rand(1, 3, *size) * 3), 6, 16)


def test_groups_are_uneven_and_cover_every_channel():
    assert group_bounds(192) == ((0, 16), (16, 32), (32, 64), (64, 192))
    assert group_bounds(24) == ((0, 2), (2, 4), (4, 8), (8, 24))
    with pytest.raises(ValueError):
        group_bounds(3)


def test_codes_exactly_and_the_same_in_both_engines(cc_model):
    assert_codes_exactly_in_both_engines(cc_model, *_latents(cc_model), (2, 3))


def _coder_parameters(coder, params, y_hat):
    """Every position's (indexes, means) as the coder computes them, laid out as y (M, h, w)."""
    M, (h, w) = coder.M, y_hat.shape[1:]
    indexes, means = np.zeros((M, h, w), np.int32), np.zeros((M, h, w), np.float32)

    def code_pass(ix, mn, channels, where):
        indexes[channels][:, where], means[channels][:, where] = ix, mn

    coder._passes(params, y_hat, code_pass)
    return indexes, means


def test_float64_coder_matches_the_trained_network(cc_model):
    """What the coder computes is what training optimised: torch float32 vs numpy float64, at
    every position and channel."""
    y_hat, z = _latents(cc_model, seed=1)
    with torch.no_grad():
        med = cc_model.entropy_bottleneck.quantiles[:, 0, 1].reshape(1, -1, 1, 1)
        params = cc_model.h_s(torch.round(z - med) + med)
        scales, means = cc_model.family.y_parameters(cc_model, params, y_hat)
    coder = Weights.from_model(cc_model).coder()
    indexes, coded_means = _coder_parameters(coder, params[0].double().numpy(), y_hat[0].numpy())
    want_ix, want_means = coder.indexes_means(torch.cat([scales, means], 1)[0].double().numpy())
    assert np.mean(indexes == want_ix) > 0.995 and np.abs(indexes - want_ix).max() <= 1  # table boundaries
    assert np.mean(coded_means == want_means) > 0.995 and np.abs(coded_means - want_means).max() <= 1
    assert not np.array_equal(want_means, coder.indexes_means(params[0].double().numpy())[1])  # corrected


def test_each_pass_sees_only_what_is_decoded(cc_model):
    """Changing the latents a pass must not see (its own and every later pass's) leaves its
    parameters unchanged; changing an earlier pass's changes them."""
    y_hat, z = _latents(cc_model, seed=2)
    with torch.no_grad():
        med = cc_model.entropy_bottleneck.quantiles[:, 0, 1].reshape(1, -1, 1, 1)
        params = cc_model.h_s(torch.round(z - med) + med)[0].double().numpy()
    coder = Weights.from_model(cc_model).coder()
    y0 = y_hat[0].numpy()
    is_anchor = (np.add.outer(np.arange(y0.shape[1]), np.arange(y0.shape[2])) % 2) == 0
    order = [(g, a) for a in (True, False) for g in range(4)]
    base = _coder_parameters(coder, params, y0)
    for n, (g, anchor) in enumerate(order):
        start, end = coder.bounds[g]
        where = is_anchor if anchor else ~is_anchor
        y1 = y0.copy()
        y1[start:end][:, where] += 3  # this pass's own latents
        changed = _coder_parameters(coder, params, y1)
        for m, (g2, a2) in enumerate(order):
            s2, e2 = coder.bounds[g2]
            w2 = is_anchor if a2 else ~is_anchor
            same = np.array_equal(changed[0][s2:e2][:, w2], base[0][s2:e2][:, w2]) and \
                np.array_equal(changed[1][s2:e2][:, w2], base[1][s2:e2][:, w2])
            if m <= n:
                assert same, (order[n], order[m])
    # the last group's non-anchors depend on the first group's (a channel correction that matters)
    y1 = y0.copy()
    y1[0:2] += 3
    assert not np.array_equal(_coder_parameters(coder, params, y1)[1][8:][:, ~is_anchor], base[1][8:][:, ~is_anchor])


def test_a_checkerboard_model_grows_into_channel_groups_with_its_coding_unchanged(tmp_path):
    torch.manual_seed(2)
    base = AecModel(ModelConfig(N=16, M=24, family="checkerboard"))
    with torch.no_grad():
        base.h_s[4].bias[24:] = torch.linspace(-3, 3, 24)
        base.context.ep[-1].weight.normal_(0, 0.05)
    base.update(force=True)
    f = tmp_path / "cb.safetensors"
    f.write_bytes(export_bytes(base, "cb", [12] * 8))
    base = initial_model(str(f)).eval()  # as exported (float16 parts)
    m = initial_model(str(f), family="channel-checkerboard").eval()
    assert m.config.family == "channel-checkerboard" and m.config.to_dict()["family"] == "channel-checkerboard"
    base.update(force=True)
    m.update(force=True)
    y_hat, z = _latents(base, seed=3)
    with torch.no_grad():
        med = base.entropy_bottleneck.quantiles[:, 0, 1].reshape(1, -1, 1, 1)
        params = base.h_s(torch.round(z - med) + med)
        assert torch.equal(m.family.y_parameters(m, params, y_hat)[1], base.family.y_parameters(base, params, y_hat)[1])
    a, b = _engine(base).entropy_code(y_hat, z), _engine(m).entropy_code(y_hat, z)
    assert a[1] == b[1] and abs(len(a[0]) - len(b[0])) <= 0.01 * len(a[0]) + 4  # same rate, other order
    assert torch.equal(_engine(m).decode_latents(*b, (2, 3)), y_hat)
    assert [f.name for f in families.lineage("mean-scale", "channel-checkerboard")] == \
        ["checkerboard", "channel-checkerboard"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "append"])
def test_damaged_streams_are_refused(cc_model, damage):
    y_hat, z = _latents(cc_model, seed=4)
    eng = _engine(cc_model, "numpy")
    y_np, z_np = y_hat[0].permute(1, 2, 0).numpy(), z[0].permute(1, 2, 0).numpy()
    y_bytes, z_bytes = eng.entropy_code(y_np, z_np)
    with pytest.raises(ValueError):
        eng.decode_latents(damaged(y_bytes, damage), z_bytes, (2, 3))


def test_the_channel_corrections_learn_from_the_rate():
    """Trained alone on the rate, fresh corrections (zero at first) lower y's rate."""
    torch.manual_seed(6)
    m = AecModel(TINY).train()
    with torch.no_grad():
        m.h_s[4].bias[:24] = 1.0  # scales above the lower bound, so that correcting them matters
    x, q = torch.rand(2, 3, 64, 64) * 2, torch.tensor([6, 7])
    noise = torch.rand(2, 24, 4, 4) - 0.5
    opt = torch.optim.Adam(m.channel_context.parameters(), lr=1e-3)
    bits = []
    for _ in range(11):
        y_bits = -torch.log2(m(x, q, 24, noise=noise, synthesis=False)["likelihoods"]["y"]).sum()
        opt.zero_grad()
        y_bits.backward()
        opt.step()
        bits.append(y_bits.item())
    assert bits[-1] < 0.9 * bits[0], bits


def test_renumbering_the_latent_channels_keeps_the_codec_the_same_function():
    """model.permute_latent_channels: the same pixels and the same likelihoods, channels renumbered
    (here a checkerboard model with a context that matters)."""
    torch.manual_seed(7)
    m = AecModel(ModelConfig(N=16, M=24, family="checkerboard")).eval()
    with torch.no_grad():
        m.h_s[4].bias[24:] = torch.linspace(-3, 3, 24)
        m.context.ep[-1].weight.normal_(0, 0.05)
    x, q, noise = torch.rand(2, 3, 64, 64), torch.tensor([3, 8]), torch.rand(2, 24, 4, 4) - 0.5
    before = m(x, q, 16, noise=noise)
    order = torch.randperm(24)
    m.permute_latent_channels(order)
    after = m(x, q, 16, noise=noise[:, order])
    assert torch.allclose(after["y"], before["y"][:, order], atol=1e-5)
    assert torch.allclose(after["likelihoods"]["y"], before["likelihoods"]["y"][:, order], rtol=1e-4, atol=1e-7)
    assert torch.allclose(after["x_hat"], before["x_hat"], atol=1e-5)
    with pytest.raises(ValueError):
        m.permute_latent_channels([0] * 24)


def test_a_grown_model_orders_its_channels_by_rate_before_it_learns(cc_model):
    torch.manual_seed(8)
    m = AecModel(TINY).eval()
    with torch.no_grad():  # channel c's latents (and so its rate) grow with c
        m.g_a[-1].weight.mul_(torch.linspace(0.2, 20, 24)[:, None, None, None])
        m.g_a[-1].bias.zero_()
    norms = m.g_a[-1].weight.flatten(1).norm(dim=1)
    m.family.arrange(m, torch.rand(4, 3, 64, 64))
    after = m.g_a[-1].weight.flatten(1).norm(dim=1)
    assert torch.equal(after.sort().values, norms.sort().values)  # renumbered
    assert after[:8].mean() > 2 * after[-8:].mean() and after[0] == norms.max()  # the costliest first
    with pytest.raises(ValueError, match="trained channel context"):
        cc_model.permute_latent_channels(torch.arange(24))
