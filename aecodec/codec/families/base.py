"""What every family shares: the hyperprior's z stream, h_s, the Gaussian y stream in
one pass, and the training side's Gaussian likelihood (the rate).

The coder side is the one part of the codec that must agree bit for bit between the encoder and
every decoder, on any device and with any engine:

    z (hyper-latents) --EntropyBottleneck tables--> z bytes
    z_hat -> h_s (integer or float64) -> scales -> table indexes (and integer means)
    y_hat - means --GaussianConditional tables--> y bytes

h_s runs on the CPU whatever device runs the transforms, as an integer network where the model's
config has its exponents (integer_net.py: exact in any summation order, so on every machine), else
in float64 (the first models): float32 convolutions differ across devices and would desynchronise
the decoder at table boundaries, and even float64's last bits vary with the BLAS's kernel. The tables are
CompressAI's (EntropyBottleneck, GaussianConditional), coded with its rANS coder. Arrays are
(C, h, w), the order of the symbols in the streams.
"""
from __future__ import annotations

import numpy as np

from ..config import SYMBOL_LIMIT
from ..integer_net import IntegerProgram
from ..numpy_net import Program
from ..rans import RansDecoder, RansEncoder


class EntropyCoder:
    """Latents <-> rANS byte streams for a model's weights (numpy tensors) and config. This base
    codes y in one pass, every symbol from the hyperprior's parameters alone."""

    CHUNK = 1 << 16  # latents per block of indexes_means: its float64 temporaries stay in the cache

    def __init__(self, tensors: dict[str, np.ndarray], config):
        self.N, self.M = config.N, config.M
        self.means = not config.family_impl.scales_only
        exps = config.integer_exponents("h_s")
        self.h_s = (Program(config.layers()["h_s"], tensors, "h_s", np.float64) if exps is None
                    else IntegerProgram(config.layers()["h_s"], tensors, "h_s", exps, config.integer_bits_or_default))
        self.medians = tensors["entropy_bottleneck.quantiles"][:, 0, 1].astype(np.float32)
        self.z_tables = tables(tensors, "entropy_bottleneck")
        self.y_tables = tables(tensors, "gaussian_conditional")
        self.scale_bound = np.float64(tensors["gaussian_conditional.lower_bound_scale.bound"].reshape(-1)[0])
        self.scale_index = ScaleIndex(tensors["gaussian_conditional.scale_table"])

    # ---- the entropy parameters -----------------------------------------------------------
    def hyper_parameters(self, z_hat: np.ndarray) -> np.ndarray:
        """z_hat (N, h, w) -> h_s's output (M or 2M, 4h, 4w), float64."""
        return self.h_s(np.ascontiguousarray(z_hat.transpose(1, 2, 0), dtype=np.float64)).transpose(2, 0, 1)

    def parameters(self, z_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """z_hat (N, h, w) -> (table indexes (M, 4h, 4w) int32, integer means or None), from the
        hyperprior alone."""
        return self.indexes_means(self.hyper_parameters(z_hat))

    def indexes_means(self, params: np.ndarray, M: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(M or 2M, ...) parameters -> (table indexes int32, integer means float32 or None); M: the
        number of channels they are for when not all of y's (a channel group). Block by block: a
        large image's whole arrays (~70 MB each at 24 MP) made this 3-4x slower per latent."""
        M = self.M if M is None else M
        flat = params.reshape(params.shape[0], -1)
        n = flat.shape[1]
        indexes = np.empty((M, n), np.int32)
        means = np.empty((M, n), np.float32) if self.means else None
        # scales clipped at 0, then at the (positive) bound: one maximum does both, NaN stays NaN
        floor = max(float(self.scale_bound), 0.0)
        step = max(1, self.CHUNK // M)
        for a in range(0, n, step):
            block = flat[:, a:a + step]
            indexes[:, a:a + step] = self.scale_index(np.maximum(block[:M], floor))
            if means is not None:
                # bounded means keep every coded symbol (y_hat - mean) within the escape coder's fast range
                if not np.all(np.abs(block[M:]) < SYMBOL_LIMIT):
                    raise ValueError("entropy parameters out of range")
                np.round(block[M:], out=means[:, a:a + step])
        shape = (M, *params.shape[1:])
        return indexes.reshape(shape), None if means is None else means.reshape(shape)

    # ---- coding -----------------------------------------------------------------------------
    def encode(self, y_hat: np.ndarray, z: np.ndarray) -> tuple[bytes, bytes]:
        """k-sparse integer latents y_hat (M, h, w) and hyper-latents z (N, h/4, w/4), float32
        -> (y bytes, z bytes)."""
        if not (np.all(np.abs(y_hat) < SYMBOL_LIMIT) and np.all(np.abs(z) < SYMBOL_LIMIT - 1024)):
            raise ValueError("latents out of the coder's range")
        z_symbols = np.round(z.astype(np.float32) - self.medians[:, None, None]).astype(np.int32)
        z_bytes = encode_symbols(z_symbols, self.z_indexes(z.shape), self.z_tables)
        return self.encode_y(y_hat, self.hyper_parameters(self.z_hat(z_symbols))), z_bytes

    def decode(self, y_bytes: bytes, z_bytes: bytes, z_shape: tuple[int, int]) -> np.ndarray:
        """-> y_hat (M, 4h, 4w) float32. Each stream must be canonical: re-encoding the decoded
        symbols must give back the same bytes. A damaged or forged payload fails this (cheaply,
        before the synthesis transform runs) instead of decoding into garbage pixels."""
        z_indexes = self.z_indexes((self.N, *z_shape))
        z_list = z_indexes.reshape(-1).tolist()  # each index list serves the decode and the re-encode check
        z_symbols = decode_symbols(z_bytes, z_indexes, self.z_tables, z_list)
        # Range check first: garbage decodes to huge escape values, which the encoder's escape
        # loop cannot re-encode in bounded time. Real latents stay within a few hundred.
        if not np.all(np.abs(z_symbols) < SYMBOL_LIMIT):
            raise ValueError("hyper-latent stream decodes out of range")
        if encode_symbols(z_symbols, z_indexes, self.z_tables, z_list) != z_bytes:
            raise ValueError("hyper-latent stream does not decode cleanly")
        return self.decode_y(y_bytes, self.hyper_parameters(self.z_hat(z_symbols)))

    def encode_y(self, y_hat: np.ndarray, params: np.ndarray) -> bytes:
        """y's stream given h_s's output; families with a context override this and decode_y."""
        indexes, means = self.indexes_means(params)
        return encode_symbols(y_symbols(y_hat, means), indexes, self.y_tables)

    def decode_y(self, y_bytes: bytes, params: np.ndarray) -> np.ndarray:
        indexes, means = self.indexes_means(params)
        y_list = indexes.reshape(-1).tolist()
        symbols = decode_symbols(y_bytes, indexes, self.y_tables, y_list)
        y_hat = symbols.astype(np.float32) if means is None else symbols.astype(np.float32) + means
        check_range(y_hat)
        if encode_symbols(y_symbols(y_hat, means), indexes, self.y_tables, y_list) != y_bytes:
            raise ValueError("latent stream does not decode cleanly")
        return y_hat

    def z_hat(self, z_symbols: np.ndarray) -> np.ndarray:
        return z_symbols.astype(np.float32) + self.medians[:, None, None]  # in float32, as CompressAI

    @staticmethod
    def z_indexes(shape) -> np.ndarray:
        n, h, w = shape  # one table per channel
        return np.broadcast_to(np.arange(n, dtype=np.int32)[:, None, None], (n, h, w))


class ScaleIndex:
    """The index of each scale's CDF table: how many of the scale table's entries (all but the
    last) lie below it, i.e. np.searchsorted(table[:-1], scales, side="left"), the entry the coder
    rounds a scale up to. Where the table is log-spaced (CompressAI's are) the index comes from
    the scale's logarithm, ~5x faster than the binary search over ~150k scales (~4 ms per pass of
    a Kodak image); each such index is then checked against its neighbouring entries, and if any
    fails (a scale within rounding of an entry, a NaN) the whole pass takes the search: the same
    indexes either way, as the bit-exact coder needs."""

    def __init__(self, table: np.ndarray):
        self.entries = np.ascontiguousarray(np.asarray(table, np.float64).reshape(-1)[:-1])
        n = self.entries.size
        steps = np.diff(np.log(self.entries)) if n >= 2 and self.entries[0] > 0 else np.zeros(0)
        self.log_spaced = steps.size > 0 and bool(np.all(steps > 0)) and float(np.ptp(steps)) < 1e-3 * float(steps.mean())
        if self.log_spaced:
            self.origin = float(np.log(self.entries[0]))
            self.step = float(np.log(self.entries[-1]) - self.origin) / (n - 1)

    def __call__(self, scales: np.ndarray) -> np.ndarray:
        entries, n = self.entries, self.entries.size
        if not self.log_spaced:
            return np.searchsorted(entries, scales, side="left")
        with np.errstate(invalid="ignore", divide="ignore"):
            guess = np.ceil((np.log(scales) - self.origin) / self.step)
            index = np.clip(guess, 0, n).astype(np.intp)  # clipped first: +-inf become 0 or n
        np.clip(index, 0, n, out=index)  # a NaN casts to anything: in range here, the check catches it
        index -= (index > 0) & (entries[np.maximum(index - 1, 0)] >= scales)
        index += (index < n) & (entries[np.minimum(index, n - 1)] < scales)
        exact = (((index == 0) | (entries[np.maximum(index - 1, 0)] < scales))
                 & ((index == n) | (entries[np.minimum(index, n - 1)] >= scales)))
        return index if exact.all() else np.searchsorted(entries, scales, side="left")


class Family:
    """A family of entropy models. Subclasses set the class attributes, and override the methods
    whose default does not fit (the training side's run only where torch is loaded)."""

    name = ""                  # stored in the model's config
    tag = ""                   # in default model names: aec-{tag}-{N}-{M}
    legacy_flags: dict | None = None  # the config flags that named it before families had names
    parent: str | None = None  # the family a model of this one grows from (`grow`)
    scales_only = True         # h_s gives one parameter per channel (a scale, after a ReLU), else two
    modules: tuple[str, ...] = ()  # the model's modules this family adds (their state-dict prefixes)
    uses_context = False       # whether y's parameters depend on already decoded latents
    integer_networks = True    # whether its entropy networks can be integer networks (integer_net.py)
    coder: type[EntropyCoder] = EntropyCoder

    def hyper_outputs(self, M: int) -> int:
        """h_s's output channels: the entropy parameters of each latent channel."""
        return M if self.scales_only else 2 * M

    # ---- training side (torch) ------------------------------------------------------------
    def build(self, model) -> None:
        """Add this family's modules to an AecModel being built (named as in `modules`)."""

    def y_parameters(self, model, params, y_hat):
        """h_s's output (B, hyper_outputs, h, w) and the quantized latents (read by a context)
        -> (scales, means or None), as the coder computes them (up to float64 and rounding)."""
        if self.scales_only:
            return params, None
        import torch

        scales, means = params.chunk(2, dim=1)
        return torch.relu(scales), means

    def permute_latent_channels(self, model, order) -> None:
        """Renumber y's channels in this family's own modules (model.permute_latent_channels does
        the rest): order is a torch index, new channel i = old channel order[i]."""

    def arrange(self, model, crops) -> None:
        """A model that has just grown into this family, before it trains: a last step that needs
        images (crops: a (B, 3, H, W) batch of training crops). Nothing by default."""

    def grow(self, state: dict, model) -> dict:
        """The state dict of a `parent` model -> one for `model` (of this family) that codes
        exactly as the parent did; `model` is a fresh instance, for the new parameters' init."""
        raise NotImplementedError(f"{self.name} has no parent to grow from")


def likelihoods(gaussian_conditional, y, scales, means=None):
    """The Gaussian likelihood of each latent's quantization bin (the rate is -log2 of it): the
    density N(mean, scale) convolved with a unit box, evaluated at y, with CompressAI's scale and
    likelihood lower bounds (their gradients included). y is continuous in training (noise) and
    in refinement (soft rounding), an integer when coding."""
    import torch

    gc = gaussian_conditional
    values = (y - means if means is not None else y).abs()
    scales = gc.lower_bound_scale(scales)
    # the complementary error function keeps precision in the tails
    upper = 0.5 * torch.erfc(-(2 ** -0.5) * ((0.5 - values) / scales))
    lower = 0.5 * torch.erfc(-(2 ** -0.5) * ((-0.5 - values) / scales))
    return gc.likelihood_lower_bound(upper - lower)


# ---- stream helpers -------------------------------------------------------------------------
def y_symbols(y_hat: np.ndarray, means: np.ndarray | None) -> np.ndarray:
    return np.round(y_hat if means is None else y_hat - means).astype(np.int32)


def check_range(y_hat: np.ndarray) -> None:
    if not np.all(np.abs(y_hat) < SYMBOL_LIMIT):
        raise ValueError("latent stream decodes out of range")


def tables(tensors, prefix: str) -> tuple[list, list, list]:
    """An entropy model's (quantized CDFs, CDF lengths, offsets) as the rANS coder takes them.
    Each CDF is cut to its length (the coder reads no further): the rows are stored padded to the
    longest, and every coder call converts the lists anew (~1.8 ms for y's padded tables)."""
    lengths = tensors[f"{prefix}._cdf_length"].reshape(-1).astype(np.int32).tolist()
    cdfs = tensors[f"{prefix}._quantized_cdf"].astype(np.int32)
    return ([row[:n].tolist() for row, n in zip(cdfs, lengths)], lengths,
            tensors[f"{prefix}._offset"].reshape(-1).astype(np.int32).tolist())


def rows_for(tables, indexes: np.ndarray) -> tuple[list, list, list]:
    """The tables' first rows, up to the largest of `indexes`: all a coder call needs. The rANS
    coder converts every row it is given on every call (~0.14 us per entry), and the long rows of
    the largest scales are rarely used: kodim23 at q4 reaches row 187 of 256, 14k of the 105k
    entries (its entropy decode, three such calls, ~3.7 ms faster: docs/performance.md)."""
    if indexes.size == 0:
        return tables
    top = int(indexes.max()) + 1
    return tuple(t[:top] for t in tables)


def encode_symbols(symbols: np.ndarray | list, indexes: np.ndarray, tables, index_list=None) -> bytes:
    """symbols: an array, or a list as the decoder gave it (the re-encode check: no conversion);
    index_list: indexes as a list, when the caller has it already."""
    index_list = indexes.reshape(-1).tolist() if index_list is None else index_list
    symbols = symbols if isinstance(symbols, list) else symbols.reshape(-1).tolist()
    return RansEncoder().encode_with_indexes(symbols, index_list, *rows_for(tables, indexes))


def decode_symbols(payload: bytes, indexes: np.ndarray, tables, index_list=None) -> np.ndarray:
    index_list = indexes.reshape(-1).tolist() if index_list is None else index_list
    values = RansDecoder().decode_with_indexes(guard(payload, indexes.size), index_list, *rows_for(tables, indexes))
    return np.asarray(values, dtype=np.int32).reshape(indexes.shape)


def guard(payload: bytes, symbols: int) -> bytes:
    """Zero-pad a payload so the rANS decoder cannot read past its buffer.

    CompressAI's decoder does not bounds-check its input pointer: a hostile (checksum-valid)
    payload could make it read far past the end. Each symbol consumes at most 32 bits of the
    zero tail, and a bypass-coded escape at most 16 bytes per payload byte; padding by that
    much keeps every read inside memory we own. Valid streams decode identically.
    """
    return payload + bytes(4 * symbols + 16 * len(payload) + 64)
