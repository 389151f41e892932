"""Encoder effort: refine one image's latents by gradient descent (Campos et al. 2019; Yang,
Bamler & Mandt 2020), keeping the decoder and the format unchanged.

Effort 0 is the plain single pass. Higher efforts start from its latents (the gain-scaled y, and
z = h_a of its symbols, kept fixed) and minimise the training objective for this image only,

    bits(y~ | h_s(z_hat)) / pixels + lambda[q] * 255^2 * MSE(g_s(y~), x),

over y, by Adam, where y~ is y after the k-sparse gate and a soft rounding: stochastic Gumbel
annealing (SGA, Yang et al. 2020). Each gated value is drawn towards its floor or its ceiling by a
Gumbel-softmax whose temperature falls from 0.5 towards 0 as the steps go, so the relaxation
starts smooth and ends as the coder's hard rounding; rate and distortion see the same y~.
Why: on validation crops (docs/performance.md) the first relaxation tried (straight-through
rounding for the distortion, unrounded y for the rate) improved the real cost only for ~20 steps
and then drifted away from it, leaving efforts above 1 no better than 1; SGA kept improving the
real cost for ~300 steps and gained 4-5x as much.

What counts is real cost: every CHECK_EVERY steps the candidate latents (hard-rounded) are
entropy-coded and decoded, and the encoder keeps the one with the lowest actual cost (file bits
per pixel + lambda * 255^2 * decoded MSE), the effort-0 latents included, so a higher effort
never codes an image at a higher cost than effort 0. The schedule depends on the step only, not on
the number of steps, so every effort follows the same path and a higher one is never worse than a
lower one. Deterministic for a given input, settings, device and thread count: the Gumbel draws
come from a generator with a fixed seed. On CPUs with bf16 instructions g_s runs under bfloat16
autocast while refining (2x faster, same real cost on validation crops within 0.1 %); what is
kept is always judged by the float32 decode.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..kernels import gate_quantize
from .config import EFFORT_STEPS, MAX_EFFORT  # noqa: F401 (re-exported)
from .families.base import likelihoods
from .config import LAMBDAS
from .model import AecModel

MAX_PIXELS = 1920 * 1088  # refinement backpropagates through g_s over the whole image: ~3 GB here
CHECK_EVERY = 10       # steps between real-cost checks: a higher effort sees every check of a lower one
LEARNING_RATE = 0.05   # Adam, on latents in quantization steps
TEMPERATURE = 0.5      # SGA temperature at step 0, falling as exp(-step / ANNEAL_STEPS)
ANNEAL_STEPS = 120
SEED = 0


def rd_lambda(quality: int | float) -> float:
    """The distortion weight of a quality: the levels' lambdas, log-linear in between."""
    lo = min(int(math.floor(quality)), len(LAMBDAS) - 1)
    t = quality - lo
    return math.exp((1 - t) * math.log(LAMBDAS[lo - 1]) + t * math.log(LAMBDAS[min(lo, len(LAMBDAS) - 1)]))


def _hyper_parameters(model: AecModel, z: torch.Tensor) -> torch.Tensor:
    """h_s's output for the continuous z, rounded as the coder rounds it."""
    medians = model.entropy_bottleneck.quantiles[:, 0, 1].reshape(1, -1, 1, 1)
    return model.h_s(torch.round(z - medians) + medians)


def _entropy_parameters(model: AecModel, params: torch.Tensor, y: torch.Tensor):
    """(scales, integer means or None) for y; a context reads y's anchors."""
    scales, means = model.family.y_parameters(model, params, y)
    return scales, (torch.round(means) if means is not None else None)


def _bits(model: AecModel, y: torch.Tensor, scales: torch.Tensor, means) -> torch.Tensor:
    return -torch.log2(likelihoods(model.gaussian_conditional, y, scales, means)).sum()


def native_bf16(device: torch.device) -> bool:
    """Run g_s under bfloat16 autocast during refinement: only on CPUs with bf16 instructions
    (AVX512_BF16, AMX), where it halves the time per step at the same real cost (the checks decode
    in float32); elsewhere bf16 is emulated and slower."""
    if device.type != "cpu":
        return False
    checks = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(c is not None and c() for c in checks)


def _soft_round(y: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """SGA: floor(y) + a Gumbel-softmax draw between 0 (floor) and 1 (ceiling), whose logits
    -atanh(distance) / tau favour the nearer integer more as tau falls."""
    floor = torch.floor(y)
    d = y - floor
    eps = 1e-5
    logits = torch.stack([-torch.atanh(d.clamp(eps, 1 - eps)), -torch.atanh((1 - d).clamp(eps, 1 - eps))], -1) / tau
    u = torch.rand(logits.shape, generator=gen, dtype=torch.float32).clamp_min(1e-20).to(y.device)
    weights = torch.softmax(logits - torch.log(-torch.log(u)), dim=-1)
    return floor + weights[..., 1]


def refine(model: AecModel, x: torch.Tensor, size: tuple[int, int], y_scaled: torch.Tensor, z: torch.Tensor,
           quality, k: int, effort: int, real_cost, on_check=None) -> tuple[torch.Tensor, torch.Tensor]:
    """-> the (y_symbols, z) with the lowest real_cost(y_symbols, z) among the start and every
    CHECK_EVERY-th of `EFFORT_STEPS[effort]` Adam steps (the path is the same for every effort,
    so a higher effort is never worse than a lower one).

    x: the padded image (1, 3, H, W) in [0, 1], of which size = (height, width) is the picture;
    y_scaled: g_a(x) * gain (before rounding); z: h_a of the start's symbols; real_cost: the
    coded cost of candidate latents (file bits per pixel + lambda * 255^2 * decoded MSE);
    on_check(step, steps, best): called after every check (progress bars; the effort benchmark
    reads every effort's result off one run of the highest)."""
    steps = EFFORT_STEPS[effort]
    start = gate_quantize(y_scaled, k)
    best, best_cost = (start, z), real_cost(start, z)
    if steps == 0:
        return best
    if on_check is not None:
        on_check(0, steps, best)
    lam = rd_lambda(quality)
    h, w = size
    with torch.inference_mode(False), torch.enable_grad():
        x = x[:, :, :h, :w].clone()
        z = z.clone()
        y_var = y_scaled.clone().requires_grad_(True)
        _, ig = model.gains(quality, x.device)
        with torch.no_grad():
            params = _hyper_parameters(model, z)
            scales, means = _entropy_parameters(model, params, y_var)
        opt = torch.optim.Adam([y_var], lr=LEARNING_RATE)
        zeros = torch.zeros_like(y_var)
        gen = torch.Generator().manual_seed(SEED)
        low_precision = native_bf16(x.device)
        for step in range(1, steps + 1):
            with torch.no_grad():  # the gate: which channels this y keeps
                kept = (gate_quantize(y_var, k, mode="mixed", noise=zeros)[0] != 0).float()
            y_soft = _soft_round(y_var, TEMPERATURE * math.exp(-step / ANNEAL_STEPS), gen) * kept
            if model.family.uses_context:  # the non-anchors' parameters follow the anchors being refined
                scales, means = _entropy_parameters(model, params, y_soft)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=low_precision):
                x_hat = model.g_s(y_soft * ig)[:, :, :h, :w]
            loss = _bits(model, y_soft, scales, means) / (h * w) + lam * 255 ** 2 * F.mse_loss(x_hat, x)
            (y_var.grad,) = torch.autograd.grad(loss, [y_var])
            opt.step()
            if step % CHECK_EVERY == 0 or step == steps:
                with torch.no_grad():
                    cand = gate_quantize(y_var.detach(), k)
                cost = real_cost(cand, z)
                if cost < best_cost:
                    best, best_cost = (cand, z), cost
                if on_check is not None:
                    on_check(step, steps, best)
    return best
