"""Entropy model families (codec/families/): each codes exactly and identically in every engine,
a model grows into a later family with its coding unchanged, the float64 coder computes what the
torch model trains, damaged streams are refused, the checkerboard context trains and refines, and
a new family is one registered class."""
import numpy as np
import pytest
import torch

from aecodec.codec import engines, families
from aecodec.codec.config import PAD
from aecodec.codec.families.checkerboard import TAPS, anchors, place, positions
from aecodec.codec.model import AecModel
from aecodec.codec.spec import ModelConfig
from aecodec.codec.weights import Weights, export_bytes
from aecodec.train.checkpoint import initial_model

TINY = ModelConfig(N=16, M=24, family="checkerboard")


def _engine(m, kind="torch"):
    """An engine for an in-memory model (its CDF tables current)."""
    return engines.create(kind, Weights.from_model(m, "tiny"), **({"device": "cpu"} if kind == "torch" else {}))


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
        return m.quantize_latents(m.g_a(torch.rand(1, 3, *size) * 3), 6, 16)


def _params(m, z, y_hat):
    med = m.entropy_bottleneck.quantiles[:, 0, 1].reshape(1, -1, 1, 1)
    return m.h_s(torch.round(z - med) + med), y_hat


def test_masks_agree_and_taps_are_the_anchors(ctx_model):
    assert np.array_equal(anchors(5, 6), ctx_model.context.mask(5, 6)[0, 0].numpy().astype(bool))
    assert anchors(1, 1)[0, 0] and not anchors(1, 2)[0, 1]
    assert len(TAPS) == 12  # the 5x5 neighbours of a non-anchor that are anchors


@pytest.mark.parametrize("h,w", [(5, 6), (4, 8), (3, 7), (1, 1), (2, 2)])
def test_anchor_positions_are_the_masks_in_order(h, w):
    """`positions` / `place` (strided copies for even widths) are the boolean mask's gather and
    scatter, in the streams' order."""
    a = np.random.default_rng(0).normal(size=(3, h, w))
    for anchor in (True, False):
        where = anchors(h, w) if anchor else ~anchors(h, w)
        assert np.array_equal(positions(a, anchor), a[:, where])
        b = np.zeros_like(a)
        place(b, a[:, where], anchor)
        assert np.array_equal(b, np.where(where, a, 0))


def assert_codes_exactly_in_both_engines(model, y_hat, z, z_shape):
    """The torch engine's streams decode to y_hat in both engines, and the numpy engine writes the
    same bytes."""
    eng = _engine(model)
    y_bytes, z_bytes = eng.entropy_code(y_hat, z)
    assert torch.equal(eng.decode_latents(y_bytes, z_bytes, z_shape), y_hat)
    numpy_engine = _engine(model, "numpy")
    y_np = numpy_engine.decode_latents(y_bytes, z_bytes, z_shape)
    assert np.array_equal(y_np, y_hat[0].permute(1, 2, 0).numpy())
    assert numpy_engine.entropy_code(y_np, z[0].permute(1, 2, 0).numpy()) == (y_bytes, z_bytes)


def test_context_codes_exactly_and_the_same_in_both_engines(ctx_model):
    assert_codes_exactly_in_both_engines(ctx_model, *_latents(ctx_model), (2, 3))


def test_float64_context_matches_the_trained_network(ctx_model):
    """What the coder computes is what training optimised: torch float32 vs numpy float64."""
    y_hat, z = _latents(ctx_model, seed=1)
    with torch.no_grad():
        params, _ = _params(ctx_model, z, y_hat)
        trained = ctx_model.context(params, y_hat)[0].numpy()
    coder = Weights.from_model(ctx_model).coder()
    is_anchor = anchors(*y_hat.shape[-2:])
    coded = coder.context.correct(params[0].double().numpy(), y_hat[0].numpy(), is_anchor)
    assert np.abs(coded - trained[:, ~is_anchor]).max() < 1e-4 * (1 + np.abs(trained).max())
    assert np.array_equal(trained[:, is_anchor], params[0].numpy()[:, is_anchor])  # anchors: hyperprior only


def test_a_model_gains_a_context_with_its_coding_unchanged(tmp_path):
    torch.manual_seed(2)
    base = AecModel(ModelConfig(N=16, M=24, family="mean-scale"))
    with torch.no_grad():
        base.h_s[4].bias[24:] = torch.linspace(-3, 3, 24)
    base.eval().update(force=True)
    f = tmp_path / "base.safetensors"
    f.write_bytes(export_bytes(base, "base", [12] * 8))
    m = initial_model(str(f), family="checkerboard").eval()
    assert m.config.family == "checkerboard"
    m.update(force=True)
    y_hat, z = _latents(base, seed=3)
    with torch.no_grad():
        params, _ = _params(base, z, y_hat)
        assert torch.equal(m.context(params, y_hat), params)  # zero correction
    a, b = _engine(base).entropy_code(y_hat, z), _engine(m).entropy_code(y_hat, z)
    assert a[1] == b[1] and abs(len(a[0]) - len(b[0])) <= 0.01 * len(a[0]) + 4  # same rate, other order
    assert torch.equal(_engine(m).decode_latents(*b, (2, 3)), y_hat)


@pytest.mark.parametrize("damage", ["truncate", "flip", "append"])
def test_damaged_context_streams_are_refused(ctx_model, damage):
    y_hat, z = _latents(ctx_model, seed=4)
    eng = _engine(ctx_model)
    y_bytes, z_bytes = eng.entropy_code(y_hat, z)
    with pytest.raises(ValueError):
        eng.decode_latents(damaged(y_bytes, damage), z_bytes, (2, 3))


def damaged(payload: bytes, damage: str) -> bytes:
    return {"truncate": payload[: len(payload) // 2],
            "flip": payload[:10] + bytes([payload[10] ^ 0x40]) + payload[11:],
            "append": payload + b"\x01\x02"}[damage]


def test_context_trains_and_refines(ctx_model):
    """Trained alone on the rate, a fresh context (zero correction) lowers the rate of the anchors'
    neighbours; refinement keeps the latents of the lowest real cost."""
    torch.manual_seed(6)
    m = AecModel(TINY).train()
    x, q = torch.rand(2, 3, 64, 64) * 2, torch.tensor([6, 7])
    noise = torch.rand(2, 24, 4, 4) - 0.5
    opt = torch.optim.Adam(m.context.parameters(), lr=1e-3)
    bits = []
    for _ in range(19):  # the correction's last layer moves first (it starts at zero), then the rest
        y_bits = -torch.log2(m(x, q, 24, noise=noise, synthesis=False)["likelihoods"]["y"]).sum()
        opt.zero_grad()
        y_bits.backward()
        opt.step()
        bits.append(y_bits.item())
    assert bits[-1] < 0.97 * bits[0], bits  # the correction learns from the rate
    from aecodec.codec.refine import refine

    y_hat, z = _latents(ctx_model, seed=5, size=(PAD, PAD))
    with torch.no_grad():
        g, _ = ctx_model.gains(6, "cpu")
        y_scaled = ctx_model.g_a(torch.rand(1, 3, PAD, PAD)) * g
    costs, eng = [], _engine(ctx_model)

    def real_cost(y, zz):
        yb, zb = eng.entropy_code(y, zz)
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


def test_mean_scale_codes_integer_means_and_grows_from_a_scale_only_model():
    """A mean-scale model (integer means) round-trips its k-sparse latents through the coder, and
    a scale-only model grows a zero mean head that leaves its likelihoods unchanged at first."""
    torch.manual_seed(0)
    scale_only = AecModel(ModelConfig(N=16, M=24, family="hyperprior")).eval()
    m = AecModel(ModelConfig(N=16, M=24, family="mean-scale"))
    grow = families.get("mean-scale").grow
    m.load_state_dict(grow(scale_only.state_dict(), m))
    with torch.no_grad():  # non-trivial means
        m.h_s[4].bias[24:] = torch.linspace(-3, 3, 24)
    m.eval().update(force=True)
    y_hat, z = _latents(m, size=(PAD, 2 * PAD))
    eng = _engine(m)
    y_bytes, z_bytes = eng.entropy_code(y_hat, z)
    assert torch.equal(eng.decode_latents(y_bytes, z_bytes, (1, 2)), y_hat)
    _, means = eng.coder.parameters(m.entropy_bottleneck.decompress([z_bytes], (1, 2))[0].numpy())
    assert np.abs(means).max() >= 1 and np.array_equal(means, np.round(means))
    # zero mean head: the same training likelihoods as the scale-only model
    m2 = AecModel(ModelConfig(N=16, M=24, family="mean-scale"))
    m2.load_state_dict(grow(scale_only.state_dict(), m2))
    xt = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    a = scale_only.train()(xt, torch.tensor([1, 8]), 12)["likelihoods"]["y"]
    torch.manual_seed(1)
    b = m2.train()(xt, torch.tensor([1, 8]), 12)["likelihoods"]["y"]
    assert torch.equal(a, b)


def test_a_scale_only_model_grows_into_a_checkerboard_one_through_mean_scale(tmp_path):
    torch.manual_seed(3)
    base = AecModel(ModelConfig(N=16, M=24, family="hyperprior")).eval()
    base.update(force=True)
    f = tmp_path / "hp.safetensors"
    f.write_bytes(export_bytes(base, "hp", [12] * 8))
    assert [fam.name for fam in families.lineage("hyperprior", "checkerboard")] == ["mean-scale", "checkerboard"]
    m = initial_model(str(f), family="checkerboard").eval()
    m.update(force=True)
    y_hat, z = _latents(base, seed=4)
    a, b = _engine(base).entropy_code(y_hat, z), _engine(m).entropy_code(y_hat, z)
    assert a[1] == b[1] and abs(len(a[0]) - len(b[0])) <= 0.01 * len(a[0]) + 4
    assert np.array_equal(_engine(m, "numpy").decode_latents(*b, (2, 3)), y_hat[0].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="cannot become"):
        families.lineage("checkerboard", "hyperprior")


@pytest.mark.parametrize("model", ["aec-cb-128-192-r10", "aec-cb-128-192-r11"])  # 64 and 256 scales
def test_scale_indexes_are_the_binary_searchs(model, monkeypatch):
    """The logarithm's shortcut gives np.searchsorted's indexes for every scale: the entries
    themselves, their float neighbours, midpoints, scales beyond both ends, NaN; and a table
    that is not log-spaced takes the search."""
    from aecodec.codec.families.base import ScaleIndex

    table = Weights.shipped(model).tensors["gaussian_conditional.scale_table"]  # float32
    entries = table[:-1].astype(np.float64)
    rng = np.random.default_rng(table.size)
    scales = np.concatenate([entries, np.nextafter(entries, 0), np.nextafter(entries, np.inf),
                             np.sqrt(entries[1:] * entries[:-1]), [0.01, 1e-300, 1e6, np.inf],
                             np.exp(rng.uniform(np.log(0.05), np.log(400), 200_000))])
    index = ScaleIndex(table)
    assert index.log_spaced
    search = np.searchsorted
    for s, searched in ((scales, False), (scales[-200_000:][::-1].reshape(4, -1)[:, ::3], False),
                        (np.append(scales, np.nan), True)):
        want, calls = search(entries, s, side="left"), []
        monkeypatch.setattr(np, "searchsorted", lambda *a, **k: calls.append(1) or search(*a, **k))
        assert np.array_equal(index(s), want)
        monkeypatch.setattr(np, "searchsorted", search)
        assert bool(calls) == searched  # the shortcut served every real scale; a NaN took the search
    uneven = np.concatenate([table[:10], table[12:]])  # an entry missing: not log-spaced
    assert not ScaleIndex(uneven).log_spaced
    assert np.array_equal(ScaleIndex(uneven)(scales), np.searchsorted(uneven[:-1].astype(np.float64), scales, side="left"))


def test_configs_of_the_first_format_name_their_family_by_flags():
    """Shipped weights record means/context flags; their configs keep that form (and digests)."""
    for flags, name in (({}, "hyperprior"), ({"means": True}, "mean-scale"),
                        ({"means": True, "context": True}, "checkerboard")):
        config = ModelConfig.from_dict({"N": 16, "M": 24, "qualities": 8, **flags})
        assert config.family == name and config.to_dict() == {"N": 16, "M": 24, "qualities": 8, **flags}
    with pytest.raises(ValueError, match="unknown entropy model family 'nope'"):
        ModelConfig(family="nope")


def test_a_new_family_is_one_registered_class(monkeypatch):
    """What a new family needs: a name, and both sides of what it changes (here: mean-scale with
    the means halved, in training and in the coder); it trains, codes in both engines, computes
    the coder's parameters as training does, and round-trips its config."""
    from aecodec.codec.families.base import EntropyCoder
    from aecodec.codec.families.mean_scale import MeanScale

    from aecodec.codec.families import registry

    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))

    class HalfMeansCoder(EntropyCoder):
        def indexes_means(self, params):
            return super().indexes_means(np.concatenate([params[:self.M], params[self.M:] / 2]))

    @families.register
    class HalfMeans(MeanScale):
        name, tag, legacy_flags, parent, coder = "half-means", "hm", None, "mean-scale", HalfMeansCoder

        def y_parameters(self, model, params, y_hat):
            scales, means = super().y_parameters(model, params, y_hat)
            return scales, means / 2

    config = ModelConfig(N=16, M=24, family="half-means")
    assert ModelConfig.from_dict(config.to_dict()) == config and config.to_dict()["family"] == "half-means"
    torch.manual_seed(5)
    m, parent = AecModel(config), AecModel(ModelConfig(N=16, M=24, family="mean-scale"))
    with torch.no_grad():
        m.h_s[4].bias[24:] = torch.linspace(-6, 6, 24)
    parent.load_state_dict(m.state_dict())
    x = torch.rand(2, 3, 64, 64)
    rates = []
    for model in (m, parent):  # the same weights: only the family's parameters differ
        torch.manual_seed(6)
        rates.append(model.train()(x, torch.tensor([2, 5]), 12)["likelihoods"]["y"])
    assert not torch.equal(*rates)
    m.eval().update(force=True)
    y_hat, z = _latents(m)
    eng = _engine(m)
    y_bytes, z_bytes = eng.entropy_code(y_hat, z)
    assert np.array_equal(_engine(m, "numpy").decode_latents(y_bytes, z_bytes, (2, 3)), y_hat[0].permute(1, 2, 0).numpy())
    z_hat = m.entropy_bottleneck.decompress([z_bytes], (2, 3))
    with torch.no_grad():
        _, trained = m.family.y_parameters(m, m.h_s(z_hat), y_hat)
    _, coded = eng.coder.parameters(z_hat[0].numpy())
    assert np.abs(coded).max() >= 1 and np.array_equal(coded, torch.round(trained)[0].numpy())
