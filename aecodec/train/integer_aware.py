"""Training the entropy networks for the integer arithmetic they are coded with (codec/integer_net.py):
quantization-aware training, the way Balle et al. 2019 train integer networks.

A run with `--integer-bits W,A` calibrates its activation exponents once, when it starts (on
validation images, as an export does), keeps them in its model config, and from then on runs h_s
and the checkerboard context with every weight rounded to W bits per output channel, every bias to
its integer grid and every layer's input to A bits at its exponent: exactly the values the coder
computes with, rounded with straight-through gradients (clipped activations pass none). The
networks learn around the rounding, so narrow networks (8 / 9 bits: every layer exact in float32,
twice as fast as float64) code nearly as well as wide ones. Its exports keep the trained exponents.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..codec.integer_net import MAX_EXPONENT, activation_top
from ..errors import AecError


def parse_bits(text: str) -> tuple[int, int] | None:
    """"8,9" -> (8, 9); "" -> None (float entropy networks)."""
    if not text:
        return None
    try:
        w, a = (int(v) for v in text.split(","))
    except ValueError:
        raise AecError(f"--integer-bits takes WEIGHT_BITS,ACTIVATION_BITS (e.g. 8,9), not {text!r}") from None
    if not (2 <= w <= 16 and 2 <= a <= 16):
        raise AecError("--integer-bits: each bit count in 2..16")
    return w, a


def _round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()  # rounded forward, identity backward


def activations(x: torch.Tensor, exponent: int, signed: bool, bits: int) -> torch.Tensor:
    """integer_net.quantize, divided back: the values the coder's layer reads."""
    top, scale = activation_top(signed, bits), 2.0 ** exponent
    return _round((x * scale).clamp(-top if signed else 0.0, top)) / scale


def weights(w: torch.Tensor, axis: int, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """integer_net.integer_weights, divided back -> (weights, exponent per output channel)."""
    other = [d for d in range(w.dim()) if d != axis]
    with torch.no_grad():
        peak = w.detach().abs().amax(dim=other).double()
        e = (bits - 1 - torch.frexp(peak).exponent).clamp(max=MAX_EXPONENT)
    shape = [1] * w.dim()
    shape[axis] = -1
    scale = torch.pow(2.0, e.double()).to(w.dtype).reshape(shape)
    return _round(w * scale) / scale, e


def bias(b: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """integer_net.integer_bias, divided back."""
    scale = torch.pow(2.0, exponent.double()).to(b.dtype)
    return _round(b * scale) / scale


def _integer_layer(module, exponent: int, signed: bool, bits: tuple[int, int]) -> None:
    """Make a Conv2d / ConvTranspose2d compute as its integer form (an instance `forward`: the
    parameters, their names and the state dict stay as they are)."""
    transposed = isinstance(module, torch.nn.ConvTranspose2d)

    def forward(x, m=module):
        w, e = weights(m.weight, 1 if transposed else 0, bits[0])
        b = bias(m.bias, e + exponent)
        x = activations(x, exponent, signed, bits[1])
        if transposed:
            return F.conv_transpose2d(x, w, b, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
        return m._conv_forward(x, w, b)

    module.forward = forward


def make_integer_aware(model) -> None:
    """Run the model's entropy networks as the coder's integer networks, at the bits and exponents
    of its config (`with_integer`): h_s, and the checkerboard context when it has one."""
    config = model.config
    bits = config.integer_bits_or_default
    layers = [m for m in model.h_s if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    exps = config.integer_exponents("h_s")
    if exps is None or len(exps) != len(layers):
        raise ValueError("integer-aware training needs the model's h_s exponents (calibrate first)")
    # each layer's input can be negative where no ReLU precedes it (integer_net.IntegerProgram)
    modules = list(model.h_s)
    for n, layer in enumerate(layers):
        i = modules.index(layer)
        signed = i == 0 or not isinstance(modules[i - 1], torch.nn.ReLU)
        _integer_layer(layer, exps[n], signed, bits)
    if not config.family_impl.uses_context:
        return
    ctx = model.context
    g = config.integer_exponents("context")
    ep = [m for m in ctx.ep if isinstance(m, torch.nn.Conv2d)]
    for i, layer in enumerate(ep):  # the first reads h_s's parameters and the convolution (signed)
        _integer_layer(layer, g[i], i == 0, bits)

    def kernel_and_bias(c=ctx):  # the anchor convolution reads y_hat's integers as they are
        w, e = weights(c.kernel(), 0, bits[0])
        return w, bias(c.ctx_bias, e)

    ctx.kernel_and_bias = kernel_and_bias
