"""The Triton kernel equals the PyTorch reference exactly: kept set, values, gradients.

On CPU the kernel runs under TRITON_INTERPRET=1 (set in conftest); with a GPU, compiled on CUDA.
"""
import pytest
import torch

from aecodec.kernels import gate_quantize, reference_gate_quantize as ref, triton_gate_quantize as tri

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SHAPES = [
    ((2, 192, 5, 7), [0, 1, 48, 191, 192]),   # C not a power of two
    ((1, 320, 3, 4), [80]),                   # C of the big models
    ((3, 7, 1, 9), [0, 3, 7]),                # tiny C, H == 1
    ((1, 64, 6, 1), [16]),                    # W == 1
    ((1, 33, 2, 3), [32, 33]),                # crosses a mask word
]


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exact equality including the sign of zero."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    view = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}[a.dtype]
    return torch.equal(a.contiguous().view(view), b.contiguous().view(view))


def _make(shape, dtype, device, channels_last, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.randn(shape, generator=g) * scale).to(dtype)
    y = y.to(device)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    return y


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ks", SHAPES)
def test_forward_matches_reference(shape, ks, dtype, channels_last, kernel_device):
    y = _make(shape, dtype, kernel_device, channels_last)
    for k in ks:
        a, b = ref(y, k), tri(y, k)
        assert _bits_equal(a, b), (shape, k, dtype)
        assert b.is_contiguous(memory_format=torch.channels_last) == y.is_contiguous(
            memory_format=torch.channels_last) or y.shape[2] * y.shape[3] == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["noise", "ste", "mixed", "round"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_training_modes_and_gradients(mode, dtype, channels_last, kernel_device):
    shape, k = (2, 192, 4, 5), 48
    y = _make(shape, dtype, kernel_device, channels_last, seed=1)
    noise = (torch.rand(shape, generator=torch.Generator().manual_seed(2)) - 0.5).to(kernel_device)
    y1, y2 = y.clone().requires_grad_(), y.clone().requires_grad_()
    o1 = ref(y1, k, mode=mode, noise=noise)
    o2 = tri(y2, k, mode=mode, noise=noise)
    o1 = o1 if isinstance(o1, tuple) else (o1,)
    o2 = o2 if isinstance(o2, tuple) else (o2,)
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(shape, generator=gen).to(dtype).to(kernel_device) for _ in o1]
    for a, b in zip(o1, o2):
        assert _bits_equal(a, b)
    sum((a * g).sum() for a, g in zip(o1, grads)).backward()
    sum((b * g).sum() for b, g in zip(o2, grads)).backward()
    assert _bits_equal(y1.grad, y2.grad)
    # gradients flow through kept entries only
    kept = ref(y, k) != 0
    assert torch.all(y2.grad[~kept & (y.abs() > 0.5)] == 0)


ADVERSARIAL = {
    "all_ties": lambda s: torch.ones(s),
    "all_zero": lambda s: torch.zeros(s),
    "signed_ties": lambda s: torch.tensor([1.0, -1.0]).repeat(s[1] // 2)[None, :, None, None].expand(s).clone(),
    "huge": lambda s: torch.randn(s, generator=torch.Generator().manual_seed(4)) * 1e30,
    "tiny": lambda s: torch.randn(s, generator=torch.Generator().manual_seed(5)) * 1e-38,
    "halves": lambda s: (torch.randint(-6, 6, s, generator=torch.Generator().manual_seed(6)) + 0.5),
    "near_half": lambda s: torch.full(s, 0.49999997),
    "big_ints": lambda s: torch.randint(-2**24, 2**24, s, generator=torch.Generator().manual_seed(7)).float(),
    "few_levels": lambda s: torch.randint(0, 3, s, generator=torch.Generator().manual_seed(8)).float(),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_adversarial_inputs(case, dtype, kernel_device):
    shape = (2, 192, 3, 3)
    y = ADVERSARIAL[case](shape).to(dtype).to(kernel_device)
    for k in (0, 1, 47, 96, 192):
        assert _bits_equal(ref(y, k), tri(y, k)), (case, k)


def test_ties_go_to_lowest_channel():
    y = torch.tensor([3.0, -5.0, 5.0, 1.0, -5.0, 0.2]).view(1, 6, 1, 1)
    out = ref(y, 2)
    assert out.flatten().tolist() == [0.0, -5.0, 5.0, 0.0, 0.0, 0.0]
    out = ref(y, 4)
    assert out.flatten().tolist() == [3.0, -5.0, 5.0, 0.0, -5.0, 0.0]


def test_k_zero_and_k_c():
    y = torch.randn(2, 10, 3, 3) * 4
    assert torch.all(ref(y, 0) == 0)
    assert torch.equal(ref(y, 10), torch.round(y))


def test_inference_defaults_shape_dtype():
    for dtype in DTYPES:
        y = (torch.randn(1, 16, 2, 3) * 2).to(dtype)
        out = gate_quantize(y, 4)
        assert out.shape == y.shape and out.dtype == dtype
        assert torch.all((out != 0).sum(1) <= 4)
        assert torch.equal(out, torch.round(out))


def test_bad_arguments():
    y = torch.randn(1, 4, 2, 2)
    for bad in (-1, 5, 1.5, True):
        with pytest.raises(ValueError):
            ref(y, bad)
    with pytest.raises(ValueError):
        ref(y, 2, mode="floor")
    with pytest.raises(ValueError):
        ref(torch.randn(4, 2, 2), 1)
    with pytest.raises(ValueError):
        ref(torch.ones(1, 4, 2, 2, dtype=torch.int32), 1)
