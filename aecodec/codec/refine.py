"""Encoder effort: refine one image's latents by gradient descent (Campos et al. 2019; Yang,
Bamler & Mandt 2020), keeping the decoder and the format unchanged.

Effort 0 is the plain single pass. Higher efforts start from its latents (the gain-scaled y, and
z = h_a of its symbols, kept fixed) and minimise the training objective for this image only,

    bits(y | h_s(z_hat)) / pixels + lambda[q] * 255^2 * MSE(g_s(round(y)), x),

over y, by Adam. Rounding: the reconstruction sees the coder's rounding and k-sparse gate with a
straight-through gradient; the rate term sees the gated but unrounded y (a smooth relaxation).
Measured on validation crops (docs/performance.md): straight-through rounding in the rate term
as well, or a higher learning rate, or moving z too, made the loss rise after a few steps; this
relaxation at lr 0.005 lowered it steadily. Stochastic Gumbel annealing (Yang et al. 2020) does
better with thousands of steps, more than a CPU can spend per image. Whatever the relaxation,
what counts is real cost: at a few checkpoints the candidate latents are entropy-coded and
decoded, and the encoder keeps the one with the lowest actual cost (file bits per pixel +
lambda * 255^2 * decoded MSE), the effort-0 latents included, so a higher effort never codes an
image at a higher cost than effort 0. Deterministic for a given input, settings, device and
thread count (no random draws).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..kernels import gate_quantize
from .model import LAMBDAS, AecModel

# effort -> gradient steps (each: g_s forward + backward; ~0.6 s for a 768x512 image on 2 CPU cores)
EFFORT_STEPS = {0: 0, 1: 40, 2: 150, 3: 500}
MAX_EFFORT = max(EFFORT_STEPS)
MAX_PIXELS = 1920 * 1088  # refinement backpropagates through g_s over the whole image: ~3 GB here
CHECK_EVERY = 10       # steps between real-cost checks: a higher effort sees every check of a lower one
LEARNING_RATE = 0.005  # Adam, on latents in quantization steps


def rd_lambda(quality: int | float) -> float:
    """The distortion weight of a quality: the levels' lambdas, log-linear in between."""
    lo = min(int(math.floor(quality)), len(LAMBDAS) - 1)
    t = quality - lo
    return math.exp((1 - t) * math.log(LAMBDAS[lo - 1]) + t * math.log(LAMBDAS[min(lo, len(LAMBDAS) - 1)]))


def _entropy_parameters(model: AecModel, z: torch.Tensor):
    """(scales, integer means or None) for y from the continuous z, rounded as the coder does."""
    medians = model.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
    z_hat = torch.round(z - medians) + medians
    scales, means = model.entropy_parameters(model.h_s(z_hat))
    return scales, (torch.round(means) if means is not None else None)


def _bits(model: AecModel, y: torch.Tensor, scales: torch.Tensor, means) -> torch.Tensor:
    gc = model.gaussian_conditional
    return -torch.log2(gc.likelihood_lower_bound(gc._likelihood(y, scales, means))).sum()


def refine(model: AecModel, x: torch.Tensor, size: tuple[int, int], y_scaled: torch.Tensor, z: torch.Tensor,
           quality, k: int, effort: int, real_cost) -> tuple[torch.Tensor, torch.Tensor]:
    """-> the (y_symbols, z) with the lowest real_cost(y_symbols, z) among the start and every
    CHECK_EVERY-th of `EFFORT_STEPS[effort]` Adam steps (the path is the same for every effort,
    so a higher effort is never worse than a lower one).

    x: the padded image (1, 3, H, W) in [0, 1], of which size = (height, width) is the picture;
    y_scaled: g_a(x) * gain (before rounding); z: h_a of the start's symbols; real_cost: the
    coded cost of candidate latents (file bits per pixel + lambda * 255^2 * decoded MSE)."""
    steps = EFFORT_STEPS[effort]
    start = gate_quantize(y_scaled, k)
    best, best_cost = (start, z), real_cost(start, z)
    if steps == 0:
        return best
    lam = rd_lambda(quality)
    h, w = size
    with torch.inference_mode(False), torch.enable_grad():
        x = x[:, :, :h, :w].clone()
        z = z.clone()
        y_var = y_scaled.clone().requires_grad_(True)
        _, ig = model._gains(quality, x.device)
        with torch.no_grad():
            scales, means = _entropy_parameters(model, z)
        opt = torch.optim.Adam([y_var], lr=LEARNING_RATE)
        zeros = torch.zeros_like(y_var)
        for step in range(1, steps + 1):
            y_soft, y_hat = gate_quantize(y_var, k, mode="mixed", noise=zeros)  # (gated, rounded)
            x_hat = model.g_s(y_hat * ig)[:, :, :h, :w]
            loss = _bits(model, y_soft, scales, means) / (h * w) + lam * 255 ** 2 * F.mse_loss(x_hat, x)
            (y_var.grad,) = torch.autograd.grad(loss, [y_var])
            opt.step()
            if step % CHECK_EVERY == 0 or step == steps:
                with torch.no_grad():
                    cand = gate_quantize(y_var.detach(), k)
                cost = real_cost(cand, z)
                if cost < best_cost:
                    best, best_cost = (cand, z), cost
    return best
