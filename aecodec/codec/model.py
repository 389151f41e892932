"""The learned transform codec: a scale-hyperprior autoencoder (Balle et al. 2018) with gain units
for variable rate (Cui et al. 2021) and the k-sparse gating + quantization latent path.

    x -> g_a -> y -> * gain[q] -> gate_quantize(k) -> y_hat --(GaussianConditional, scales)--> bytes
                       |                                  ^
                       +-> h_a -> z -> z_hat --(EntropyBottleneck)--> bytes, h_s(z_hat) = scales
    y_hat -> * inv_gain[q] -> g_s -> x_hat

A model may add a checkerboard context (config.context, layers.CheckerboardContext): half of y's
positions are then coded with h_s's parameters alone, the other half with parameters corrected
from those decoded neighbours.

One network covers the eight quality levels: quality q selects a per-channel gain vector that sets
the quantization step of y (larger gain, finer step, more bits). k, the number of channels kept per
latent position, is a run-time knob.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from ..kernels import gate_quantize
from .compressai_parts import EntropyBottleneck, GaussianConditional
from .config import LAMBDAS, PAD, QUALITIES, SYMBOL_LIMIT, ModelConfig  # noqa: F401 (re-exported)
from .entropy_coder import EntropyCoder
from .layers import GDN, CheckerboardContext, Deconv, Float32Conv2d, Float32Deconv

# The Gaussian conditional's scale table: 64 log-spaced scales, as in Balle's and CompressAI's models.
SCALES_MIN, SCALES_MAX, SCALES_LEVELS = 0.11, 256, 64
_CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
_CODING_PREFIXES = ("h_s.", "context.", "entropy_bottleneck.", "gaussian_conditional.")


def get_scale_table() -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), SCALES_LEVELS))


def conv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2,
         layer: type[nn.Conv2d] = nn.Conv2d) -> nn.Conv2d:
    return layer(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_channels: int, out_channels: int, layer: type[Deconv] = Deconv) -> Deconv:
    return layer(in_channels, out_channels)


def with_mean_head(state: dict, M: int) -> dict:
    """A scale-only model's state dict -> the mean-scale model's, predicting mean 0 at first:
    h_s's last convolution gets M more output channels (the means) with zero weights."""
    state = dict(state)
    w, b = state["h_s.4.weight"], state["h_s.4.bias"]
    if w.shape[0] == M:
        state["h_s.4.weight"] = torch.cat([w, torch.zeros_like(w)])
        state["h_s.4.bias"] = torch.cat([b, torch.zeros_like(b)])
    return state


class AecModel(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        N, M, Q = config.N, config.M, config.qualities
        self.config = config
        self.g_a = nn.Sequential(
            conv(3, N, layer=Float32Conv2d), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N),
            conv(N, M, layer=Float32Conv2d),
        )
        self.g_s = nn.Sequential(
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), deconv(N, 3, layer=Float32Deconv),
        )
        self.h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3), nn.ReLU(inplace=True),
            conv(N, N), nn.ReLU(inplace=True), conv(N, N),
        )
        # h_s -> scales (M channels, ReLU), and for mean-scale models M more: the means.
        self.h_s = nn.Sequential(
            deconv(N, N), nn.ReLU(inplace=True), deconv(N, N), nn.ReLU(inplace=True),
            conv(N, 2 * M if config.means else M, stride=1, kernel_size=3),
            *([] if config.means else [nn.ReLU(inplace=True)]),
        )
        if config.context:
            if not config.means:
                raise ValueError("the checkerboard context needs a mean-scale model")
            self.context = CheckerboardContext(M)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        # log-spaced initial gains: quality 1 quantizes coarsest.
        init = torch.exp(torch.linspace(math.log(0.5), math.log(4.0), Q))
        self.gain = nn.Parameter(init[:, None].repeat(1, M))
        self.inv_gain = nn.Parameter((1.0 / init)[:, None].repeat(1, M))
        self._coder = None  # the entropy coder for the current weights (see entropy_coder)

    @property
    def channels(self) -> int:
        return self.config.M

    def _gains(self, quality: torch.Tensor | int | float, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(gain, inverse gain), each (B, M, 1, 1). Integer qualities select a level; a quality
        between two levels interpolates both vectors geometrically (Cui et al. 2021), i.e. the
        quantization step varies log-linearly from one level to the next."""
        if isinstance(quality, float) and not quality.is_integer():
            lo = int(math.floor(quality))
            t = quality - lo
            g = self.gain.abs()[lo - 1:lo + 1].log()
            ig = self.inv_gain.abs()[lo - 1:lo + 1].log()
            g, ig = ((1 - t) * v[0] + t * v[1] for v in (g, ig))
            return g.exp()[None, :, None, None].to(device), ig.exp()[None, :, None, None].to(device)
        if isinstance(quality, float):
            quality = int(quality)
        idx = torch.as_tensor(quality, device=device).reshape(-1) - 1
        g = self.gain.abs()[idx][:, :, None, None]
        ig = self.inv_gain.abs()[idx][:, :, None, None]
        return g, ig

    # ---- training -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, quality: torch.Tensor, k: int, autocast: torch.dtype | None = None,
                noise: torch.Tensor | None = None, synthesis: bool = True, y: torch.Tensor | None = None):
        """Training/evaluation pass with noise-quantized likelihoods.

        quality: (B,) integers in 1..Q, one per image. Returns x_hat and the likelihoods of y, z.
        autocast: run g_a and g_s (nearly all of the arithmetic) in this dtype, e.g. torch.bfloat16
        on a CPU with AVX512_BF16; the latent path, the hyperprior and the likelihoods stay float32.
        noise: the latent path's uniform noise (shaped like y), drawn with torch.rand when None.
        synthesis=False skips g_s (x_hat is None): training only the entropy model needs the rate alone.
        y: g_a's output when it is already known (x is then unused): a run that trains only the
        entropy model reuses the latents of recent crops (train/latent_cache.py). out["y"] is g_a's
        output, detached.
        """
        # only the convolutions between GDNs run in the autocast dtype: g_a's first and last layers,
        # g_s's last layer and every GDN opt out (layers.in_float32)
        lowp = (lambda: torch.autocast(x.device.type, dtype=autocast)) if autocast else contextlib.nullcontext
        if y is None:
            with lowp():
                y = self.g_a(x)
        g, ig = self._gains(quality, y.device)
        y_noisy, y_ste = gate_quantize(y.float() * g, k, mode="mixed", noise=noise)
        z = self.h_a(y_noisy.abs())
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        # the context reads the quantized anchors, exactly what the decoder will have decoded
        scales, means = self.y_parameters(self.h_s(z_hat), y_ste)
        if means is not None:  # rounded as the coder rounds them; gradients pass straight through
            means = means + (torch.round(means) - means).detach()
        y_likelihoods = self.gaussian_conditional._likelihood(y_noisy, scales, means)
        y_likelihoods = self.gaussian_conditional.likelihood_lower_bound(y_likelihoods)
        x_hat = None
        if synthesis:
            with lowp():
                x_hat = self.g_s(y_ste * ig).float()
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "y": y.detach()}

    # ---- coding ---------------------------------------------------------------------------
    def update(self, scale_table=None, force=False, update_quantiles=False) -> bool:
        """Rebuild the entropy models' CDF tables from the current weights (before coding)."""
        self.drop_entropy_coder()
        updated = self.entropy_bottleneck.update(force=force, update_quantiles=update_quantiles)
        scale_table = get_scale_table() if scale_table is None else scale_table
        return self.gaussian_conditional.update_scale_table(scale_table, force=force) or updated

    def aux_loss(self) -> torch.Tensor:
        """The entropy bottleneck's quantile loss (trained by its own optimizer)."""
        return self.entropy_bottleneck.loss()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # CDF tables are sized by the weights that fill them: empty buffers take the saved shape.
        for prefix, module in (("entropy_bottleneck", self.entropy_bottleneck),
                               ("gaussian_conditional", self.gaussian_conditional)):
            for name in _CDF_BUFFERS:
                saved, buf = state_dict.get(f"{prefix}.{name}"), getattr(module, name, None)
                if saved is not None and buf is not None and buf.numel() == 0:
                    buf.resize_(saved.size())
        self.drop_entropy_coder()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def entropy_parameters(self, params: torch.Tensor):
        """h_s output -> (scales, means or None)."""
        if not self.config.means:
            return params, None
        scales, means = params.chunk(2, dim=1)
        return torch.relu(scales), means

    def y_parameters(self, params: torch.Tensor, y_hat: torch.Tensor):
        """h_s output and the quantized latents (read only by a checkerboard context, at the
        anchors) -> (scales, means or None)."""
        if self.config.context:
            params = self.context(params, y_hat)
        return self.entropy_parameters(params)

    def entropy_coder(self) -> EntropyCoder:
        """The numpy entropy coder (float64 h_s, CDF tables, rANS) for the current weights."""
        if self._coder is None:
            tensors = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()
                       if k.startswith(_CODING_PREFIXES)}
            self._coder = EntropyCoder(tensors, self.config)
        return self._coder

    def drop_entropy_coder(self) -> None:
        """Forget the entropy coder, which goes stale when the weights change (training, loading)."""
        self._coder = None

    @torch.no_grad()
    def analyze(self, x: torch.Tensor, quality: int | float, k: int, g_a=None):
        """x (1, 3, H, W) in [0, 1], H and W multiples of PAD -> (y_symbols, z) latents.

        g_a: optional replacement for self.g_a (the coder passes a tiled version)."""
        return self.quantize_latents((g_a or self.g_a)(x), quality, k)

    @torch.no_grad()
    def quantize_latents(self, y: torch.Tensor, quality: int | float, k: int):
        """g_a's output -> (y_symbols, z): gain for the quality, k-sparse gate, rounding, h_a."""
        g, _ = self._gains(quality, y.device)
        y_hat = gate_quantize((y * g).float(), k)
        z = self.h_a(y_hat.abs())
        return y_hat, z

    @torch.no_grad()
    def encode_latents(self, y_hat: torch.Tensor, z: torch.Tensor) -> tuple[bytes, bytes]:
        """(1, M, h, w) k-sparse integer latents and (1, N, h/4, w/4) hyper-latents -> (y bytes, z bytes)."""
        return self.entropy_coder().encode(y_hat[0].float().cpu().numpy(), z[0].float().cpu().numpy())

    @torch.no_grad()
    def decode_latents(self, y_bytes: bytes, z_bytes: bytes, z_shape: tuple[int, int]) -> torch.Tensor:
        """-> y_hat (1, M, h, w); ValueError for a damaged stream (entropy_coder.EntropyCoder.decode)."""
        return torch.from_numpy(self.entropy_coder().decode(y_bytes, z_bytes, z_shape))[None]

    @torch.no_grad()
    def synthesize(self, y_hat: torch.Tensor, quality: int) -> torch.Tensor:
        """Decoder transform, float32 on y_hat's device. Only the entropy parameters must agree bit
        for bit across devices (entropy_coder.py); pixels from g_s may differ by one level
        at rare rounding boundaries between devices (docs/performance.md gives the measured
        tolerance), and are identical run to run on one device with the same thread count."""
        _, ig = self._gains(quality, y_hat.device)
        return self.g_s((y_hat.float() * ig).contiguous(memory_format=torch.channels_last))
