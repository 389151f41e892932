"""Integer entropy networks (codec/integer_net.py): integer weights and activations in their bit
ranges, every matrix product exact (equal to int64 arithmetic, and in any summation order), the
codes within a fraction of a percent of the float64 networks', the files round-trip on every
engine, and the config that records them validated."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from aecodec.codec import coder, engines, integer_net as inet, numpy_ops as ops
from aecodec.codec.families.checkerboard import IntegerContext, anchors
from aecodec.codec.spec import ModelConfig
from aecodec.codec.weights import Weights, parse_metadata
from aecodec.errors import AecError


@pytest.fixture(scope="module")
def shipped():
    from aecodec.codec.zoo import DEFAULT_MODEL, shipped_model_bytes

    return Weights.from_bytes(shipped_model_bytes(DEFAULT_MODEL)[0])


@pytest.fixture(scope="module")
def integer_weights(shipped):
    """The shipped default model with integer entropy networks, calibrated on the package's sample
    image (a test's calibration: nothing ships from it)."""
    from importlib import resources

    from PIL import Image

    from aecodec.codec.model import AecModel
    from aecodec.train.evaluate import coding_copy
    from aecodec.train.export import integer_exponents

    with resources.files("aecodec.data").joinpath("kodim23.png").open("rb") as f:
        rgb = np.asarray(Image.open(f).convert("RGB"))[:256, :384]
    exps = integer_exponents(coding_copy(AecModel.from_weights(shipped)), [("sample", rgb)])
    assert set(exps) == {"h_s", "context"}
    return Weights(shipped.tensors, shipped.config.with_integer(exps), "integer-test", bytes(32), shipped.default_k)


def test_weights_are_integers_of_at_most_the_bits_per_output_channel():
    w = np.random.default_rng(0).normal(size=(6, 5, 3, 3)) * np.array([1e-3, 0.1, 1, 10, 300, 0])[:, None, None, None]
    wi, e = inet.integer_weights(w, 0)
    assert np.array_equal(wi, np.rint(wi))
    peak = np.abs(wi).reshape(6, -1).max(axis=1)
    top = 2 ** (inet.WEIGHT_BITS - 1)
    assert np.all(peak[:5] <= top) and np.all(peak[:5] >= top // 2)  # each channel uses its range
    assert peak[5] == 0
    assert np.all(np.abs(np.ldexp(wi, -e[:, None, None, None]) - w) <= np.ldexp(0.5, -e)[:, None, None, None])


def test_a_bias_beyond_the_integer_range_is_refused_and_a_vanishing_channel_becomes_zeros():
    from aecodec.codec.spec import Layer

    layers = (Layer.parse("conv 2>2 k3 s1"),)
    w = np.ones((2, 2, 3, 3))
    w[1] *= 1e-12  # a vanishing channel: its exponent is capped, its weights round to zero
    program = inet.IntegerProgram(layers, {"h_s.0.weight": w, "h_s.0.bias": np.array([0.5, 0.25])}, "h_s", [4])
    assert np.all(program.steps[0][1][:, 1] == 0) and program.steps[0][3][1] == np.ldexp(0.25, inet.MAX_EXPONENT + 4)
    out = program(np.ones((2, 3, 2)))
    assert np.all(out[..., 1] == 0.25)
    with pytest.raises(ValueError, match="out of the integer range"):
        inet.IntegerProgram(layers, {"h_s.0.weight": w, "h_s.0.bias": np.array([0.5, 0.25])}, "h_s", [40])


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-6, 1e9), st.booleans())
def test_an_activation_exponent_fits_its_peak_exactly(peak, signed):
    f = inet.activation_exponent(peak, signed)
    top = 2 ** (inet.ACTIVATION_BITS - (1 if signed else 0)) - 1
    assert peak * 2.0 ** f <= top and (top < peak * 2.0 ** (f + 1) or f == inet.MAX_ACTIVATION_EXPONENT)


def _latents(weights, rgb, quality):
    engine = engines.create("numpy", weights)
    y_hat, z = engine.quantize(engine.analyze(rgb), quality, weights.config.M)
    c = engine.coder
    return engine.to_chw(y_hat), c.z_hat(np.round(engine.to_chw(z) - c.medians[:, None, None]).astype(np.int32))


def test_every_matrix_product_is_exact_and_independent_of_the_summation_order(integer_weights, kodak_crop):
    c = integer_weights.coder()
    y_hat, z_hat = _latents(integer_weights, np.asarray(kodak_crop), 8)
    params = c.hyper_parameters(z_hat)
    # the same network with its input channels in another order sums every product in another order
    order = np.random.default_rng(1).permutation(z_hat.shape[0])
    tensors = dict(integer_weights.tensors)
    tensors["h_s.0.weight"] = tensors["h_s.0.weight"][order]
    permuted = Weights(tensors, integer_weights.config, "permuted", bytes(32), integer_weights.default_k).coder()
    assert np.array_equal(permuted.hyper_parameters(z_hat[order]), params)
    # each layer's product equals int64 arithmetic on the activations it meets
    x = inet.quantize(z_hat.transpose(1, 2, 0).astype(np.float64), c.h_s.f[0], signed=True)
    for n, (layer, mat, e, b, relu) in enumerate(c.h_s.steps):
        got = ops.deconv(x, mat, b) if layer.op == "deconv" else ops.conv(x, mat, b, layer.k, layer.s)
        as_int = ops.deconv(x.astype(np.int64), tuple(m.astype(np.int64) for m in mat), b.astype(np.int64)) \
            if layer.op == "deconv" else ops.conv(x.astype(np.int64), mat.astype(np.int64), b.astype(np.int64), layer.k, layer.s)
        assert np.array_equal(got, as_int)
        if n + 1 < len(c.h_s.steps):
            x = inet.requantize(np.maximum(got, 0) if relu else got, c.h_s.scales[n], c.h_s.signed[n + 1])
    # the context: the same with its 1x1 layers' inputs in another order, in blocks of another size
    is_anchor = anchors(*y_hat.shape[1:])
    corrected = c.context.correct(params, y_hat, is_anchor)
    ctx = IntegerContext(integer_weights.tensors, integer_weights.config.M, integer_weights.config.integer_exponents("context"))
    ctx.CHUNK = 7
    k = ctx.ep[1][0].shape[1]
    order = np.random.default_rng(2).permutation(k)
    ctx.ep[0] = (ctx.ep[0][0][order], ctx.ep[0][1][order])
    ctx.ep[1] = (ctx.ep[1][0][:, order], ctx.ep[1][1])
    ctx.scales[2] = ctx.scales[2][order]
    assert np.array_equal(ctx.correct(params, y_hat, is_anchor), corrected)


def test_the_convolution_of_the_context_takes_float64_beyond_float32s_exact_range(integer_weights):
    ctx = integer_weights.coder().context
    cols = np.zeros((ctx.ctx_w.shape[1], 3))
    cols[:, 0] = 1
    cols[:, 1] = 5000  # sum |w| |y| far beyond 2^24: float32 would round
    cols[::7, 2] = -3
    want = (ctx.ctx_w.astype(np.int64) @ cols.astype(np.int64)).astype(np.float64) + ctx.ctx_b
    assert np.array_equal(ctx._conv(cols), want)
    assert np.array_equal(ctx._conv(cols[:, [0, 2]]), want[:, [0, 2]])  # the float32 path


@pytest.mark.parametrize("quality", [1, 4, 8])
def test_integer_networks_code_as_well_as_float64_and_round_trip_on_every_engine(shipped, integer_weights, kodim23, quality):
    rgb = np.asarray(kodim23.crop((384, 256, 768, 512)))  # not the calibration's part of the image
    numpy_engine = engines.create("numpy", integer_weights)
    data = coder.encode(rgb, "RGB", quality, engine=numpy_engine)
    float_file = coder.encode(rgb, "RGB", quality, engine=engines.create("numpy", shipped))
    header, z_bytes, y_bytes = coder.bitstream.parse(data)
    payload = len(z_bytes) + len(y_bytes)
    assert abs(payload / sum(map(len, coder.bitstream.parse(float_file)[1:])) - 1) < 0.01  # validation: -0.09 %
    shape = (-(-header.height // 64), -(-header.width // 64))
    torch_engine = engines.create("torch", integer_weights)
    assert np.array_equal(numpy_engine.to_chw(numpy_engine.decode_latents(y_bytes, z_bytes, shape)),
                          torch_engine.to_chw(torch_engine.decode_latents(y_bytes, z_bytes, shape)))
    pixels = coder.decode(data, engine=numpy_engine)[0]
    assert np.array_equal(pixels, coder.decode(data, engine=numpy_engine)[0])
    # the entropy networks decide the bits, never the latents: integer means leave y_hat = round(y)
    assert np.array_equal(pixels, coder.decode(float_file, engine=engines.create("numpy", shipped))[0])


def test_the_config_records_the_exponents_and_refuses_what_does_not_fit():
    base = ModelConfig(N=16, M=24, family="checkerboard")
    cfg = base.with_integer({"h_s": [6, 8, 9], "context": [5, 5, 7]})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.integer_exponents("h_s") == (6, 8, 9) and base.integer_exponents("h_s") is None
    assert "integer" not in base.to_dict()  # float64 models keep their configs (and file digests)
    assert cfg.with_layers(g_s=[str(l) for l in cfg.layers()["g_s"]]).integer == cfg.integer
    for bad in ({"h_s": [6, 8, 9]}, {"h_s": [6, 8.5, 9], "context": [5, 5, 7]},
                {"h_s": [6, 8, 9], "context": [5, 5, 7], "g_s": [1]}, {"h_s": [600, 8, 9], "context": [5, 5, 7]}):
        with pytest.raises(ValueError):
            ModelConfig.from_dict({**base.to_dict(), "integer": bad})
    with pytest.raises(ValueError, match="no integer networks"):
        ModelConfig(N=16, M=24, family="channel-checkerboard", integer=(("context", (1, 1, 1)), ("h_s", (1, 1, 1))))
    M = 24
    tensors = {"context.ctx_weight": np.zeros((2 * M, M, 12)), "context.ctx_bias": np.zeros(2 * M)}
    for i, (cout, cin) in zip((0, 2, 4), ((80, 96), (64, 80), (48, 64))):
        tensors[f"context.ep.{i}.weight"], tensors[f"context.ep.{i}.bias"] = np.zeros((cout, cin, 1, 1)), np.zeros(cout)
    with pytest.raises(ValueError, match="exponents for"):
        IntegerContext(tensors, M, [1, 2])


def test_a_weights_file_with_malformed_exponents_is_a_clear_error(shipped):
    from safetensors.numpy import save

    from aecodec.codec.weights import read_metadata
    from aecodec.codec.zoo import shipped_model_bytes

    meta = read_metadata(shipped_model_bytes(shipped.name)[0])
    config = json.loads(meta["config"])
    for integer in ({"h_s": "6,8,9"}, {"h_s": [6, 8, 9]}, [1, 2]):
        data = save({"x": np.zeros(1, np.float32)}, metadata={**meta, "config": json.dumps({**config, "integer": integer})})
        with pytest.raises(AecError, match="weights file is malformed"):
            parse_metadata(data)


@pytest.fixture(scope="module")
def narrow_weights(shipped):
    """The shipped default model with 8-bit weights and 9-bit activations (a test's calibration on
    the package's sample image: every layer then runs in float32)."""
    from importlib import resources

    from PIL import Image

    from aecodec.codec.model import AecModel
    from aecodec.train.evaluate import coding_copy
    from aecodec.train.export import integer_exponents

    with resources.files("aecodec.data").joinpath("kodim23.png").open("rb") as f:
        rgb = np.asarray(Image.open(f).convert("RGB"))[:256, :384]
    exps = integer_exponents(coding_copy(AecModel.from_weights(shipped)), [("sample", rgb)], (8, 9))
    return Weights(shipped.tensors, shipped.config.with_integer(exps, (8, 9)), "narrow-test", bytes(32), shipped.default_k)


def test_narrow_networks_run_in_float32_and_give_float64s_bits(narrow_weights, kodak_crop, monkeypatch):
    c = narrow_weights.coder()
    assert c.h_s.dtypes == [np.float32] * 3 and all(wm.dtype == np.float32 for wm, _ in c.context.ep)
    for wm, _ in c.context.ep:  # the bound that makes float32 exact holds, from the weights alone
        assert np.abs(wm.astype(np.float64)).sum(axis=1).max() * 511 < 2 ** 24
    assert np.abs(c.context.ep[0][0]).max() <= 128 and np.abs(c.context.ep[1][0]).max() >= 64
    y_hat, z_hat = _latents(narrow_weights, np.asarray(kodak_crop), 1)
    params = c.hyper_parameters(z_hat)
    corrected = c.context.correct(params, y_hat, anchors(*y_hat.shape[1:]))
    monkeypatch.setattr(inet, "FLOAT32_EXACT", 0.0)  # every layer in float64: the same bits
    c64 = narrow_weights.config.family_impl.coder(narrow_weights.tensors, narrow_weights.config)  # built anew
    assert c64.h_s.dtypes == [np.float64] * 3 and all(wm.dtype == np.float64 for wm, _ in c64.context.ep)
    assert np.array_equal(c64.hyper_parameters(z_hat), params)
    assert np.array_equal(c64.context.correct(params, y_hat, anchors(*y_hat.shape[1:])), corrected)
    # the activations stay within their 9 bits
    x = inet.quantize(z_hat.transpose(1, 2, 0).astype(np.float64), c.h_s.f[0], signed=True, bits=9)
    assert np.abs(x).max() <= 255 and np.abs(x).max() > 0


def test_a_layer_beyond_float32s_exact_range_stays_float64():
    wide = np.full((100, 3), 2047.0)  # sum |w| = 204,700: times 4095 is far beyond 2^24
    assert inet.exact_dtype((wide,), np.zeros(3), 4095) is np.float64
    assert inet.exact_dtype((wide,), np.zeros(3), 63) is np.float32  # 12.9 M
    assert inet.exact_dtype((wide,), np.full(3, 5e6), 63) is np.float64  # the bias counts too
    assert inet.exact_dtype((wide[:10], np.full((200, 3), 2047.0)), np.zeros(3), 63) is np.float64  # every phase


def test_the_config_records_narrower_bits_only():
    base = ModelConfig(N=16, M=24, family="checkerboard")
    exps = {"h_s": [6, 8, 9], "context": [5, 5, 7]}
    narrow = base.with_integer(exps, (8, 9))
    assert narrow.integer_bits == (8, 9) and ModelConfig.from_dict(narrow.to_dict()) == narrow
    assert narrow.to_dict()["integer_bits"] == [8, 9]
    default = base.with_integer(exps, (12, 12))
    assert default.integer_bits is None and "integer_bits" not in default.to_dict()  # shipped configs unchanged
    assert default.integer_bits_or_default == (12, 12) and base.with_integer(None, (8, 9)).integer_bits is None
    for bad in ([8], [8, 1], [8, 17], [8.0, 9], "8,9"):
        with pytest.raises(ValueError, match="integer_bits"):
            ModelConfig.from_dict({**narrow.to_dict(), "integer_bits": bad})
    with pytest.raises(ValueError, match="integer_bits needs"):
        ModelConfig(N=16, M=24, family="checkerboard", integer_bits=(8, 9))


def test_every_shipped_narrow_model_runs_its_entropy_networks_in_float32():
    from aecodec.codec.zoo import shipped_models

    from aecodec.codec.zoo import DEFAULT_MODEL

    narrow = [n for n in shipped_models() if Weights.shipped(n).config.integer_bits]
    assert DEFAULT_MODEL in narrow  # every default since aec-cb-128-192-r10 (0.16.0): the fast entropy stage
    for name in narrow:
        c = Weights.shipped(name).coder()
        assert c.h_s.dtypes == [np.float32] * len(c.h_s.steps), name
        assert all(wm.dtype == np.float32 for wm, _ in c.context.ep), name
