"""The checkerboard context (He et al. 2021) on the mean-scale hyperprior.

Half of y's positions, the anchors ((row + col) even), are coded first with the hyperprior's
parameters alone; the other half then also see the decoded anchors around them, through a 5x5
convolution over the 12 anchor taps (M -> 2M) and 1x1 layers that correct the hyperprior's scales
and means. The y stream holds the anchors first, then the other positions. Decoding takes two
passes, each parallel over the whole image.

The training side is layers.CheckerboardContext (the correction's last layer starts at zero, so a
model gains a context with its coding unchanged and learns to use it); the coder side computes the
same network at the non-anchor positions only, as an integer network (`IntegerContext`, exact in
any order) where the model's config has its exponents, else in float64 (`Context64`).
"""
from __future__ import annotations

import numpy as np

from .. import integer_net, numpy_ops as ops
from ..rans import RansDecoder
from .registry import register
from .base import EntropyCoder, check_range, encode_symbols, guard, rows_for, y_symbols
from .mean_scale import MeanScale

# The 12 offsets of a 5x5 window around a non-anchor position that land on anchors ((dy + dx)
# odd): the only neighbours it can see when it is decoded.
TAPS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy + dx) % 2)


def anchors(h: int, w: int) -> np.ndarray:
    """(h, w) bool: the anchors ((row + col) even), coded first."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


def _rows(a: np.ndarray, anchor: bool) -> tuple[np.ndarray, np.ndarray]:
    """a's (..., h, w) anchors (or other positions) as two strided views, w even: those of its
    even rows, those of its odd rows (each row's every other column, from its own parity)."""
    first = 0 if anchor else 1  # the column of row 0's first one
    return a[..., 0::2, first::2], a[..., 1::2, 1 - first::2]


def positions(a: np.ndarray, anchor: bool) -> np.ndarray:
    """a (C, h, w) at its anchors (or the other positions): (C, P), P in row-major order, as
    a[:, anchors(h, w)] (or ~anchors). With w even (y's width always is: a multiple of 4) each row
    holds w / 2 of them: two strided copies instead of a boolean gather (~10x faster)."""
    C, h, w = a.shape
    if w % 2:
        where = anchors(h, w)
        return a[:, where if anchor else ~where]
    out = np.empty((C, h, w // 2), a.dtype)
    out[:, 0::2], out[:, 1::2] = _rows(a, anchor)
    return out.reshape(C, -1)


def place(a: np.ndarray, values: np.ndarray, anchor: bool) -> None:
    """a[:, anchors] = values (C, P) (or at the other positions): the inverse of `positions`."""
    C, h, w = a.shape
    if w % 2:
        where = anchors(h, w)
        a[:, where if anchor else ~where] = values
        return
    even, odd = _rows(a, anchor)
    v = values.reshape(C, h, w // 2)
    even[...], odd[...] = v[:, 0::2], v[:, 1::2]


class Context64:
    """layers.CheckerboardContext in float64, evaluated at the non-anchor positions only."""

    CHUNK = 2048  # positions per block: the gathered taps of a block take ~19 MB for M = 192

    def __init__(self, tensors: dict[str, np.ndarray], M: int):
        f64 = np.float64
        taps = tensors["context.ctx_weight"].astype(f64)  # (2M, M, 12)
        if taps.shape != (2 * M, M, len(TAPS)):
            raise ValueError("context weights do not fit the model")
        self.ctx_w = np.ascontiguousarray(np.concatenate([taps[:, :, t] for t in range(len(TAPS))], axis=1))
        self.ctx_b = tensors["context.ctx_bias"].astype(f64)[:, None]
        self.ep = [(tensors[f"context.ep.{i}.weight"].astype(f64)[:, :, 0, 0],
                    tensors[f"context.ep.{i}.bias"].astype(f64)[:, None]) for i in (0, 2, 4)]

    def blocks(self, params: np.ndarray, y_hat: np.ndarray, is_anchor: np.ndarray):
        """params (2M, h, w) from h_s, y_hat (M, h, w) whose anchors are decoded -> the non-anchors'
        parameters, P in row-major order of the non-anchor positions: (positions, (2M, n)) for
        blocks of n positions in turn (a coder turns each into indexes while it is in the cache)."""
        M, h, w = y_hat.shape
        width = w + 4
        ya = np.zeros((M, h + 4, width), np.float32)  # y_hat's integers are exact in float32
        place(ya[:, 2:-2, 2:-2], positions(y_hat, anchor=True), anchor=True)  # the anchors only
        flat = ya.reshape(M, -1)
        offsets = [dy * width + dx for dy, dx in TAPS]
        iy, ix = np.nonzero(~is_anchor)
        base = positions(params, anchor=False)
        for a in range(0, iy.size, self.CHUNK):
            at = (iy[a:a + self.CHUNK] + 2) * width + ix[a:a + self.CHUNK] + 2
            # each tap's gather lands where the weights read it: (taps, M, P) is the (taps * M, P) matrix
            cols = np.empty((len(TAPS), M, at.size), np.float32)
            for t, offset in enumerate(offsets):
                np.take(flat, at + offset, axis=1, out=cols[t], mode="clip")  # in range: unbuffered
            yield slice(a, a + at.size), self.corrected(base[:, a:a + self.CHUNK], cols.reshape(len(TAPS) * M, -1))

    def correct(self, params: np.ndarray, y_hat: np.ndarray, is_anchor: np.ndarray) -> np.ndarray:
        """The non-anchors' parameters (2M, P) at once (see `blocks`)."""
        blocks = list(self.blocks(params, y_hat, is_anchor))
        if not blocks:
            return np.empty((params.shape[0], 0), params.dtype)
        return np.concatenate([block for _, block in blocks], axis=1)

    def corrected(self, base: np.ndarray, cols: np.ndarray, peaks: list | None = None) -> np.ndarray:
        """h_s's parameters (2M, n) and the anchor taps (taps * M, n) of n positions -> their
        corrected parameters. peaks: per 1x1 layer, the largest |input| seen so far (updated:
        calibration of the integer network)."""
        x = np.concatenate([base, self.ctx_w @ cols.astype(np.float64) + self.ctx_b], axis=0)
        for i, (wm, b) in enumerate(self.ep):
            if peaks is not None:
                peaks[i] = max(peaks[i], float(np.max(np.abs(x), initial=0.0)))
            x = wm @ x + b
            if i < 2:
                ops.relu(x)
        return base + x


class IntegerContext(Context64):
    """The same network as an integer network (integer_net.py): exact in any order. exponents:
    those of the 1x1 layers' inputs (the first: h_s's parameters and the convolution's output,
    signed); the convolution reads y_hat's integers as they are. None: the float network, which
    records its peaks for calibration (`peaks`). bits: (weight bits, activation bits); each 1x1
    layer runs in float32 where that is exact (integer_net.exact_dtype), else float64."""

    def __init__(self, tensors: dict[str, np.ndarray], M: int, exponents=None,
                 bits: tuple[int, int] = (integer_net.WEIGHT_BITS, integer_net.ACTIVATION_BITS)):
        super().__init__(tensors, M)
        self.wbits, self.abits = bits
        if exponents is not None and len(exponents) != len(self.ep):
            raise ValueError(f"context: {len(exponents)} activation exponents for {len(self.ep)} layers")
        self.g = None if exponents is None else [int(g) for g in exponents]
        self.peaks = [0.0] * len(self.ep)
        if self.g is not None:
            self.ctx_w, e = integer_net.integer_weights(self.ctx_w, 0, self.wbits)
            self.ctx_e = e[:, None]
            # float32 computes the convolution exactly where no partial sum can reach 2^24 (_conv)
            self.ctx_w32, self.ctx_peak = self.ctx_w.astype(np.float32), np.abs(self.ctx_w).max(axis=0)
            self.ctx_b = integer_net.integer_bias(self.ctx_b, self.ctx_e)
            ep_e = []
            for i, (wm, b) in enumerate(self.ep):
                wm, e = integer_net.integer_weights(wm, 0, self.wbits)
                b = integer_net.integer_bias(b, e[:, None] + self.g[i])
                dtype = integer_net.exact_dtype((wm.T,), b, integer_net.activation_top(i == 0, self.abits))
                self.ep[i] = (wm.astype(dtype), b.astype(dtype))
                ep_e.append(e[:, None])
            # the powers of two between exponents: h_s's parameters and the convolution's output to the
            # first 1x1 layer's input, each 1x1 layer's output to the next input, the last to real values
            pow2 = integer_net.pow2
            self.scales = ([pow2(self.g[0]), pow2(self.g[0] - self.ctx_e)]
                           + [pow2(self.g[i + 1] - ep_e[i] - self.g[i]).astype(self.ep[i][0].dtype)
                              for i in range(len(self.ep) - 1)]
                           + [pow2(-(ep_e[-1] + self.g[-1]))])

    def corrected(self, base, cols):
        if self.g is None:  # calibration: the float network, recording its peaks
            return super().corrected(base, cols, self.peaks)
        s, q, bits = self.scales, integer_net.requantize, self.abits
        conv = self._conv(cols)  # at exponent ctx_e: y_hat's integers need no scaling
        x = np.concatenate([q(base, s[0], True, bits), q(conv, s[1], True, bits)], axis=0)
        for i, (wm, b) in enumerate(self.ep):
            acc = wm @ x.astype(wm.dtype, copy=False)  # integers: exact in either dtype
            acc += b
            if i < 2:
                x = q(acc, s[i + 2], False, bits)  # the ReLU is the clip at 0
        return base + acc * s[-1]  # exact: integers below 2^53 times a power of two

    def _conv(self, cols: np.ndarray) -> np.ndarray:
        """ctx_w @ cols + ctx_b, exactly. In float32 (twice as fast) when every output's sum of
        |weight x tap| is below 2^24 (then every product and partial sum is an integer float32
        holds, in any order), which the small integers of y_hat nearly always allow; else float64."""
        if cols.size and float(self.ctx_peak @ np.abs(cols).max(axis=1)) < 2 ** 24:
            return (self.ctx_w32 @ cols.astype(np.float32, copy=False)).astype(np.float64) + self.ctx_b
        return self.ctx_w @ cols.astype(np.float64) + self.ctx_b

    def exponents(self) -> list[int]:
        """Calibration: the exponents that fit the peaks seen (the first input signed)."""
        return [integer_net.activation_exponent(p, i == 0, self.abits) for i, p in enumerate(self.peaks)]


class CheckerboardCoder(EntropyCoder):
    def __init__(self, tensors, config):
        super().__init__(tensors, config)
        exps = config.integer_exponents("context")
        self.context = (Context64(tensors, config.M) if exps is None
                        else IntegerContext(tensors, config.M, exps, config.integer_bits_or_default))

    def other_indexes_means(self, params: np.ndarray, y_hat: np.ndarray, is_anchor: np.ndarray):
        """The non-anchors' (table indexes, integer means), each (M, P), from the context's blocks."""
        P = int(np.count_nonzero(~is_anchor))
        indexes, means = np.empty((self.M, P), np.int32), np.empty((self.M, P), np.float32)
        for at, block in self.context.blocks(params, y_hat, is_anchor):
            indexes[:, at], means[:, at] = self.indexes_means(block)
        return indexes, means

    def encode_y(self, y_hat: np.ndarray, params: np.ndarray) -> bytes:
        is_anchor = anchors(*y_hat.shape[1:])
        ix_a, m_a = self.indexes_means(positions(params, anchor=True))
        ix_n, m_n = self.other_indexes_means(params, y_hat, is_anchor)
        symbols = np.concatenate([y_symbols(positions(y_hat, anchor=True), m_a).ravel(),
                                  y_symbols(positions(y_hat, anchor=False), m_n).ravel()])
        return encode_symbols(symbols, np.concatenate([ix_a.ravel(), ix_n.ravel()]), self.y_tables)

    def decode_y(self, y_bytes: bytes, params: np.ndarray) -> np.ndarray:
        M, h, w = self.M, params.shape[1], params.shape[2]
        is_anchor = anchors(h, w)
        decoder = RansDecoder()
        decoder.set_stream(guard(y_bytes, M * h * w))
        y_hat = np.zeros((M, h, w), np.float32)
        ix_a, m_a = self.indexes_means(positions(params, anchor=True))
        list_a = ix_a.ravel().tolist()
        sym_a = decoder.decode_stream(list_a, *rows_for(self.y_tables, ix_a))
        place(y_hat, np.asarray(sym_a, np.int32).reshape(ix_a.shape) + m_a, anchor=True)
        check_range(y_hat)
        ix_n, m_n = self.other_indexes_means(params, y_hat, is_anchor)
        list_n = ix_n.ravel().tolist()
        sym_n = decoder.decode_stream(list_n, *rows_for(self.y_tables, ix_n))
        place(y_hat, np.asarray(sym_n, np.int32).reshape(ix_n.shape) + m_n, anchor=False)
        check_range(y_hat)
        both = np.concatenate([ix_a.ravel(), ix_n.ravel()])
        if encode_symbols(sym_a + sym_n, both, self.y_tables, list_a + list_n) != y_bytes:
            raise ValueError("latent stream does not decode cleanly")
        return y_hat


@register
class Checkerboard(MeanScale):
    name = "checkerboard"
    tag = "cb"
    legacy_flags = {"means": True, "context": True}
    parent = "mean-scale"
    modules = ("context",)
    uses_context = True
    coder = CheckerboardCoder

    def build(self, model) -> None:
        from ..layers import CheckerboardContext

        model.context = CheckerboardContext(model.config.M, TAPS, anchors)

    def y_parameters(self, model, params, y_hat):
        """The context reads y_hat's anchors only: exactly what the decoder has decoded."""
        return super().y_parameters(model, model.context(params, y_hat), y_hat)

    def permute_latent_channels(self, model, order) -> None:
        """The context reads y's channels (ctx_weight's inputs) and corrects their scales and means
        (the first 2M inputs of its 1x1 layers, and its outputs)."""
        import torch

        ctx, M = model.context, model.config.M
        both = torch.cat([order, order + M])
        first, last = ctx.ep[0], ctx.ep[-1]
        for t, dim, index in ((ctx.ctx_weight, 1, order), (first.weight, 1, torch.cat([both, torch.arange(2 * M, 4 * M)])),
                              (last.weight, 0, both), (last.bias, 0, both)):
            t.copy_(t.index_select(dim, index))

    def grow(self, state: dict, model) -> dict:
        """A mean-scale model -> checkerboard: the new context keeps its initialisation, whose
        correction is zero, so coding is unchanged."""
        return {**{k: v for k, v in model.state_dict().items() if k.startswith("context.")}, **state}
