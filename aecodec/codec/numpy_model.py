"""The shipped network for coding in numpy: g_a, gain, k-sparse gate, h_a and g_s in float32 on
(H, W, C) arrays, entropy coding through entropy_coder (h_s in float64). Inference only; the torch
AecModel (model.py) trains, refines latents (effort > 0) and runs on GPUs.

A CLI call on the CPU codes with this model and never imports torch: start-up is ~0.1 s of
imports instead of ~1 s. Same weights file, same arithmetic up to float32 summation order: the
latents it decodes are identical to the torch model's (they come from the same entropy coder),
and its pixels agree with the torch model's to within one level on rare pixels.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import AecError
from . import numpy_ops as ops
from .config import ModelConfig
from .entropy_coder import EntropyCoder
from .weights import load_shipped, read_weights
from .zoo import DEFAULT_MODEL


class NumpyModel:
    def __init__(self, tensors: dict[str, np.ndarray], config: ModelConfig, name: str, file_digest: bytes,
                 default_k: list[int]):
        self.config, self.name, self.digest, self.default_k = config, name, file_digest, default_k
        f32 = np.float32
        try:
            self.g_a_first = (ops.space_to_depth_weights(tensors["g_a.0.weight"], f32), tensors["g_a.0.bias"].astype(f32))
            self.g_a = [self._conv(tensors, f"g_a.{i}", 5, 2) for i in (2, 4, 6)]
            self.g_a_gdn = [self._gdn(tensors, f"g_a.{i}") for i in (1, 3, 5)]
            self.g_s = [(ops.deconv_weights(tensors[f"g_s.{i}.weight"], f32), tensors[f"g_s.{i}.bias"].astype(f32))
                        for i in (0, 2, 4, 6)]
            self.g_s_gdn = [self._gdn(tensors, f"g_s.{i}") for i in (1, 3, 5)]
            self.h_a = [self._conv(tensors, "h_a.0", 3, 1), self._conv(tensors, "h_a.2", 5, 2),
                        self._conv(tensors, "h_a.4", 5, 2)]
            self.gain = np.abs(tensors["gain"]).astype(f32)
            self.inv_gain = np.abs(tensors["inv_gain"]).astype(f32)
            self.coder = EntropyCoder(tensors, config)
        except (KeyError, ValueError) as e:
            raise AecError(f"weights file does not fit the model: {e}") from None

    @property
    def channels(self) -> int:
        return self.config.M

    @staticmethod
    def _conv(tensors, prefix: str, k: int, stride: int):
        return ops.conv_weights(tensors[f"{prefix}.weight"], np.float32), tensors[f"{prefix}.bias"].astype(np.float32), \
            k, stride

    @staticmethod
    def _gdn(tensors, prefix: str):
        return ops.gdn_parameters(tensors[f"{prefix}.beta"], tensors[f"{prefix}.beta_reparam.lower_bound.bound"],
                                  tensors[f"{prefix}.beta_reparam.pedestal"], tensors[f"{prefix}.gamma"],
                                  tensors[f"{prefix}.gamma_reparam.lower_bound.bound"],
                                  tensors[f"{prefix}.gamma_reparam.pedestal"])

    def gains(self, quality: int | float) -> tuple[np.ndarray, np.ndarray]:
        """(gain, inverse gain), each (M,), as AecModel._gains: between two levels, geometric
        interpolation of both vectors."""
        if float(quality).is_integer():
            i = int(quality) - 1
            return self.gain[i], self.inv_gain[i]
        lo = int(math.floor(quality))
        t = quality - lo
        g, ig = (np.log(v[lo - 1:lo + 1]) for v in (self.gain, self.inv_gain))
        return np.exp((1 - t) * g[0] + t * g[1]), np.exp((1 - t) * ig[0] + t * ig[1])

    # ---- transforms (H, W, C) -------------------------------------------------------------
    def analyze(self, x: np.ndarray) -> np.ndarray:
        """g_a: x (H, W, 3) float32 in [0, 1], H and W multiples of 16 -> y (H/16, W/16, M)."""
        with ops.one_blas_thread():
            x = ops.gdn(ops.conv_space_to_depth(x, *self.g_a_first), *self.g_a_gdn[0], inverse=False)
            for i, (wm, b, k, s) in enumerate(self.g_a):
                x = ops.conv(x, wm, b, k, s)
                if i < 2:
                    x = ops.gdn(x, *self.g_a_gdn[i + 1], inverse=False)
        return x

    def quantize_latents(self, y: np.ndarray, quality: int | float, k: int) -> tuple[np.ndarray, np.ndarray]:
        """g_a's output -> (y_hat, z), both (h, w, C): gain, k-sparse gate and rounding, h_a."""
        g, _ = self.gains(quality)
        y_hat = ops.gate_quantize(y * g, k)
        z = np.abs(y_hat)
        with ops.one_blas_thread():
            for i, (wm, b, ks, s) in enumerate(self.h_a):
                z = ops.conv(z, wm, b, ks, s)
                if i < 2:
                    ops.relu(z)
        return y_hat, z

    def synthesize(self, y_hat: np.ndarray, quality: int | float) -> np.ndarray:
        """g_s: y_hat (h, w, M) -> x_hat (16h, 16w, 3) float32."""
        _, ig = self.gains(quality)
        x = y_hat * ig
        with ops.one_blas_thread():
            for i, (phases, b) in enumerate(self.g_s):
                igdn = (lambda v, p=self.g_s_gdn[i]: ops.gdn(v, *p, inverse=True)) if i < 3 else None
                x = ops.deconv(x, phases, b, then=igdn)
        return x

    # ---- entropy coding (h, w, C) <-> bytes -----------------------------------------------
    def encode_latents(self, y_hat: np.ndarray, z: np.ndarray) -> tuple[bytes, bytes]:
        return self.coder.encode(y_hat.transpose(2, 0, 1), z.transpose(2, 0, 1))

    def decode_latents(self, y_bytes: bytes, z_bytes: bytes, z_shape: tuple[int, int]) -> np.ndarray:
        return self.coder.decode(y_bytes, z_bytes, z_shape).transpose(1, 2, 0)


def model_from_bytes(data: bytes, expected_sha256: str | None = None) -> NumpyModel:
    from safetensors.numpy import load

    tensors, name, config, default_k, file_digest = read_weights(data, expected_sha256, load)
    return NumpyModel(tensors, config, name, file_digest, default_k)


def from_torch(loaded) -> NumpyModel:
    """The numpy model of a loaded torch model (weights.LoadedModel), e.g. one read from a file."""
    tensors = {k: v.detach().cpu().numpy() for k, v in loaded.model.state_dict().items()}
    return NumpyModel(tensors, loaded.model.config, loaded.name, loaded.digest, loaded.default_k)


def load_model(name: str = DEFAULT_MODEL) -> NumpyModel:
    """Load (once, then cached) a shipped model by name, verifying its digest."""
    return load_shipped(name, model_from_bytes, "numpy")
