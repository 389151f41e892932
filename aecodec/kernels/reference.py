"""Pure-PyTorch reference of the latent path: k-sparse top-k gating + quantization.

This is the semantic definition that the Triton kernel (`triton_gate_quantize`) must match exactly.

At every latent position (b, h, w) the k channels of largest |y| are kept and every other channel
is set to zero (Makhzani & Frey's k-sparse autoencoder). Ties in |y| go to the lowest channel
index, so the kept set is a pure function of the input. Decisions are made in float32 whatever
the input dtype; NaN never appears in a valid latent and is not specified.

Quantization modes (`mode=`):

* ``"round"``  (inference, the default): kept entries are rounded half-to-even (`torch.round`).
* ``"noise"``  (training, rate term): kept entries get additive uniform noise ``u`` in [-0.5, 0.5).
  ``noise`` may be passed (a tensor shaped like ``y``) for reproducibility; otherwise it is drawn
  with ``torch.rand``.
* ``"ste"``    (training, decoder input): forward as ``"round"``, backward as the identity
  (straight-through) on the kept entries.
* ``"mixed"``  (training): returns the tuple ``(noisy, ste)`` of the two modes above from one
  gating decision, the usual recipe for learned codecs (noise for the rate, rounding for the
  reconstruction).

In every mode the gradient flows only through the kept entries: ``dL/dy = dL/dout * mask``.
The output has the dtype, shape and memory format of ``y``.
"""
from __future__ import annotations

import torch

MODES = ("round", "noise", "ste", "mixed")


def check_args(y: torch.Tensor, k: int, mode: str, noise: torch.Tensor | None) -> None:
    if not isinstance(y, torch.Tensor) or y.dim() != 4:
        raise ValueError("gate_quantize expects a 4-D tensor (B, C, H, W)")
    if not y.is_floating_point():
        raise ValueError(f"gate_quantize expects a floating-point tensor, got {y.dtype}")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= y.shape[1]:
        raise ValueError(f"k must be an integer in [0, C={y.shape[1]}], got {k!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if noise is not None and noise.shape != y.shape:
        raise ValueError(f"noise must have the shape of y {tuple(y.shape)}, got {tuple(noise.shape)}")


def topk_mask(y: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k channels of largest |y| per position, ties to the lowest index."""
    a = y.detach().float().abs()
    C = a.shape[1]
    if k == 0:
        return torch.zeros_like(a, dtype=torch.bool)
    if k == C:
        return torch.ones_like(a, dtype=torch.bool)
    # A stable descending sort keeps equal values in channel order, which is exactly
    # "ties go to the lowest channel index".
    order = torch.sort(a, dim=1, descending=True, stable=True).indices
    mask = torch.zeros_like(a, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask


class _MaskedIdentity(torch.autograd.Function):
    """Forward: the given value. Backward: gradient times mask (straight-through on kept)."""

    @staticmethod
    def forward(ctx, y, value, mask):
        ctx.save_for_backward(mask)
        return value

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return torch.where(mask, grad, torch.zeros((), dtype=grad.dtype, device=grad.device)), None, None


def gate_quantize(y: torch.Tensor, k: int, mode: str = "round", noise: torch.Tensor | None = None):
    """Reference k-sparse gating + quantization; see the module docstring."""
    check_args(y, k, mode, noise)
    mask = topk_mask(y, k)
    yf = y.detach().float()
    rounded = torch.where(mask, torch.round(yf), torch.zeros_like(yf)).to(y.dtype)
    if mode == "round":
        return _MaskedIdentity.apply(y, rounded, mask) if y.requires_grad else rounded
    if mode == "ste":
        return _MaskedIdentity.apply(y, rounded, mask)
    if noise is None:
        noise = torch.rand_like(yf) - 0.5
    noisy = torch.where(mask, yf + noise.float(), torch.zeros_like(yf)).to(y.dtype)
    noisy = _MaskedIdentity.apply(y, noisy, mask)
    if mode == "noise":
        return noisy
    return noisy, _MaskedIdentity.apply(y, rounded, mask)
