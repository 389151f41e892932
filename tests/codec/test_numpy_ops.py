"""numpy_ops, the numpy engine's layers, against torch's: each layer, the gate exactly against the
reference, and the same values whatever the split of rows among cores."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aecodec.codec import numpy_ops as ops
from aecodec.codec.layers import GDN
from aecodec.kernels.reference import topk_mask


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).contiguous().numpy()


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]


@pytest.mark.parametrize("k,stride,c_in,c_out,size", [(3, 1, 8, 12, (9, 7)), (5, 2, 8, 12, (10, 14)),
                                                       (5, 2, 24, 20, (6, 4)), (3, 1, 20, 40, (3, 5))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_matches_torch(k, stride, c_in, c_out, size, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((*size, c_in)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, k, k)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    ref = _hwc(F.conv2d(_chw(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride, padding=k // 2))
    got = ops.conv(x, ops.conv_weights(w, dtype), b, k, stride)
    np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4 if dtype == np.float32 else 1e-11)


def test_space_to_depth_conv_matches_torch():
    rng = np.random.default_rng(1)
    x = rng.random((16, 12, 3), dtype=np.float32)
    w = rng.standard_normal((10, 3, 5, 5)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    ref = _hwc(F.conv2d(_chw(x), torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=2))
    np.testing.assert_allclose(ops.conv_space_to_depth(x, ops.space_to_depth_weights(w, np.float32), b), ref,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c_out", [3, 20])  # the few-outputs path and the im2col path
@pytest.mark.parametrize("size", [(1, 1), (5, 3), (4, 7)])
def test_deconv_matches_torch(c_out, size, monkeypatch):
    monkeypatch.setattr(ops, "BAND", 500)  # several bands even for these small inputs
    rng = np.random.default_rng(2)
    x = rng.standard_normal((*size, 24)).astype(np.float32)
    w = rng.standard_normal((24, c_out, 5, 5)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    ref = _hwc(F.conv_transpose2d(_chw(x), torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=2,
                                  output_padding=1))
    got = ops.deconv(x, ops.deconv_weights(w, np.float32), b)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_compressai(inverse):
    torch.manual_seed(0)
    layer = GDN(16, inverse=inverse)
    with torch.no_grad():
        layer.gamma.add_(torch.rand(16, 16) * 0.2)
        layer.beta.add_(torch.rand(16))
    x = torch.randn(1, 16, 5, 6)
    with torch.no_grad():
        ref = _hwc(layer(x))
    state = {k: v.numpy() for k, v in layer.state_dict().items()}
    params = ops.gdn_parameters(state["beta"], state["beta_reparam.lower_bound.bound"], state["beta_reparam.pedestal"],
                                state["gamma"], state["gamma_reparam.lower_bound.bound"],
                                state["gamma_reparam.pedestal"])
    np.testing.assert_allclose(ops.gdn(_hwc(x).copy(), *params, inverse=inverse, block=7), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [0, 1, 5, 16, 24])
def test_gate_matches_the_reference_exactly(k):
    rng = np.random.default_rng(3)
    y = np.round(rng.standard_normal((6, 5, 24)) * 2).astype(np.float32)  # many ties in |y|
    y[0, 0] = 0
    mask = topk_mask(_chw(y), k)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(ops.topk_mask(np.abs(y).reshape(-1, 24), k), mask.reshape(-1, 24))
    assert np.array_equal(ops.gate_quantize(y, k), np.where(mask, np.round(y), 0).astype(np.float32))


@pytest.mark.parametrize("workers", [2, 3])
def test_row_shares_on_several_cores_give_the_same_values(workers, monkeypatch):
    """The layers split their rows among threads (one BLAS thread each): bit-identical to one
    thread, whatever the split, so a file decodes to the same pixels every time."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 11, 24)).astype(np.float32)
    conv_w = ops.conv_weights(rng.standard_normal((20, 24, 5, 5)).astype(np.float32), np.float32)
    few = ops.deconv_weights(rng.standard_normal((24, 3, 5, 5)).astype(np.float32), np.float32)
    many = ops.deconv_weights(rng.standard_normal((24, 20, 5, 5)).astype(np.float32), np.float32)
    beta, gamma_t = np.ones(24, np.float32), np.abs(rng.standard_normal((24, 24))).astype(np.float32) * 0.1
    b3, b20 = np.ones(3, np.float32), np.ones(20, np.float32)
    monkeypatch.setattr(ops, "BAND", 2000)  # several bands per share

    def run():
        with ops.one_blas_thread():
            return [ops.conv(x, conv_w, b20, 5, 2), ops.deconv(x, few, b3), ops.deconv(x, many, b20),
                    ops.deconv(x, many, b20, then=lambda v: ops.gdn(v, beta[:20], gamma_t[:20, :20], True)),
                    ops.gdn(x.copy(), beta, gamma_t, inverse=False)]

    monkeypatch.setattr(ops, "WORKERS", 1)
    one = run()
    monkeypatch.setattr(ops, "WORKERS", workers)
    assert all(np.array_equal(a, b) for a, b in zip(one, run()))
