"""A spec's layers (spec.py) as a numpy program on (H, W, C) arrays: the numpy engine's transforms
in float32, and h_s in float64 for the entropy coder. Torch-free.

Each layer becomes one of numpy_ops' kernels, its weights rearranged once. Two choices are the
program's, not the spec's: a stride-2 convolution of an image with few channels runs over 2x2
pixel blocks (numpy_ops.conv_space_to_depth), and a GDN that follows a transposed convolution
runs on each band of its output while the band is in cache (numpy_ops.deconv's `then`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import numpy_ops as ops

if TYPE_CHECKING:
    from .spec import Layer


class Program:
    def __init__(self, layers: tuple[Layer, ...], tensors: dict[str, np.ndarray], prefix: str, dtype=np.float32):
        """KeyError / ValueError when the tensors do not fit the layers."""
        self.steps = []
        i = 0
        while i < len(layers):
            layer, name = layers[i], f"{prefix}.{i}"
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if layer.op == "conv":
                w, b = tensors[f"{name}.weight"], tensors[f"{name}.bias"].astype(dtype)
                _check_shape(name, w, (layer.cout, layer.cin, layer.k, layer.k))
                if layer.cin <= 4 and layer.k == 5 and layer.s == 2:
                    self.steps.append(_bind(ops.conv_space_to_depth, ops.space_to_depth_weights(w, dtype), b))
                else:
                    self.steps.append(_bind(ops.conv, ops.conv_weights(w, dtype), b, layer.k, layer.s))
            elif layer.op == "deconv":
                w = tensors[f"{name}.weight"]
                _check_shape(name, w, (layer.cin, layer.cout, 5, 5))
                phases, b = ops.deconv_weights(w, dtype), tensors[f"{name}.bias"].astype(dtype)
                if nxt is not None and nxt.op in ("gdn", "igdn"):  # fused: the GDN runs band by band
                    gdn = _gdn(tensors, f"{prefix}.{i + 1}", nxt, dtype)
                    self.steps.append(lambda x, p=phases, b=b, g=gdn: ops.deconv(x, p, b, then=g))
                    i += 1
                else:
                    self.steps.append(_bind(ops.deconv, phases, b))
            elif layer.op in ("gdn", "igdn"):
                self.steps.append(_gdn(tensors, name, layer, dtype))
            elif layer.op == "relu":
                self.steps.append(ops.relu)
            else:
                raise ValueError(f"{name}: the numpy engine has no {layer.op!r} layer")
            i += 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for step in self.steps:
            x = step(x)
        return x


def _bind(fn, *args):
    return lambda x: fn(x, *args)


def _check_shape(name: str, w: np.ndarray, shape: tuple) -> None:
    if w.shape != shape:
        raise ValueError(f"{name}.weight has shape {tuple(w.shape)}, the layer needs {shape}")


def _gdn(tensors, name: str, layer: Layer, dtype):
    if dtype != np.float32:
        raise ValueError(f"{name}: GDN runs in float32 only")
    beta, gamma_t = ops.gdn_parameters(
        tensors[f"{name}.beta"], tensors[f"{name}.beta_reparam.lower_bound.bound"],
        tensors[f"{name}.beta_reparam.pedestal"], tensors[f"{name}.gamma"],
        tensors[f"{name}.gamma_reparam.lower_bound.bound"], tensors[f"{name}.gamma_reparam.pedestal"])
    if beta.shape != (layer.cin,):
        raise ValueError(f"{name}: GDN of {beta.shape[0]} channels, the layer needs {layer.cin}")
    inverse = layer.op == "igdn"
    return lambda x: ops.gdn(x, beta, gamma_t, inverse=inverse)
