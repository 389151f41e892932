"""The learned transform codec: a scale-hyperprior autoencoder (Balle et al. 2018) with gain units
for variable rate (Cui et al. 2021) and the k-sparse gating + quantization latent path.

    x -> g_a -> y -> * gain[q] -> gate_quantize(k) -> y_hat --(GaussianConditional, scales)--> bytes
                       |                                  ^
                       +-> h_a -> z -> z_hat --(EntropyBottleneck)--> bytes, h_s(z_hat) = scales
    y_hat -> * inv_gain[q] -> g_s -> x_hat

The layers come from the model's config (spec.py); how y is coded given h_s's output is the
config's entropy model family (families/): scales only, scales and means, or a checkerboard
context that codes half of y's positions from h_s alone and the other half with parameters
corrected from those decoded neighbours.

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
from . import gains
from .compressai_parts import EntropyBottleneck, GaussianConditional
from .families.base import likelihoods
from .layers import build
from .spec import ModelConfig

# The Gaussian conditional's scale table: log-spaced scales, as in Balle's and CompressAI's models,
# but 256 of them rather than their 64: the coder rounds each scale up to the next entry, which
# cost 0.4-1.3 % of y's bits with 64 (docs/lab, #19). Models exported before 0.17 carry 64; every
# file carries its own table, so the coder reads either.
SCALES_MIN, SCALES_MAX, SCALES_LEVELS = 0.11, 256, 256
_CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
# The coding tables that update() derives from the weights: exported weights files carry them,
# run states do not (a model without them rebuilds them before it codes).
DERIVED_TABLES = ("_quantized_cdf", "_offset", "_cdf_length")


def is_derived_table(key: str) -> bool:
    return key.startswith(("entropy_bottleneck.", "gaussian_conditional.")) and key.rsplit(".", 1)[-1] in DERIVED_TABLES


def get_scale_table() -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), SCALES_LEVELS))


class AecModel(nn.Module):
    """The torch model of a ModelConfig: transforms built from its layers (spec.py), the hyperprior,
    the entropy model's family's own modules (families/) and the gains. Trains, refines latents
    (effort > 0) and runs the torch engine; parameter names follow the layer lists (g_s.2.weight
    is g_s's third layer), so every model's weights file says which layer each tensor belongs to."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        M, Q = config.M, config.qualities
        self.config = config
        self.family = config.family_impl
        layers = config.layers()
        # registration order is the order of the parameters (optimizer state indexes): keep it
        self.g_a, self.g_s, self.h_a, self.h_s = (build(layers[name]) for name in ("g_a", "g_s", "h_a", "h_s"))
        self.family.build(self)
        self.entropy_bottleneck = EntropyBottleneck(config.N)
        self.gaussian_conditional = GaussianConditional(None)
        # log-spaced initial gains: quality 1 quantizes coarsest.
        init = torch.exp(torch.linspace(math.log(0.5), math.log(4.0), Q))
        self.gain = nn.Parameter(init[:, None].repeat(1, M))
        self.inv_gain = nn.Parameter((1.0 / init)[:, None].repeat(1, M))
        if config.integer_bits is not None:  # trained as the coder's narrow integer networks: computed so
            from .integer_torch import make_integer_aware

            make_integer_aware(self)

    @property
    def channels(self) -> int:
        return self.config.M

    def gains(self, quality: torch.Tensor | int | float, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(gain, inverse gain), each (B, M, 1, 1): integer qualities (one per image) select a
        level; a quality between two levels interpolates (gains.py)."""
        if not gains.is_level(quality):
            g, ig = (gains.between_levels(v.abs(), quality, torch.log, torch.exp) for v in (self.gain, self.inv_gain))
            return g[None, :, None, None].to(device), ig[None, :, None, None].to(device)
        if isinstance(quality, float):
            quality = int(quality)
        idx = torch.as_tensor(quality, device=device).reshape(-1) - 1
        return self.gain.abs()[idx][:, :, None, None], self.inv_gain.abs()[idx][:, :, None, None]

    # ---- training ----------------------------------------------------------------------------
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
        # only the convolutions between GDNs run in the autocast dtype: the layers marked f32 in
        # the spec and every GDN opt out (layers.in_float32)
        lowp = (lambda: torch.autocast(x.device.type, dtype=autocast)) if autocast else contextlib.nullcontext
        if y is None:
            with lowp():
                y = self.g_a(x)
        g, ig = self.gains(quality, y.device)
        y_noisy, y_ste = gate_quantize(y.float() * g, k, mode="mixed", noise=noise)
        z = self.h_a(y_noisy.abs())
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        # a context reads the quantized anchors, exactly what the decoder will have decoded
        scales, means = self.family.y_parameters(self, self.h_s(z_hat), y_ste)
        if means is not None:  # rounded as the coder rounds them; gradients pass straight through
            means = means + (torch.round(means) - means).detach()
        y_likelihoods = likelihoods(self.gaussian_conditional, y_noisy, scales, means)
        x_hat = None
        if synthesis:
            with lowp():
                x_hat = self.g_s(y_ste * ig).float()
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "y": y.detach()}

    @torch.no_grad()
    def permute_latent_channels(self, order) -> None:
        """Renumber y's channels in place: new channel i is old channel order[i]. The codec is the
        same function (its latents come out permuted, and the k-sparse gate, which ranks channels
        by magnitude, is indifferent to their order); a family that codes channels in groups
        orders them this way before it learns (families/channel_checkerboard.py)."""
        M = self.config.M
        order = torch.as_tensor(order, dtype=torch.long)
        if sorted(order.tolist()) != list(range(M)):
            raise ValueError("not a permutation of the latent channels")
        both = torch.cat([order, order + M])
        g_a, g_s, h_a, h_s = self.g_a[-1], self.g_s[0], self.h_a[0], self.h_s[-1]
        if not (isinstance(g_a, nn.Conv2d) and isinstance(g_s, nn.ConvTranspose2d) and isinstance(h_a, nn.Conv2d)
                and isinstance(h_s, nn.Conv2d)):
            raise ValueError("this layout's latent channels cannot be renumbered")
        # (tensor, dim, index): g_a's output, g_s's and h_a's inputs, h_s's scales (and means), the gains
        h_s_index = order if h_s.out_channels == M else both
        for t, dim, index in ((g_a.weight, 0, order), (g_a.bias, 0, order), (g_s.weight, 0, order),
                              (h_a.weight, 1, order), (h_s.weight, 0, h_s_index), (h_s.bias, 0, h_s_index),
                              (self.gain, 1, order), (self.inv_gain, 1, order)):
            t.copy_(t.index_select(dim, index))
        self.family.permute_latent_channels(self, order)

    def aux_loss(self) -> torch.Tensor:
        """The entropy bottleneck's quantile loss (trained by its own optimizer)."""
        return self.entropy_bottleneck.loss()

    # ---- coding tables and weights ------------------------------------------------------------
    def update(self, scale_table=None, force=False, update_quantiles=False) -> bool:
        """Rebuild the entropy models' CDF tables from the current weights (before coding)."""
        updated = self.entropy_bottleneck.update(force=force, update_quantiles=update_quantiles)
        scale_table = get_scale_table() if scale_table is None else scale_table
        return self.gaussian_conditional.update_scale_table(scale_table, force=force) or updated

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # CDF tables are sized by the weights that fill them: empty buffers take the saved shape;
        # a state without the derived tables (a run state's) keeps this model's own.
        state_dict = dict(state_dict)
        for prefix, module in (("entropy_bottleneck", self.entropy_bottleneck),
                               ("gaussian_conditional", self.gaussian_conditional)):
            for name in _CDF_BUFFERS:
                saved, buf = state_dict.get(f"{prefix}.{name}"), getattr(module, name, None)
                if saved is None and buf is not None and name in DERIVED_TABLES:
                    state_dict[f"{prefix}.{name}"] = buf
                elif saved is not None and buf is not None and buf.numel() == 0:
                    buf.resize_(saved.size())
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @classmethod
    def from_weights(cls, weights) -> "AecModel":
        """The model of a weights file (weights.Weights), float32, in eval mode and channels-last
        (the faster layout for CPU convolutions)."""
        model = cls(weights.config)
        state = {k: torch.tensor(v).float() if v.dtype.kind == "f" else torch.tensor(v)
                 for k, v in weights.tensors.items()}
        try:
            model.load_state_dict(state)
        except (RuntimeError, KeyError) as e:
            from ..errors import AecError

            raise AecError(f"weights file does not fit the model: {str(e).splitlines()[0]}") from None
        return model.eval().to(memory_format=torch.channels_last)

    def coding_state(self) -> dict:
        """The state dict as numpy arrays on the CPU: what weights.Weights holds."""
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}

    # ---- the transforms, for the torch engine ----------------------------------------------------
    @torch.no_grad()
    def quantize_latents(self, y: torch.Tensor, quality: int | float, k: int):
        """g_a's output -> (y_symbols, z): gain for the quality, k-sparse gate, rounding, h_a."""
        g, _ = self.gains(quality, y.device)
        y_hat = gate_quantize((y * g).float(), k)
        return y_hat, self.h_a(y_hat.abs())

    @torch.no_grad()
    def synthesize(self, y_hat: torch.Tensor, quality: int | float) -> torch.Tensor:
        """Decoder transform, float32 on y_hat's device. Only the entropy parameters must agree bit
        for bit across devices (families/base.py); pixels from g_s may differ by one level
        at rare rounding boundaries between devices (docs/performance.md gives the measured
        tolerance), and are identical run to run on one device with the same thread count."""
        _, ig = self.gains(quality, y_hat.device)
        return self.g_s((y_hat.float() * ig).contiguous(memory_format=torch.channels_last))
