"""Layers of the transforms: CompressAI's GDN with a faster inference path on the CPU."""
from __future__ import annotations

import torch

from .compressai_parts import GDN as _CompressaiGDN
from .numpy_ops import POLYPHASE_TAPS

_ROWS = 4096  # pixels per block: a block's activations stay in cache between the GDN's steps


class GDN(_CompressaiGDN):
    """GDN (Balle et al. 2016); same parameters, same training path as CompressAI's.

    Without autograd, on a channels-last float32 CPU tensor, the 1x1 normalisation runs as a
    matrix product over blocks of pixels with in-place square root and product: half the time of
    conv2d + separate elementwise passes over the whole tensor (docs/performance.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32
                or x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        n, c, h, w = x.shape
        beta = self.beta_reparam(self.beta)
        gamma_t = self.gamma_reparam(self.gamma).t()
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view: channels-last memory is (pixels, C)
        out = torch.empty_like(rows)
        for a in range(0, rows.shape[0], _ROWS):
            xb, ob = rows[a:a + _ROWS], out[a:a + _ROWS]
            torch.addmm(beta, xb.square(), gamma_t, out=ob)
            (ob.sqrt_() if self.inverse else ob.rsqrt_()).mul_(xb)
        return out.view(n, h, w, c).permute(0, 3, 1, 2)


class Deconv(torch.nn.ConvTranspose2d):
    """5x5 stride-2 transposed convolution (the synthesis upsampling), same parameters as
    nn.ConvTranspose2d.

    Without autograd on the CPU, a layer with few output channels (g_s's last, 3) runs as its
    polyphase equivalent: a 3x3 convolution with 4x the outputs (one per output pixel phase)
    followed by pixel_shuffle. Same arithmetic up to summation order; oneDNN's transposed
    convolution is slow when it has few output channels (2.4x, docs/performance.md)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 5, stride=2, padding=2, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu" or self.out_channels > 16:
            return super().forward(x)
        weight, bias = self._polyphase()
        return torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(x, weight, bias, padding=1), 2)

    def _polyphase(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight  # (in, out, 5, 5)
        c_in, c_out = w.shape[:2]
        phases = w.new_zeros(c_out, 2, 2, c_in, 3, 3)
        for r, s, t, u, a, b in POLYPHASE_TAPS:
            phases[:, r, s, :, t, u] = w[:, :, a, b].t()
        weight = phases.reshape(4 * c_out, c_in, 3, 3).contiguous(memory_format=torch.channels_last)
        return weight, self.bias.repeat_interleave(4)
