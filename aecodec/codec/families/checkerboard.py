"""The checkerboard context (He et al. 2021) on the mean-scale hyperprior.

Half of y's positions, the anchors ((row + col) even), are coded first with the hyperprior's
parameters alone; the other half then also see the decoded anchors around them, through a 5x5
convolution over the 12 anchor taps (M -> 2M) and 1x1 layers that correct the hyperprior's scales
and means. The y stream holds the anchors first, then the other positions. Decoding takes two
passes, each parallel over the whole image.

The training side is layers.CheckerboardContext (the correction's last layer starts at zero, so a
model gains a context with its coding unchanged and learns to use it); the coder side computes the
same network in float64 at the non-anchor positions only (`Context64`).
"""
from __future__ import annotations

import numpy as np

from .. import numpy_ops as ops
from ..rans import RansDecoder
from .registry import register
from .base import EntropyCoder, check_range, encode_symbols, guard, y_symbols
from .mean_scale import MeanScale

# The 12 offsets of a 5x5 window around a non-anchor position that land on anchors ((dy + dx)
# odd): the only neighbours it can see when it is decoded.
TAPS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy + dx) % 2)


def anchors(h: int, w: int) -> np.ndarray:
    """(h, w) bool: the anchors ((row + col) even), coded first."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


class Context64:
    """layers.CheckerboardContext in float64, evaluated at the non-anchor positions only."""

    CHUNK = 2048  # positions per block: the gathered taps of a block take ~38 MB for M = 192

    def __init__(self, tensors: dict[str, np.ndarray], M: int):
        f64 = np.float64
        taps = tensors["context.ctx_weight"].astype(f64)  # (2M, M, 12)
        if taps.shape != (2 * M, M, len(TAPS)):
            raise ValueError("context weights do not fit the model")
        self.ctx_w = np.ascontiguousarray(np.concatenate([taps[:, :, t] for t in range(len(TAPS))], axis=1))
        self.ctx_b = tensors["context.ctx_bias"].astype(f64)[:, None]
        self.ep = [(tensors[f"context.ep.{i}.weight"].astype(f64)[:, :, 0, 0],
                    tensors[f"context.ep.{i}.bias"].astype(f64)[:, None]) for i in (0, 2, 4)]

    def correct(self, params: np.ndarray, y_hat: np.ndarray, is_anchor: np.ndarray) -> np.ndarray:
        """params (2M, h, w) from h_s, y_hat (M, h, w) whose anchors are decoded -> the non-anchors'
        parameters (2M, P), P in row-major order of the non-anchor positions."""
        M, h, w = y_hat.shape
        width = w + 4
        ya = np.zeros((M, h + 4, width))
        ya[:, 2:-2, 2:-2] = np.where(is_anchor, y_hat, 0)
        flat = ya.reshape(M, -1)
        offsets = np.array([dy * width + dx for dy, dx in TAPS])
        iy, ix = np.nonzero(~is_anchor)
        base = params[:, iy, ix]
        out = np.empty_like(base)
        for a in range(0, iy.size, self.CHUNK):
            at = (iy[a:a + self.CHUNK] + 2) * width + ix[a:a + self.CHUNK] + 2
            # one gather of every tap of the block, (M, taps, P) -> the (taps * M, P) the weights read
            cols = np.take(flat, (offsets[:, None] + at).ravel(), axis=1).reshape(M, len(TAPS), -1)
            cols = cols.transpose(1, 0, 2).reshape(len(TAPS) * M, -1)
            x = np.concatenate([base[:, a:a + self.CHUNK], self.ctx_w @ cols + self.ctx_b], axis=0)
            for i, (wm, b) in enumerate(self.ep):
                x = wm @ x + b
                if i < 2:
                    ops.relu(x)
            out[:, a:a + self.CHUNK] = base[:, a:a + self.CHUNK] + x
        return out


class CheckerboardCoder(EntropyCoder):
    def __init__(self, tensors, config):
        super().__init__(tensors, config)
        self.context = Context64(tensors, config.M)

    def encode_y(self, y_hat: np.ndarray, params: np.ndarray) -> bytes:
        is_anchor = anchors(*y_hat.shape[1:])
        ix_a, m_a = self.indexes_means(params[:, is_anchor])
        ix_n, m_n = self.indexes_means(self.context.correct(params, y_hat, is_anchor))
        symbols = np.concatenate([y_symbols(y_hat[:, is_anchor], m_a).ravel(),
                                  y_symbols(y_hat[:, ~is_anchor], m_n).ravel()])
        return encode_symbols(symbols, np.concatenate([ix_a.ravel(), ix_n.ravel()]), self.y_tables)

    def decode_y(self, y_bytes: bytes, params: np.ndarray) -> np.ndarray:
        M, h, w = self.M, params.shape[1], params.shape[2]
        is_anchor = anchors(h, w)
        decoder = RansDecoder()
        decoder.set_stream(guard(y_bytes, M * h * w))
        y_hat = np.zeros((M, h, w), np.float32)
        ix_a, m_a = self.indexes_means(params[:, is_anchor])
        list_a = ix_a.ravel().tolist()
        sym_a = np.asarray(decoder.decode_stream(list_a, *self.y_tables), np.int32)
        y_hat[:, is_anchor] = sym_a.reshape(ix_a.shape) + m_a
        check_range(y_hat)
        ix_n, m_n = self.indexes_means(self.context.correct(params, y_hat, is_anchor))
        list_n = ix_n.ravel().tolist()
        sym_n = np.asarray(decoder.decode_stream(list_n, *self.y_tables), np.int32)
        y_hat[:, ~is_anchor] = sym_n.reshape(ix_n.shape) + m_n
        check_range(y_hat)
        if encode_symbols(np.concatenate([sym_a, sym_n]), None, self.y_tables, list_a + list_n) != y_bytes:
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
