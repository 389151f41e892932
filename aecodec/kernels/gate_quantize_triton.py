"""Fused Triton kernel for k-sparse top-k gating + quantization (forward and backward).

One program owns BLOCK_P latent positions of one image and all C channels of each. It finds the
k-th largest |y| per position by a bitwise radix select on the float bits (for non-negative
floats the IEEE bit pattern orders like the value), so no sort is needed: 31 counting passes over
registers, then ties at the threshold are resolved to the lowest channel index with a prefix sum.
Kept entries are quantized and written; the kept set leaves as a bit-packed mask (C/32 int32 per
position, 1/32 of the fp32 latent) for the backward pass, which only multiplies by it.

Semantics are those of `aecodec.kernels.reference.gate_quantize`, bit for bit.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .reference import check_args

_MODE_ID = {"round": 0, "ste": 0, "noise": 1, "mixed": 2}


@triton.jit
def _or(a, b):
    return a | b


@triton.jit
def _round_half_even(x):
    # floor-based rounding: x - floor(x) is exact in fp32, unlike floor(x + 0.5).
    r = tl.floor(x)
    d = x - r
    half_r = r * 0.5
    r_odd = (half_r - tl.floor(half_r)) != 0.0
    up = (d > 0.5) | ((d == 0.5) & r_odd)
    r = tl.where(up, r + 1.0, r)
    # torch.round keeps the sign of zero (round(-0.3) == -0.0); r is 0 or has x's sign.
    sign = x.to(tl.int32, bitcast=True) & -2147483648
    return (r.to(tl.int32, bitcast=True) | sign).to(tl.float32, bitcast=True)


@triton.jit
def _rtne_bf16(x):
    # Round fp32 to the nearest bf16 (ties to even) in integer arithmetic, so that the final cast
    # is exact: the compiled cast rounds to nearest but the CPU interpreter truncates.
    bits = x.to(tl.int32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _gate_quantize_fwd(
    y_ptr, noise_ptr, out_ptr, out2_ptr, mask_ptr,
    P, C, k,
    s_yb, s_yc, s_yp,
    s_nb, s_nc, s_np,
    MODE: tl.constexpr, IN_BF16: tl.constexpr, OUT_BF16: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, WORDS: tl.constexpr,
):
    pid_p = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.arange(0, BLOCK_C)
    valid_p = offs_p < P
    valid = valid_p[:, None] & (offs_c < C)[None, :]
    y_off = b * s_yb + offs_p[:, None].to(tl.int64) * s_yp + offs_c[None, :].to(tl.int64) * s_yc
    if IN_BF16:
        # widen bf16 by bit shift: exact for subnormals too (the CPU interpreter flushes them)
        raw = tl.load(y_ptr.to(tl.pointer_type(tl.int16)) + y_off, mask=valid, other=0)
        x = (raw.to(tl.int32) << 16).to(tl.float32, bitcast=True)
    else:
        x = tl.load(y_ptr + y_off, mask=valid, other=0.0).to(tl.float32)

    # |x| as ordered int32 bits; padding gets -1 so it never counts as ">= candidate".
    a = tl.where(valid, x.to(tl.int32, bitcast=True) & 0x7FFFFFFF, -1)
    # Radix select, high bit first: thr is the largest prefix with count(a >= thr) >= k. Stop as
    # soon as every position of the block has count(a >= thr) == k exactly (then {a >= thr} is the
    # kept set); with real-valued latents that happens after ~10 of the 31 bits.
    thr = tl.zeros([BLOCK_P], dtype=tl.int32)
    cnt_thr = tl.sum((a >= 0).to(tl.int32), axis=1)
    bit = 30
    pending = tl.max((cnt_thr != k).to(tl.int32), axis=0)
    while (bit >= 0) & (pending > 0):
        cand = thr | (1 << bit)
        cnt = tl.sum((a >= cand[:, None]).to(tl.int32), axis=1)
        take = cnt >= k
        thr = tl.where(take, cand, thr)
        cnt_thr = tl.where(take, cnt, cnt_thr)
        pending = tl.max((cnt_thr != k).to(tl.int32), axis=0)
        bit -= 1
    eq = a == thr[:, None]
    keep = a >= thr[:, None]
    # Ties at the threshold only matter when more of them exist than free slots: keep the
    # lowest channel indices (an exclusive prefix count); skipped for blocks without such ties.
    if pending > 0:
        eq_i = eq.to(tl.int32)
        need = k - (cnt_thr - tl.sum(eq_i, axis=1))
        rank = tl.cumsum(eq_i, axis=1) - eq_i
        keep = (a > thr[:, None]) | (eq & (rank < need[:, None]))

    zero = tl.zeros_like(x)
    rounded = tl.where(keep, _round_half_even(x), zero)
    if MODE == 0:
        tl.store(out_ptr + y_off, rounded.to(out_ptr.dtype.element_ty), mask=valid)
    else:
        n_off = b * s_nb + offs_p[:, None].to(tl.int64) * s_np + offs_c[None, :].to(tl.int64) * s_nc
        u = tl.load(noise_ptr + n_off, mask=valid, other=0.0).to(tl.float32)
        noisy = tl.where(keep, x + u, zero)
        if OUT_BF16:
            noisy = _rtne_bf16(noisy)
        tl.store(out_ptr + y_off, noisy.to(out_ptr.dtype.element_ty), mask=valid)
        if MODE == 2:
            tl.store(out2_ptr + y_off, rounded.to(out2_ptr.dtype.element_ty), mask=valid)

    # Pack the kept set: bit (c % 32) of word c // 32.
    bits = keep.to(tl.int32) << (offs_c % 32)[None, :]
    words = tl.reduce(tl.reshape(bits, (BLOCK_P, WORDS, 32)), 2, _or)
    offs_w = tl.arange(0, WORDS)
    m_off = (b * P + offs_p[:, None].to(tl.int64)) * WORDS + offs_w[None, :]
    tl.store(mask_ptr + m_off, words, mask=valid_p[:, None])


@triton.jit
def _gate_quantize_bwd(
    g_ptr, g2_ptr, mask_ptr, out_ptr,
    P, C,
    s_gb, s_gc, s_gp,
    s_hb, s_hc, s_hp,
    HAS_G2: tl.constexpr, OUT_BF16: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, WORDS: tl.constexpr,
):
    pid_p = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.arange(0, BLOCK_C)
    valid = (offs_p < P)[:, None] & (offs_c < C)[None, :]
    p64 = offs_p[:, None].to(tl.int64)
    c64 = offs_c[None, :].to(tl.int64)
    g_off = b * s_gb + p64 * s_gp + c64 * s_gc
    g = tl.load(g_ptr + g_off, mask=valid, other=0.0)
    if HAS_G2:
        g = g.to(tl.float32)
        h_off = b * s_hb + p64 * s_hp + c64 * s_hc
        g += tl.load(g2_ptr + h_off, mask=valid, other=0.0).to(tl.float32)
        if OUT_BF16:  # autograd adds the two bf16 gradients with one rounding; so do we
            g = _rtne_bf16(g)
    w = tl.load(mask_ptr + (b * P + p64) * WORDS + (offs_c // 32)[None, :], mask=valid, other=0)
    kept = ((w >> (offs_c % 32)[None, :]) & 1) != 0
    tl.store(out_ptr + g_off, tl.where(kept, g, tl.zeros_like(g)).to(out_ptr.dtype.element_ty), mask=valid)


def _flat_strides(t: torch.Tensor):
    """(batch, channel, position) strides, positions being h * W + w; None if not flattenable."""
    B, C, H, W = t.shape
    sb, sc, sh, sw = t.stride()
    if H > 1 and W > 1 and sh != sw * W:
        return None
    sp = sw if W > 1 else sh
    return sb, sc, sp


def _strided_like(t: torch.Tensor) -> torch.Tensor:
    return t if _flat_strides(t) is not None else t.contiguous()


def _block_p(C: int, block_c: int) -> int:
    # Register tile of ~1024 elements per program: the best of the sweep on an H100
    # (docs/performance.md); AECODEC_GQ_TILE / AECODEC_GQ_WARPS override for tuning.
    env = os.environ.get("AECODEC_GQ_TILE")
    tile = int(env) if env else 1024
    return max(1, min(64, tile // block_c))


def _num_warps() -> int:
    return int(os.environ.get("AECODEC_GQ_WARPS", "2"))


def _launch_fwd(y, k, mode, noise):
    B, C, H, W = y.shape
    P = H * W
    block_c = max(32, triton.next_power_of_2(C))
    words = block_c // 32
    out = torch.empty_like(y)
    out2 = torch.empty_like(y) if mode == "mixed" else out
    mask = torch.empty((B, P, words), dtype=torch.int32, device=y.device)
    mode_id = _MODE_ID[mode]
    if mode_id:
        if noise is None:
            noise = torch.rand(y.shape, dtype=torch.float32, device=y.device) - 0.5
        noise = _strided_like(noise)
    nz = noise if mode_id else y
    if B * P and C:
        block_p = _block_p(C, block_c)
        grid = (triton.cdiv(P, block_p), B)
        _gate_quantize_fwd[grid](
            y, nz, out, out2, mask, P, C, k, *_flat_strides(y), *_flat_strides(nz),
            MODE=mode_id, IN_BF16=y.dtype == torch.bfloat16, OUT_BF16=y.dtype == torch.bfloat16, BLOCK_P=block_p, BLOCK_C=block_c, WORDS=words,
            num_warps=_num_warps(),
        )
    else:
        mask.zero_()
    return out, out2, mask


def _launch_bwd(grad, grad2, mask, shape):
    B, C, H, W = shape
    P = H * W
    words = mask.shape[-1]
    block_c = words * 32
    grad = _strided_like(grad)
    out = torch.empty_like(grad)  # the kernel writes with grad's strides
    if grad2 is not None:
        grad2 = _strided_like(grad2)
    if B * P and C:
        block_p = _block_p(C, block_c)
        grid = (triton.cdiv(P, block_p), B)
        g2 = grad2 if grad2 is not None else grad
        _gate_quantize_bwd[grid](
            grad, g2, mask, out, P, C, *_flat_strides(grad), *_flat_strides(g2),
            HAS_G2=grad2 is not None, OUT_BF16=grad.dtype == torch.bfloat16, BLOCK_P=block_p, BLOCK_C=block_c, WORDS=words, num_warps=_num_warps(),
        )
    return out


class _TritonGateQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, k, mode, noise):
        out, out2, mask = _launch_fwd(y, k, mode, noise)
        ctx.save_for_backward(mask)
        ctx.shape = y.shape
        ctx.mixed = mode == "mixed"
        ctx.mark_non_differentiable(mask)
        if ctx.mixed:
            return out, out2
        return out

    @staticmethod
    def backward(ctx, *grads):
        (mask,) = ctx.saved_tensors
        g1 = grads[0]
        g2 = grads[1] if ctx.mixed else None
        if g1 is None:
            g1, g2 = g2, None
        if g1 is None:
            return None, None, None, None
        return _launch_bwd(g1, g2, mask, ctx.shape), None, None, None


def triton_gate_quantize(y: torch.Tensor, k: int, mode: str = "round", noise: torch.Tensor | None = None):
    """Triton implementation of `reference.gate_quantize` (same signature, same results).

    Runs compiled on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1.
    """
    check_args(y, k, mode, noise)
    y_in = _strided_like(y)
    if mode == "round" and not y.requires_grad:
        return _launch_fwd(y_in, k, mode, None)[0]
    return _TritonGateQuantize.apply(y_in, k, mode, noise)
