"""Channel groups on the checkerboard (ELIC-style, He et al. 2022; Minnen & Singh 2020).

y's channels are split into uneven groups, small first (for M = 192: 16, 16, 32, 128). The stream
holds the anchors of group 1, 2, ..., G, then the other positions of group 1, 2, ..., G: 2G passes,
each parallel over the whole image. The anchors of group 1 are coded from the hyperprior alone, the
other positions of every group also from the checkerboard context over all anchors (as the
checkerboard family codes them); every group after the first is then corrected from the groups
before it (layers.ChannelContext): at an anchor from their anchors, at another position from all
their positions around it. Those corrections start at zero, so a checkerboard model grows into this
family with its coding unchanged, and learns the channels' dependencies on cached latents with its
transforms frozen, then with them.

The coder computes the corrections in float64 at the positions of each pass only (`GroupContext64`).
"""
from __future__ import annotations

import numpy as np

from .. import numpy_ops as ops
from ..rans import RansDecoder
from .base import check_range, encode_symbols, guard, rows_for, y_symbols
from .checkerboard import Checkerboard, CheckerboardCoder, anchors
from .mean_scale import MeanScale
from .registry import register

HIDDEN = 128  # the width of each group's correction network
# the 3x3 window's offsets that are anchors around an anchor ((dy + dx) even): the centre and corners
ANCHOR_TAPS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy + dx) % 2 == 0)
ALL_TAPS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def group_bounds(M: int) -> tuple[tuple[int, int], ...]:
    """The channel groups [start, end): M/12, M/12, M/6 and the rest (16, 16, 32, 128 for M = 192)."""
    sizes = [max(1, M // 12), max(1, M // 12), max(1, M // 6)]
    sizes.append(M - sum(sizes))
    if sizes[-1] < 1:
        raise ValueError(f"M = {M} is too small for channel groups")
    ends = np.cumsum(sizes).tolist()
    return tuple(zip([0] + ends[:-1], ends))


class GroupContext64:
    """layers.GroupContext in float64, at the positions of one pass."""

    CHUNK = 4096  # positions per block

    def __init__(self, tensors: dict[str, np.ndarray], prefix: str, taps: tuple[tuple[int, int], ...],
                 previous: int, own: int, hidden: int = HIDDEN):
        f64 = np.float64
        w = tensors[f"{prefix}.prev.weight"].astype(f64)
        if w.shape != (hidden, previous, 3, 3) or tensors[f"{prefix}.own.weight"].shape != (hidden, own, 1, 1):
            raise ValueError("channel context weights do not fit the model")
        self.taps = taps
        self.w_prev = np.ascontiguousarray(np.concatenate([w[:, :, dy + 1, dx + 1] for dy, dx in taps], axis=1))
        self.w_own = tensors[f"{prefix}.own.weight"].astype(f64)[:, :, 0, 0]
        self.b0 = tensors[f"{prefix}.prev.bias"].astype(f64)[:, None]
        self.layers = [(tensors[f"{prefix}.out.{i}.weight"].astype(f64)[:, :, 0, 0],
                        tensors[f"{prefix}.out.{i}.bias"].astype(f64)[:, None]) for i in (1, 3)]

    def __call__(self, previous: np.ndarray, own: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        """previous: the earlier groups' decoded latents (C, h + 2, w + 2), zero-padded by one (and
        zero where not decoded); own (2g, P): the group's parameters at the P positions (iy, ix)
        -> their correction (2g, P)."""
        out = np.empty_like(own)
        for a in range(0, iy.size, self.CHUNK):
            py, px = iy[a:a + self.CHUNK] + 1, ix[a:a + self.CHUNK] + 1
            cols = np.concatenate([previous[:, py + dy, px + dx] for dy, dx in self.taps], axis=0)
            x = self.w_prev @ cols + self.w_own @ own[:, a:a + self.CHUNK] + self.b0
            for wm, b in self.layers:
                ops.relu(x)
                x = wm @ x + b
            out[:, a:a + self.CHUNK] = x
        return out


class ChannelCheckerboardCoder(CheckerboardCoder):
    def __init__(self, tensors, config):
        super().__init__(tensors, config)
        self.bounds = group_bounds(config.M)
        # in layers.ChannelContext's order: every later group's anchor network, then its others'
        passes = [(g, anchor) for anchor in (True, False) for g in range(1, len(self.bounds))]
        self.nets = {(g, anchor): GroupContext64(tensors, f"channel_context.nets.{i}",
                                                 ANCHOR_TAPS if anchor else ALL_TAPS, self.bounds[g][0],
                                                 2 * (self.bounds[g][1] - self.bounds[g][0]))
                     for i, (g, anchor) in enumerate(passes)}

    def _passes(self, params: np.ndarray, y_hat: np.ndarray, code_pass) -> None:
        """Walk the 2G passes in stream order. For each: its parameters from h_s's output
        (2M, h, w) and the latents decoded so far in y_hat (M, h, w), then
        code_pass(indexes, means, channels, positions), which codes or decodes that pass (a
        decoder fills y_hat there)."""
        M, (h, w) = self.M, params.shape[1:]
        is_anchor = anchors(h, w)
        for anchor in (True, False):
            where = is_anchor if anchor else ~is_anchor
            iy, ix = np.nonzero(where)
            base = params[:, where] if anchor else self.context.correct(params, y_hat, is_anchor)
            for g, (start, end) in enumerate(self.bounds):
                own = np.concatenate([base[start:end], base[M + start:M + end]])
                if g:
                    seen = y_hat[:start] * is_anchor if anchor else y_hat[:start]
                    own = own + self.nets[g, anchor](np.pad(seen.astype(np.float64), ((0, 0), (1, 1), (1, 1))),
                                                     own, iy, ix)
                indexes, means = self.indexes_means(own, end - start)
                code_pass(indexes, means, slice(start, end), where)

    def encode_y(self, y_hat: np.ndarray, params: np.ndarray) -> bytes:
        symbols, indexes = [], []

        def code_pass(ix, means, channels, where):
            symbols.append(y_symbols(y_hat[channels][:, where], means).ravel())
            indexes.append(ix.ravel())

        self._passes(params, y_hat, code_pass)
        return encode_symbols(np.concatenate(symbols), np.concatenate(indexes), self.y_tables)

    def decode_y(self, y_bytes: bytes, params: np.ndarray) -> np.ndarray:
        M, h, w = self.M, params.shape[1], params.shape[2]
        decoder = RansDecoder()
        decoder.set_stream(guard(y_bytes, M * h * w))
        y_hat = np.zeros((M, h, w), np.float32)
        symbols, indexes, index_list = [], [], []

        def code_pass(ix, means, channels, where):
            listed = ix.ravel().tolist()
            sym = np.asarray(decoder.decode_stream(listed, *rows_for(self.y_tables, ix)), np.int32)
            block = y_hat[channels]  # a view: the pass is decoded in place
            block[:, where] = sym.reshape(ix.shape) + means
            check_range(block)
            symbols.append(sym)
            indexes.append(ix.ravel())
            index_list.extend(listed)

        self._passes(params, y_hat, code_pass)
        if encode_symbols(np.concatenate(symbols), np.concatenate(indexes), self.y_tables, index_list) != y_bytes:
            raise ValueError("latent stream does not decode cleanly")
        return y_hat


@register
class ChannelCheckerboard(Checkerboard):
    name = "channel-checkerboard"
    tag = "ccb"
    legacy_flags = None
    parent = "checkerboard"
    modules = ("context", "channel_context")
    coder = ChannelCheckerboardCoder
    integer_networks = False  # its channel groups' networks stay float64 (not shipped)

    def build(self, model) -> None:
        from ..layers import ChannelContext

        super().build(model)
        model.channel_context = ChannelContext(model.config.M, group_bounds(model.config.M), HIDDEN, anchors)

    def y_parameters(self, model, params, y_hat):
        """The checkerboard's parameters, then each group corrected from the groups before it."""
        corrected = model.channel_context(model.context(params, y_hat), y_hat)
        return MeanScale.y_parameters(self, model, corrected, y_hat)

    def permute_latent_channels(self, model, order) -> None:
        super().permute_latent_channels(model, order)
        if any(net.out[-1].weight.any() or net.out[-1].bias.any() for net in model.channel_context.nets):
            raise ValueError("a trained channel context fixes the channels' order")

    def arrange(self, model, crops) -> None:
        """Order y's channels by their rate on these crops, most bits first: the small first groups
        then hold the channels that say most about the others (ELIC's energy compaction, which a
        model trained without groups does not have). The function is unchanged."""
        import torch

        Q = model.config.qualities
        with torch.no_grad():
            quality = torch.arange(crops.shape[0]) % Q + 1
            y_likelihoods = model(crops, quality, model.config.M, synthesis=False)["likelihoods"]["y"]
            bits = -torch.log2(y_likelihoods).sum((0, 2, 3))
        model.permute_latent_channels(torch.argsort(bits, descending=True, stable=True))

    def grow(self, state: dict, model) -> dict:
        """A checkerboard model -> channel groups: the new corrections start at zero, so coding is
        unchanged (but for the order of the symbols in the stream)."""
        return {**{k: v for k, v in model.state_dict().items() if k.startswith("channel_context.")}, **state}
