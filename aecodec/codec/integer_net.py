"""The entropy networks in integer arithmetic: h_s and the checkerboard context, exact on every
device and in any summation order (the idea of Balle et al. 2019, "Integer networks for data
compression with latent-variable models", applied after training). Torch-free.

Why: the entropy parameters must agree bit for bit between the encoder and every decoder. A
floating-point network does not guarantee that, even in float64: a matrix product is summed in an
order of the BLAS's choosing (per CPU kernel, thread count, block size), and between OpenBLAS's
Haswell and Cooper Lake kernels ~64 % of the float64 h_s and context outputs of a Kodak image
differ in their last bits (docs/performance.md). A scale on a table boundary or a mean at x.5 then
codes differently, and the file does not decode on the other machine. Here every weight, bias
and activation is an integer (held in float64) and every product and partial sum an integer below
2^53, so each matrix product is exact whatever the order; the remaining operations are
element-wise IEEE operations, which give the same bits everywhere.

The numerics (a model records its activation exponents in its config, `ModelConfig.integer`;
docs/bitstream.md):

- weights: per output channel o, W_int = rint(W * 2^e_o), e_o the largest exponent that keeps
  |W_int| <= 2^(B - 1) (B = WEIGHT_BITS), from frexp: exact; biases rint(b * 2^(e_o + f)), f the
  exponent of the layer's input;
- activations: a layer's input x_int = clip(rint(x * 2^f), the A-bit range (A = ACTIVATION_BITS;
  signed [-(2^(A-1) - 1), 2^(A-1) - 1] where the input can be negative, [0, 2^A - 1] after a ReLU);
  the exponents f are chosen at export from calibration images (train/export.py,
  `integer_exponents`) so that their largest activation just fits;
- the output: acc * 2^-(e_o + f), exactly; then the coder's scales and means as before.

With B = A = 12 the codes are within +-0.02 % of the float64 networks' on validation images
(post-training, no fine-tuning: docs/lab/training-log.md); y_hat feeds the context as it is
(integers). Bounds: |acc| < K * 2^(B-1) * 2^A + |bias|, K <= 2304 inputs: < 2^35 for the layers
on activations and < 2^37 for the context's convolution (|y_hat| < SYMBOL_LIMIT = 2^14), with
|bias| < 2^40 (checked at load): far below 2^53.

Fewer bits run twice as fast: a model may record narrower weights and activations (its config's
`integer_bits`, e.g. 8 / 9, trained for them). A layer whose every output's sum of |weight| x the
largest input its activation range allows, plus |bias|, stays below 2^24 runs in float32: then
every product and partial sum is an integer float32 holds exactly, in any order, so its results
are the float64 path's bit for bit. Which path a layer takes is decided at load from its weights
alone (`exact_dtype`), never from the data.
"""
from __future__ import annotations

import numpy as np

from . import numpy_ops as ops

WEIGHT_BITS = 12  # the first integer models' (spec.DEFAULT_INTEGER_BITS: a config without integer_bits)
ACTIVATION_BITS = 12
FLOAT32_EXACT = 2.0 ** 24  # every integer below this in magnitude is a float32
MAX_EXPONENT = 30  # a channel whose weights all lie below ~2^-19 becomes zeros (its bias stays in range)
MAX_ACTIVATION_EXPONENT = 16  # a layer whose inputs all lie below ~2^-5 (an untrained one) keeps this resolution
BIAS_LIMIT = 2.0 ** 40  # |integer bias|: with |sum of products| < 2^37 every sum stays below 2^53


def channel_exponents(w: np.ndarray, axis: int, bits: int = WEIGHT_BITS) -> np.ndarray:
    """Per output channel (along `axis`), the largest e with |rint(w * 2^e)| <= 2^(bits - 1)."""
    other = tuple(a for a in range(w.ndim) if a != axis)
    peak = np.abs(w).max(axis=other).astype(np.float64)  # |w|'s largest is exact in w's own dtype
    _, ex = np.frexp(peak)  # peak = m * 2^ex, 0.5 <= m < 1 (0 for an all-zero channel)
    return np.minimum(bits - 1 - ex, MAX_EXPONENT).astype(np.int64)


def integer_weights(w: np.ndarray, axis: int, bits: int = WEIGHT_BITS) -> tuple[np.ndarray, np.ndarray]:
    """w -> (rint(w * 2^e) as float64, e per output channel)."""
    e = channel_exponents(w, axis, bits)
    shape = [1] * w.ndim
    shape[axis] = -1
    out = w.astype(np.float64) * pow2(e).reshape(shape)  # exact, as ldexp is (2-3x faster on load)
    return np.rint(out, out=out), e


def activation_exponent(peak: float, signed: bool, bits: int = ACTIVATION_BITS) -> int:
    """The largest f with peak * 2^f within the (signed or unsigned) `bits`-bit range."""
    top = activation_top(signed, bits)
    f = int(top).bit_length() - int(np.frexp(max(float(peak), 1e-30))[1])  # at most one too high
    while peak * 2.0 ** f > top:
        f -= 1
    return min(f, MAX_ACTIVATION_EXPONENT)


def exact_dtype(matrices, bias: np.ndarray, input_top: float):
    """float32 where a layer is exact in it, else float64: matrices (K, O) of integer weights (a
    transposed convolution's phases: several), bias (O,) integers, inputs within +-input_top."""
    weights = max(float(np.max(np.abs(m).sum(axis=0), initial=0.0)) for m in matrices)
    reach = weights * input_top + float(np.max(np.abs(bias), initial=0.0))
    return np.float32 if reach < FLOAT32_EXACT else np.float64


def integer_bias(b: np.ndarray, exponent) -> np.ndarray:
    """rint(b * 2^exponent); ValueError beyond BIAS_LIMIT, where sums would no longer be exact."""
    out = np.rint(np.ldexp(np.asarray(b, np.float64), exponent))
    if not np.all(np.abs(out) < BIAS_LIMIT):
        raise ValueError("an entropy network's bias is out of the integer range")
    return out


def activation_top(signed: bool, bits: int = ACTIVATION_BITS) -> float:
    return float((1 << (bits - 1 if signed else bits)) - 1)


def quantize(x: np.ndarray, shift, signed: bool, bits: int = ACTIVATION_BITS) -> np.ndarray:
    """rint(x * 2^shift) clipped to the activation range: exact dyadic values -> integers (float64).
    shift: one exponent, or one per channel broadcast against x."""
    return requantize(x, pow2(shift), signed, bits)


def pow2(exponent) -> np.ndarray:
    """2^exponent in float64: multiplying by it is exact (ldexp's result, faster)."""
    return np.ldexp(1.0, np.asarray(exponent, np.int64))


def requantize(x: np.ndarray, scale: np.ndarray, signed: bool, bits: int = ACTIVATION_BITS) -> np.ndarray:
    """rint(x * scale) clipped to the activation range, scale a power of two (pow2): a new array
    (of x's dtype where scale has it too: exact either way)."""
    top = activation_top(signed, bits)
    out = np.multiply(x, scale)
    np.rint(out, out=out)
    return np.clip(out, -top if signed else 0.0, top, out=out)


def signed_inputs(layers) -> list[bool]:
    """Per weighted layer of a spec's layer list: whether its input can be negative (the first, or
    no ReLU before it)."""
    weighted = [i for i, layer in enumerate(layers) if layer.has_weights]
    return [n == 0 or layers[i - 1].op != "relu" for n, i in enumerate(weighted)]


class IntegerProgram:
    """A transform's layers (spec.py: conv, deconv, relu) as an integer network on (H, W, C)
    arrays. input_exponents: the exponent of each weighted layer's input, from the model's config;
    None runs the float network unrounded in float64 (calibration: `peaks`). bits: (weight bits,
    activation bits); each layer runs in float32 where that is exact (`exact_dtype`), else float64."""

    def __init__(self, layers, tensors: dict, prefix: str, input_exponents=None,
                 bits: tuple[int, int] = (WEIGHT_BITS, ACTIVATION_BITS)):
        weighted = [i for i, layer in enumerate(layers) if layer.has_weights]
        if input_exponents is not None and len(input_exponents) != len(weighted):
            raise ValueError(f"{prefix}: {len(input_exponents)} activation exponents for {len(weighted)} layers")
        self.f = None if input_exponents is None else [int(f) for f in input_exponents]
        self.wbits, self.abits = bits
        relus = [i + 1 < len(layers) and layers[i + 1].op == "relu" for i in weighted]
        self.signed = signed_inputs(layers)
        self.steps = []  # (layer, matrix, exponent per output channel, bias, ReLU after it)
        self.dtypes = []  # each layer's arithmetic
        for n, i in enumerate(weighted):
            layer, name = layers[i], f"{prefix}.{i}"
            if layer.op not in ("conv", "deconv"):
                raise ValueError(f"{name}: an integer network has no {layer.op!r} layer")
            w, b = tensors[f"{name}.weight"].astype(np.float64), tensors[f"{name}.bias"].astype(np.float64)
            e = None
            if self.f is not None:  # torch keeps a transposed convolution's output channels second
                w, e = integer_weights(w, 1 if layer.op == "deconv" else 0, self.wbits)
                b = integer_bias(b, e + self.f[n])
            mat = ops.deconv_weights(w, np.float64) if layer.op == "deconv" else ops.conv_weights(w, np.float64)
            dtype = np.float64
            if self.f is not None:
                dtype = exact_dtype(mat if layer.op == "deconv" else (mat,), b, activation_top(self.signed[n], self.abits))
                mat = tuple(m.astype(dtype) for m in mat) if layer.op == "deconv" else mat.astype(dtype)
                b = b.astype(dtype)
            self.steps.append((layer, mat, e, b, relus[n]))
            self.dtypes.append(dtype)
        if self.f is not None:  # the power of two that takes each layer's output to the next input's exponent
            self.scales = [pow2(self.f[n + 1] - e - self.f[n]).astype(self.dtypes[n])
                           for n, (_, _, e, _, _) in enumerate(self.steps[:-1])]
            self.scales.append(pow2(-(self.steps[-1][2] + self.f[-1])))  # the last: to real values

    def __call__(self, x: np.ndarray, peaks: list | None = None) -> np.ndarray:
        """x (H, W, C), real-valued (z_hat) -> the last layer's output (exact dyadic values, float64).
        peaks: a list that gets each weighted layer's largest |input| (the float network)."""
        x = np.asarray(x, np.float64)
        if self.f is not None:
            x = quantize(x, self.f[0], signed=True, bits=self.abits)
        for n, (layer, mat, e, b, relu) in enumerate(self.steps):
            if peaks is not None:
                peaks.append(float(np.max(np.abs(x), initial=0.0)))
            x = x.astype(self.dtypes[n], copy=False)  # integers: exact in either
            acc = ops.deconv(x, mat, b) if layer.op == "deconv" else ops.conv(x, mat, b, layer.k, layer.s)
            if relu:
                acc = np.maximum(acc, 0)
            if self.f is None:
                x = acc
            elif n + 1 == len(self.steps):
                x = acc * self.scales[n]  # exact: integers below 2^53 times a power of two
            else:
                x = requantize(acc, self.scales[n], self.signed[n + 1], self.abits)
        return x

    def exponents(self, peaks: list[float]) -> list[int]:
        """Calibration: the input exponents that fit these peaks (one per weighted layer)."""
        return [activation_exponent(p, s, self.abits) for p, s in zip(peaks, self.signed)]
