"""The entropy networks in torch as the integer networks the coder computes (codec/integer_net.py),
for models whose config records `integer_bits`: what such a model trains with (quantization-aware
training, as Balle et al. 2019 train integer networks) and what its rate estimates (evaluation,
`--effort`) see.

h_s and the checkerboard context then run with every weight rounded to its bits per output
channel, every bias to its integer grid and every layer's input to its bits at the config's
exponent: exactly the values the coder computes with (a test compares them bit for bit), rounded
with straight-through gradients (clipped activations pass none). The networks learn around the
rounding, so narrow networks (8 / 9 bits: every layer exact in float32, twice as fast as float64)
code nearly as well as wide ones. `aecodec train --integer-bits W,A` calibrates the exponents
once when a run starts (train/loop.py) and its exports keep them.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from .integer_net import MAX_EXPONENT, activation_top, signed_inputs


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


def _integer_conv(self, x):
    """forward of a Conv2d / ConvTranspose2d made integer-aware (`_integer`: its input's exponent,
    whether it can be negative, the bits)."""
    exponent, signed, bits = self._integer
    transposed = isinstance(self, torch.nn.ConvTranspose2d)
    w, e = weights(self.weight, 1 if transposed else 0, bits[0])
    b = bias(self.bias, e + exponent)
    x = activations(x, exponent, signed, bits[1])
    if transposed:
        return F.conv_transpose2d(x, w, b, self.stride, self.padding, self.output_padding, self.groups, self.dilation)
    return self._conv_forward(x, w, b)


def _integer_kernel_and_bias(self):
    """The context's anchor convolution (it reads y_hat's integers as they are)."""
    w, e = weights(self.kernel(), 0, self._integer_bits[0])
    return w, bias(self.ctx_bias, e)


def make_integer_aware(model) -> None:
    """Run the model's entropy networks as the coder's integer networks, at the bits and exponents
    of its config (`with_integer`): h_s, and the checkerboard context when it has one. Instance
    methods (bound, so copies of the model compute with their own weights): the parameters, their
    names and the state dict stay as they are."""
    config = model.config
    bits = config.integer_bits_or_default
    layers = [m for m in model.h_s if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    exps = config.integer_exponents("h_s")
    if exps is None or len(exps) != len(layers):
        raise ValueError("integer-aware networks need the model's h_s exponents (calibrate first)")
    for layer, exponent, signed in zip(layers, exps, signed_inputs(config.layers()["h_s"])):
        layer._integer = (exponent, signed, bits)
        layer.forward = types.MethodType(_integer_conv, layer)
    if not config.family_impl.uses_context:
        return
    ctx = model.context
    g = config.integer_exponents("context")
    for i, layer in enumerate(m for m in ctx.ep if isinstance(m, torch.nn.Conv2d)):
        layer._integer = (g[i], i == 0, bits)  # the first reads h_s's parameters and the convolution
        layer.forward = types.MethodType(_integer_conv, layer)
    ctx._integer_bits = bits
    ctx.kernel_and_bias = types.MethodType(_integer_kernel_and_bias, ctx)
