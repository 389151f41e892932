"""Latents <-> rANS byte streams, in numpy: the one part of the codec that must agree bit for bit
between the encoder and every decoder, on any device and with either engine.

    z (hyper-latents) --EntropyBottleneck tables--> z bytes
    z_hat -> h_s (float64) -> scales -> table indexes, integer means
    y_hat - means --GaussianConditional tables--> y bytes

h_s runs here in float64 on the CPU whatever device runs the transforms: float32 convolutions
differ across devices and would desynchronise the decoder at rare table boundaries. Both engines
(numpy_model and the torch AecModel) code through this class, so they share the arithmetic too.
The tables are CompressAI's (EntropyBottleneck, GaussianConditional), coded with its rANS coder.
Arrays are (C, h, w), the order of the symbols in the streams.
"""
from __future__ import annotations

import numpy as np

from . import numpy_ops as ops
from .config import CONTEXT_TAPS, SYMBOL_LIMIT, ModelConfig
from .rans import RansDecoder, RansEncoder


class EntropyCoder:
    def __init__(self, tensors: dict[str, np.ndarray], config: ModelConfig):
        f64 = np.float64
        self.config = config
        self.h_s = [
            (ops.deconv_weights(tensors["h_s.0.weight"], f64), tensors["h_s.0.bias"].astype(f64)),
            (ops.deconv_weights(tensors["h_s.2.weight"], f64), tensors["h_s.2.bias"].astype(f64)),
            (ops.conv_weights(tensors["h_s.4.weight"], f64), tensors["h_s.4.bias"].astype(f64)),
        ]
        self.medians = tensors["entropy_bottleneck.quantiles"][:, 0, 1].astype(np.float32)
        self.z_tables = _tables(tensors, "entropy_bottleneck")
        self.y_tables = _tables(tensors, "gaussian_conditional")
        self.scale_bound = np.float64(tensors["gaussian_conditional.lower_bound_scale.bound"].reshape(-1)[0])
        self.scale_table = tensors["gaussian_conditional.scale_table"].astype(f64)
        self.context = CheckerboardContext(tensors, config.M) if config.context else None

    # ---- the entropy parameters -----------------------------------------------------------
    def hyper_parameters(self, z_hat: np.ndarray) -> np.ndarray:
        """z_hat (N, h, w) -> h_s's output (M or 2M, 4h, 4w), float64."""
        x = np.ascontiguousarray(z_hat.transpose(1, 2, 0), dtype=np.float64)
        for phases, bias in self.h_s[:2]:
            x = ops.relu(ops.deconv(x, phases, bias))
        wm, bias = self.h_s[2]
        return ops.conv(x, wm, bias, 3, 1).transpose(2, 0, 1)

    def parameters(self, z_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """z_hat (N, h, w) -> (table indexes (M, 4h, 4w) int32, integer means or None), from the
        hyperprior alone (with a context: the anchors' parameters)."""
        return self._indexes_means(self.hyper_parameters(z_hat))

    def _indexes_means(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(M or 2M, ...) parameters -> (table indexes int32, integer means float32 or None)."""
        M = self.config.M
        scales = np.maximum(params[:M], 0)
        # the index of a scale: how many table entries (all but the last) lie below it
        indexes = np.searchsorted(self.scale_table[:-1], np.maximum(scales, self.scale_bound), side="left")
        if not self.config.means:
            return indexes.astype(np.int32), None
        means = params[M:]
        # bounded means keep every coded symbol (y_hat - mean) within the escape coder's fast range
        if not np.all(np.abs(means) < SYMBOL_LIMIT):
            raise ValueError("entropy parameters out of range")
        return indexes.astype(np.int32), np.round(means).astype(np.float32)

    # ---- coding -----------------------------------------------------------------------------
    def encode(self, y_hat: np.ndarray, z: np.ndarray) -> tuple[bytes, bytes]:
        """k-sparse integer latents y_hat (M, h, w) and hyper-latents z (N, h/4, w/4), float32
        -> (y bytes, z bytes). With a checkerboard context the y stream holds the anchors first,
        then the other positions (whose parameters depend on the decoded anchors)."""
        if not (np.all(np.abs(y_hat) < SYMBOL_LIMIT) and np.all(np.abs(z) < SYMBOL_LIMIT - 1024)):
            raise ValueError("latents out of the coder's range")
        z_symbols = np.round(z.astype(np.float32) - self.medians[:, None, None]).astype(np.int32)
        z_bytes = _encode(z_symbols, self._z_indexes(z.shape), self.z_tables)
        params = self.hyper_parameters(self._z_hat(z_symbols))
        if self.context is None:
            indexes, means = self._indexes_means(params)
            return _encode(self._y_symbols(y_hat, means), indexes, self.y_tables), z_bytes
        anchors = checkerboard(*y_hat.shape[1:])
        ix_a, m_a = self._indexes_means(params[:, anchors])
        ix_n, m_n = self._indexes_means(self.context.correct(params, y_hat, anchors))
        symbols = np.concatenate([self._y_symbols(y_hat[:, anchors], m_a).ravel(),
                                  self._y_symbols(y_hat[:, ~anchors], m_n).ravel()])
        return _encode(symbols, np.concatenate([ix_a.ravel(), ix_n.ravel()]), self.y_tables), z_bytes

    def decode(self, y_bytes: bytes, z_bytes: bytes, z_shape: tuple[int, int]) -> np.ndarray:
        """-> y_hat (M, 4h, 4w) float32. Each stream must be canonical: re-encoding the decoded
        symbols must give back the same bytes. A damaged or forged payload fails this (cheaply,
        before the synthesis transform runs) instead of decoding into garbage pixels."""
        z_indexes = self._z_indexes((self.config.N, *z_shape))
        z_list = z_indexes.reshape(-1).tolist()  # each index list serves the decode and the re-encode check
        z_symbols = _decode(z_bytes, z_indexes, self.z_tables, z_list)
        # Range check first: garbage decodes to huge escape values, which the encoder's escape
        # loop cannot re-encode in bounded time. Real latents stay within a few hundred.
        if not np.all(np.abs(z_symbols) < SYMBOL_LIMIT):
            raise ValueError("hyper-latent stream decodes out of range")
        if _encode(z_symbols, z_indexes, self.z_tables, z_list) != z_bytes:
            raise ValueError("hyper-latent stream does not decode cleanly")
        params = self.hyper_parameters(self._z_hat(z_symbols))
        if self.context is None:
            indexes, means = self._indexes_means(params)
            y_list = indexes.reshape(-1).tolist()
            symbols = _decode(y_bytes, indexes, self.y_tables, y_list)
            y_hat = symbols.astype(np.float32) if means is None else symbols.astype(np.float32) + means
            _check_range(y_hat)
            if _encode(self._y_symbols(y_hat, means), indexes, self.y_tables, y_list) != y_bytes:
                raise ValueError("latent stream does not decode cleanly")
            return y_hat
        M, h, w = self.config.M, params.shape[1], params.shape[2]
        anchors = checkerboard(h, w)
        decoder = RansDecoder()
        decoder.set_stream(_guard(y_bytes, M * h * w))
        y_hat = np.zeros((M, h, w), np.float32)
        ix_a, m_a = self._indexes_means(params[:, anchors])
        list_a = ix_a.ravel().tolist()
        sym_a = np.asarray(decoder.decode_stream(list_a, *self.y_tables), np.int32)
        y_hat[:, anchors] = sym_a.reshape(ix_a.shape) + m_a
        _check_range(y_hat)
        ix_n, m_n = self._indexes_means(self.context.correct(params, y_hat, anchors))
        list_n = ix_n.ravel().tolist()
        sym_n = np.asarray(decoder.decode_stream(list_n, *self.y_tables), np.int32)
        y_hat[:, ~anchors] = sym_n.reshape(ix_n.shape) + m_n
        _check_range(y_hat)
        if _encode(np.concatenate([sym_a, sym_n]), None, self.y_tables, list_a + list_n) != y_bytes:
            raise ValueError("latent stream does not decode cleanly")
        return y_hat

    def _z_hat(self, z_symbols: np.ndarray) -> np.ndarray:
        return z_symbols.astype(np.float32) + self.medians[:, None, None]  # in float32, as CompressAI

    @staticmethod
    def _y_symbols(y_hat: np.ndarray, means: np.ndarray | None) -> np.ndarray:
        return np.round(y_hat if means is None else y_hat - means).astype(np.int32)

    @staticmethod
    def _z_indexes(shape) -> np.ndarray:
        n, h, w = shape  # one table per channel
        return np.broadcast_to(np.arange(n, dtype=np.int32)[:, None, None], (n, h, w))


def checkerboard(h: int, w: int) -> np.ndarray:
    """(h, w) bool: the anchors ((row + col) even), as layers.anchor_mask."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


class CheckerboardContext:
    """layers.CheckerboardContext in float64, evaluated at the non-anchor positions only."""

    TAPS = CONTEXT_TAPS
    CHUNK = 2048  # positions per block: the gathered taps of a block take ~38 MB for M = 192

    def __init__(self, tensors: dict[str, np.ndarray], M: int):
        f64 = np.float64
        taps = tensors["context.ctx_weight"].astype(f64)  # (2M, M, 12)
        if taps.shape != (2 * M, M, len(self.TAPS)):
            raise ValueError("context weights do not fit the model")
        self.ctx_w = np.ascontiguousarray(np.concatenate([taps[:, :, t] for t in range(len(self.TAPS))], axis=1))
        self.ctx_b = tensors["context.ctx_bias"].astype(f64)[:, None]
        self.ep = [(tensors[f"context.ep.{i}.weight"].astype(f64)[:, :, 0, 0], tensors[f"context.ep.{i}.bias"].astype(f64)[:, None])
                   for i in (0, 2, 4)]

    def correct(self, params: np.ndarray, y_hat: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """params (2M, h, w) from h_s, y_hat (M, h, w) whose anchors are decoded -> the non-anchors'
        parameters (2M, P), P in row-major order of the non-anchor positions."""
        ya = np.pad(np.where(anchors, y_hat, 0).astype(np.float64), ((0, 0), (2, 2), (2, 2)))
        iy, ix = np.nonzero(~anchors)
        base = params[:, iy, ix]
        out = np.empty_like(base)
        for a in range(0, iy.size, self.CHUNK):
            py, px = iy[a:a + self.CHUNK] + 2, ix[a:a + self.CHUNK] + 2
            cols = np.concatenate([ya[:, py + dy, px + dx] for dy, dx in self.TAPS], axis=0)
            x = np.concatenate([base[:, a:a + self.CHUNK], self.ctx_w @ cols + self.ctx_b], axis=0)
            for i, (wm, b) in enumerate(self.ep):
                x = wm @ x + b
                if i < 2:
                    ops.relu(x)
            out[:, a:a + self.CHUNK] = base[:, a:a + self.CHUNK] + x
        return out


def _check_range(y_hat: np.ndarray) -> None:
    if not np.all(np.abs(y_hat) < SYMBOL_LIMIT):
        raise ValueError("latent stream decodes out of range")


def _tables(tensors, prefix: str) -> tuple[list, list, list]:
    """An entropy model's (quantized CDFs, CDF lengths, offsets) as the rANS coder takes them."""
    return (tensors[f"{prefix}._quantized_cdf"].astype(np.int32).tolist(),
            tensors[f"{prefix}._cdf_length"].reshape(-1).astype(np.int32).tolist(),
            tensors[f"{prefix}._offset"].reshape(-1).astype(np.int32).tolist())


def _encode(symbols: np.ndarray, indexes: np.ndarray, tables, index_list=None) -> bytes:
    index_list = indexes.reshape(-1).tolist() if index_list is None else index_list
    return RansEncoder().encode_with_indexes(symbols.reshape(-1).tolist(), index_list, *tables)


def _decode(payload: bytes, indexes: np.ndarray, tables, index_list=None) -> np.ndarray:
    index_list = indexes.reshape(-1).tolist() if index_list is None else index_list
    values = RansDecoder().decode_with_indexes(_guard(payload, indexes.size), index_list, *tables)
    return np.asarray(values, dtype=np.int32).reshape(indexes.shape)


def _guard(payload: bytes, symbols: int) -> bytes:
    """Zero-pad a payload so the rANS decoder cannot read past its buffer.

    CompressAI's decoder does not bounds-check its input pointer: a hostile (checksum-valid)
    payload could make it read far past the end. Each symbol consumes at most 32 bits of the
    zero tail, and a bypass-coded escape at most 16 bytes per payload byte; padding by that
    much keeps every read inside memory we own. Valid streams decode identically.
    """
    return payload + bytes(4 * symbols + 16 * len(payload) + 64)
