"""The torch layers of the networks, and `build`, which turns a spec's layer list (spec.py) into
them: CompressAI's GDN with a faster inference path on the CPU, the transposed convolution, the
float32-under-autocast variants, and the checkerboard context's training module."""
from __future__ import annotations

import torch

from typing import TYPE_CHECKING

from .compressai_parts import GDN as _CompressaiGDN
from .numpy_ops import POLYPHASE_TAPS

if TYPE_CHECKING:
    from .spec import Layer

_ROWS = 4096  # pixels per block: a block's activations stay in cache between the GDN's steps


def in_float32(forward, x: torch.Tensor) -> torch.Tensor:
    """forward(x) in float32 even under a low-precision autocast: the layers whose bf16 rounding
    biases the training gradient (docs/training.md) opt out through this."""
    with torch.autocast(x.device.type, enabled=False):
        return forward(x.float())


class _Float32UnderAutocast:
    """Mixin: the layer's own forward, in float32 even under autocast (see in_float32)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            return in_float32(super().forward, x)
        return super().forward(x)


class Float32Conv2d(_Float32UnderAutocast, torch.nn.Conv2d):
    """nn.Conv2d (same parameters) that stays float32 under autocast. g_a's first layer: its
    weight gradient, the largest of the model, is a sum over every pixel of the 8-bit input, which
    bf16 rounds into the wrong direction (cosine -0.29 to float32's on a trained model). g_a's last
    layer: its output is y, which the gains scale up to ~100 quantization steps at the highest
    quality, where bf16's 8-bit mantissa would round y by more than a step. Each is ~3 % of the
    arithmetic."""


class GDN(_CompressaiGDN):
    """GDN (Balle et al. 2016); same parameters, same training path as CompressAI's, except that
    it stays float32 under autocast: its bf16 element-wise products biased the whole model's
    gradient (the inverse GDN's on aec-cb-128-192, the forward GDN's through y on -r3).

    Without autograd, on a channels-last float32 CPU tensor, the 1x1 normalisation runs as a
    matrix product over blocks of pixels with in-place square root and product: half the time of
    conv2d + separate elementwise passes over the whole tensor (docs/performance.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            return in_float32(super().forward, x)
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


class Float32Deconv(_Float32UnderAutocast, Deconv):
    """Deconv that stays float32 under autocast. g_s's last layer: its output is the image, whose
    bf16 rounding (~half an 8-bit level near white) biased the MSE gradient on aec-cb-128-192-r4."""


def build(layers: tuple[Layer, ...]) -> torch.nn.Sequential:
    """A spec's layer list as torch modules; module i holds the weights of layer i."""
    modules = []
    for layer in layers:
        if layer.op == "conv":
            cls = Float32Conv2d if layer.f32 else torch.nn.Conv2d
            modules.append(cls(layer.cin, layer.cout, layer.k, stride=layer.s, padding=layer.k // 2))
        elif layer.op == "deconv":
            modules.append((Float32Deconv if layer.f32 else Deconv)(layer.cin, layer.cout))
        elif layer.op in ("gdn", "igdn"):
            modules.append(GDN(layer.cin, inverse=layer.op == "igdn"))
        elif layer.op == "relu":
            modules.append(torch.nn.ReLU(inplace=True))
        else:
            raise ValueError(f"no torch layer for {layer.op!r}")
    return torch.nn.Sequential(*modules)


class CheckerboardContext(torch.nn.Module):
    """Checkerboard context (He et al. 2021): the anchors (half the latent positions) are coded
    with the hyperprior's parameters alone; the other half then also see the decoded anchors
    around them, through a 5x5 convolution over the 12 anchor taps (`ctx_weight`, M -> 2M) and
    1x1 layers (`ep`) that correct the hyperprior's scales and means. The correction's last layer
    starts at zero, so a model gains a context with its coding unchanged and learns to use it.
    The family (families/checkerboard.py) gives the taps and the anchors' rule, and computes the
    same network in float64 for coding."""

    def __init__(self, M: int, taps: tuple[tuple[int, int], ...], anchors):
        """taps: the (dy, dx) offsets of the window that are anchors; anchors(h, w): the (h, w)
        numpy bool mask of the anchors."""
        super().__init__()
        self.anchors = anchors
        self.ctx_weight = torch.nn.Parameter(torch.empty(2 * M, M, len(taps)))
        self.ctx_bias = torch.nn.Parameter(torch.zeros(2 * M))
        bound = 1 / (M * len(taps)) ** 0.5  # Conv2d's default scale for this fan-in
        torch.nn.init.uniform_(self.ctx_weight, -bound, bound)
        self.ep = torch.nn.Sequential(
            torch.nn.Conv2d(4 * M, 10 * M // 3, 1), torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(10 * M // 3, 8 * M // 3, 1), torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(8 * M // 3, 2 * M, 1),
        )
        torch.nn.init.zeros_(self.ep[-1].weight)
        torch.nn.init.zeros_(self.ep[-1].bias)
        # where each tap sits in the flattened 5x5 window (not saved: derived from the taps)
        self.register_buffer("tap_index", torch.tensor([(dy + 2) * 5 + dx + 2 for dy, dx in taps]),
                             persistent=False)

    def mask(self, h: int, w: int, device=None) -> torch.Tensor:
        """(1, 1, h, w) float: 1 at the anchors."""
        return torch.from_numpy(self.anchors(h, w)).to(device).float()[None, None]

    def kernel(self) -> torch.Tensor:
        """The (2M, M, 5, 5) convolution kernel: the taps in place, zeros elsewhere."""
        o, c, _ = self.ctx_weight.shape
        return self.ctx_weight.new_zeros(o, c, 25).index_copy(2, self.tap_index, self.ctx_weight).view(o, c, 5, 5)

    def kernel_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What the anchor convolution computes with (integer-aware training rounds them)."""
        return self.kernel(), self.ctx_bias

    def forward(self, params: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        """params: h_s's output (B, 2M, h, w); y_hat: the quantized latents (only the anchors are
        read) -> the parameters with the non-anchors' corrected."""
        anchors = self.mask(*y_hat.shape[-2:], device=y_hat.device)
        ctx = torch.nn.functional.conv2d(y_hat * anchors, *self.kernel_and_bias(), padding=2)
        delta = self.ep(torch.cat([params, ctx], dim=1))
        return params + delta * (1 - anchors)


class ChannelContext(torch.nn.Module):
    """Channel-conditional context over channel groups (Minnen & Singh 2020; uneven groups with
    the checkerboard as in He et al. 2022, ELIC), in the order that extends the checkerboard
    exactly: the anchors of group 1, 2, ..., then the non-anchors of group 1, 2, .... Group i > 1
    sees the groups before it: at an anchor their anchors (a 3x3 convolution over the anchors,
    which are the window's centre and corners), at a non-anchor all their positions (a 3x3
    convolution), with its own parameters so far (1x1); 1x1 layers then give a correction of its
    scales and means that starts at zero, so a checkerboard model gains it with its coding
    unchanged. The family (families/channel_checkerboard.py) gives the groups and computes the same
    networks in float64 for coding."""

    def __init__(self, M: int, bounds: tuple[tuple[int, int], ...], hidden: int, anchors):
        super().__init__()
        self.M, self.bounds, self.anchors = M, bounds, anchors
        self.nets = torch.nn.ModuleList(
            GroupContext(start, 2 * (end - start), hidden) for _ in ("anchor", "other") for start, end in bounds[1:])

    def net(self, group: int, anchor: bool) -> "GroupContext":
        """The network of a group (1 .. len(bounds) - 1) at its anchors or at its other positions."""
        return self.nets[(0 if anchor else len(self.bounds) - 1) + group - 1]

    def forward(self, params: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        """params (B, 2M, h, w): scales and means, the non-anchors' already corrected by the
        checkerboard; y_hat: the quantized latents -> the parameters with every group after the
        first corrected from the groups before it."""
        M = self.M
        is_anchor = torch.from_numpy(self.anchors(*y_hat.shape[-2:])).to(y_hat.device).float()[None, None]
        scales, means = list(params[:, :M].split([e - s for s, e in self.bounds], 1)), \
            list(params[:, M:].split([e - s for s, e in self.bounds], 1))
        for g, (start, end) in enumerate(self.bounds[1:], 1):
            own = torch.cat([scales[g], means[g]], dim=1)
            prev = y_hat[:, :start]
            delta = (self.net(g, True)(prev * is_anchor, own) * is_anchor
                     + self.net(g, False)(prev, own) * (1 - is_anchor))
            scales[g], means[g] = (own + delta).split(end - start, 1)
        return torch.cat(scales + means, dim=1)


class GroupContext(torch.nn.Module):
    """One group's correction: relu(3x3 conv of the decoded earlier channels + 1x1 of its own
    parameters) -> 1x1 -> relu -> 1x1 (zero at first)."""

    def __init__(self, previous: int, own: int, hidden: int):
        super().__init__()
        self.prev = torch.nn.Conv2d(previous, hidden, 3, padding=1)
        self.own = torch.nn.Conv2d(own, hidden, 1, bias=False)
        self.out = torch.nn.Sequential(
            torch.nn.ReLU(inplace=True), torch.nn.Conv2d(hidden, hidden, 1), torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(hidden, own, 1))
        torch.nn.init.zeros_(self.out[-1].weight)
        torch.nn.init.zeros_(self.out[-1].bias)

    def forward(self, previous: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        return self.out(self.prev(previous) + self.own(own))
