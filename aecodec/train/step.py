"""One training step: the rate-distortion loss, the optimizers and the weight EMA.

`Trainer.step` is the real step that `aecodec train` runs and `python -m aecodec.train.speed`
times. Per image a random quality q (its lambda weights the distortion); per step one k.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from ..codec.config import Y_STRIDE
from ..codec.config import LAMBDAS
from ..codec.model import AecModel
from ..errors import AecError
from .config import TrainConfig
from .distributed import World, average_gradients, wrap


def rd_loss(out: dict, x: torch.Tensor | None, quality: torch.Tensor, mse: torch.Tensor | None = None):
    """mean over the batch of lambda[q] * 255^2 * MSE + bpp; returns (loss, bpp (B,), mse (B,)).
    Without out["x_hat"] (synthesis skipped) the given mse stands in: a constant for the gradient;
    x may then be None (the latents came from a cache)."""
    n_pix = Y_STRIDE ** 2 * out["y"].shape[2] * out["y"].shape[3]
    bits = sum(torch.log(l).flatten(1).sum(1) for l in out["likelihoods"].values()) / -math.log(2)
    bpp = bits / n_pix
    if out["x_hat"] is not None:
        mse = F.mse_loss(out["x_hat"], x, reduction="none").flatten(1).mean(1)
    lam = torch.tensor(LAMBDAS, device=bpp.device)[quality - 1]
    return (lam * 255 ** 2 * mse + bpp).mean(), bpp, mse


# modules that shape only the rate (with the family's own): when nothing else trains, the
# distortion is a constant
RATE_ONLY = ("h_a.", "h_s.", "entropy_bottleneck.", "gaussian_conditional.")
SYNTHESIS_EVERY = 8  # then g_s runs on every 8th step only, for the logged loss and PSNR


def draw_k(cfg: TrainConfig, M: int, gen: random.Random) -> int:
    """k for one step: uniform in [k_min, M] for a fraction of the steps, else M // 2, so the
    model works over the whole range of run-time k."""
    if gen.random() < cfg.k_full_fraction:
        return gen.randint(max(1, min(M, cfg.k_min)), M)
    return M // 2


class Trainer:
    """Model + Adam (main and auxiliary) + EMA of the weights, on one process of `world`."""

    def __init__(self, model: AecModel, cfg: TrainConfig, world: World = World(),
                 device: torch.device = torch.device("cpu")):
        self.model = model.to(device)
        self.cfg = cfg
        self.world = world
        self.net = wrap(self.model, world, device)  # what the forward pass runs through
        named = list(model.named_parameters())
        prefixes = tuple(p for p in cfg.train_only.split(",") if p)
        for n, p in named:  # the entropy bottleneck's quantiles (coding tables only) always train
            p.requires_grad_(not prefixes or n.startswith(prefixes) or n.endswith(".quantiles"))
        if prefixes and not any(p.requires_grad for n, p in named if not n.endswith(".quantiles")):
            raise AecError(f"--train-only {cfg.train_only!r} matches no parameter of the model")
        self.params = [p for n, p in named if not n.endswith(".quantiles") and p.requires_grad]
        self.aux_params = [p for n, p in named if n.endswith(".quantiles")]
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr)
        self.aux_opt = torch.optim.Adam(self.aux_params, lr=cfg.aux_lr)
        self.ema = {n: t.detach().clone() for n, t in model.state_dict().items() if t.is_floating_point()}
        self.autocast = torch.bfloat16 if cfg.bf16 else None
        # only the entropy model trains (e.g. --train-only context.): g_s is ~1/3 of such a step
        rate_only = RATE_ONLY + tuple(f"{m}." for m in model.family.modules)
        self.rate_only = all(n.startswith(rate_only) for n, p in named if p.requires_grad)
        self.steps, self.last_mse = 0, None

    def compile(self) -> None:
        """torch.compile g_a and g_s in place (parameter names, and so the state, stay as they are).
        Only for the training loop: evaluation and export run other shapes, eagerly."""
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # no C++ compiler, say: run eagerly, with a warning
        self.model.g_a.compile()
        self.model.g_s.compile()

    def wants_pixels(self) -> bool:
        """Whether the next step runs g_s (and so needs the crops, not cached latents)."""
        return not self.rate_only or self.steps % SYNTHESIS_EVERY == 0

    def step(self, x: torch.Tensor | None, quality: torch.Tensor, k: int, noise: torch.Tensor | None = None,
             y: torch.Tensor | None = None) -> dict:
        """One step on crops x, or (rate-only runs, when wants_pixels() is False) on g_a's latents y."""
        synthesis = self.wants_pixels()
        if x is None and (synthesis or y is None):
            raise ValueError("this step needs the crops")
        self.steps += 1
        out = self.net(x, quality, k, autocast=self.autocast, noise=noise, synthesis=synthesis, y=y)
        loss, bpp, mse = rd_loss(out, x, quality, None if synthesis else self.last_mse.expand(quality.shape[0]))
        if synthesis:
            self.last_mse = mse.detach().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip)
        self.opt.step()
        self.aux_opt.zero_grad(set_to_none=True)
        self.model.aux_loss().backward()
        average_gradients(self.aux_params, self.world)
        self.aux_opt.step()
        self.update_ema()
        return {"loss": loss.detach(), "bpp": bpp.detach(), "mse": mse.detach(), "y": out["y"]}

    @torch.no_grad()
    def update_ema(self) -> None:
        state = self.model.state_dict()
        names = list(self.ema)
        torch._foreach_lerp_([self.ema[n] for n in names], [state[n].detach() for n in names],
                             1.0 - self.cfg.ema_decay)

    def ema_state(self) -> dict:
        """The model's state dict with the EMA weights in place of the trained ones."""
        state = dict(self.model.state_dict())
        state.update(self.ema)
        return state
