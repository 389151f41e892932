"""Image <-> bitstream, the whole data flow, in one place:

    pixels -> pad -> g_a -> gain -> gate_quantize(k) -> h_a -> entropy coders -> bitstream
    bitstream -> entropy decoders -> inverse gain -> g_s -> crop -> pixels

An engine (engines/) runs the steps: on the CPU the numpy engine (no torch import, so a CLI call
starts in a fraction of a second), on a GPU the torch engine, which also refines latents (effort >
0) on any device. Entropy coding, with the scale network in float64, always runs on the CPU
through the model's family's coder (families/), so a file encoded by any engine on any device
decodes on any other. Training's validation and the export's choice of k code through here too.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..errors import AecError
from . import bitstream, engines
from .config import MAX_EFFORT, PAD
from .weights import DIGEST_BYTES
from .zoo import check_known, other_weights_message

TINY_SIDE = 16           # an image with a side shorter than this is mostly border for g_s ...
TINY_PIXELS = 1 << 14    # ... and, this small, costs little to code a few more times
COMPENSATION_PASSES = 4  # passes after the first (_Encoder._single_pass)


def _check_quality(quality) -> int | float:
    if isinstance(quality, bool) or not isinstance(quality, (int, float, np.integer, np.floating)) \
            or not bitstream.QUALITY_MIN <= quality <= bitstream.QUALITY_MAX:
        raise AecError(f"quality must be a number in {bitstream.QUALITY_MIN}..{bitstream.QUALITY_MAX}, "
                       f"got {quality!r}")
    return bitstream.snap_quality(quality)


def default_k(model, quality: int | float) -> int:
    """The model's (or engine's) k for a quality; between two levels, the higher level's."""
    return model.default_k[math.ceil(quality) - 1]


class _Encoder:
    """One image's analysis transform, run once; then any number of (quality, k) codings of it,
    which cost only the gain, gate, h_a and entropy coding (the target searches probe many)."""

    def __init__(self, rgb: np.ndarray, mode: str, engine):
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise AecError("encode expects an 8-bit RGB array of shape (H, W, 3)")
        self.h, self.w = rgb.shape[:2]
        bitstream._check_ranges(self.w, self.h, 1, 1, mode)
        self.rgb, self.mode, self.engine = rgb, mode, engine
        self.state = engine.analyze(rgb)
        self.y_hat = None

    def code(self, quality: int | float, k: int | None, effort: int = 0, on_check=None) -> bytes:
        engine, M = self.engine, self.engine.channels
        k = default_k(engine, quality) if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= M:
            raise AecError(f"k must be an integer in 1..{M} for model {engine.name}, got {k}")
        if effort:
            self.y_hat, z = self._refined(quality, k, effort, on_check)
        else:
            self.y_hat, z = self._single_pass(quality, k)
        y_bytes, z_bytes = self._entropy_code(self.y_hat, z)
        header = bitstream.Header(engine.name, engine.digest[:DIGEST_BYTES], self.w, self.h, self.mode,
                                  quality, k, len(z_bytes), len(y_bytes))
        return bitstream.pack(header, z_bytes, y_bytes)

    def _single_pass(self, quality, k: int):
        """Effort 0's latents. A tiny image is mostly border: g_s's zero padding biases the few
        pixels it has (a 1x1 red came back 23 levels off). For those, a few more passes code an
        input moved against what the decoder showed, and the latents that decode closest win."""
        y_hat, z = self.engine.quantize(self.state, quality, k)
        if min(self.h, self.w) >= TINY_SIDE or self.h * self.w > TINY_PIXELS:
            return y_hat, z
        target = self.rgb.astype(np.float64)
        shown = self.engine.pixels(y_hat, quality, self.h, self.w)
        best, best_mse, moved = (y_hat, z), self._mse(shown), target.copy()
        for _ in range(COMPENSATION_PASSES):
            moved -= shown - target
            y_hat, z = self.engine.quantize(self.engine.analyze(np.clip(np.round(moved), 0, 255).astype(np.uint8)),
                                            quality, k)
            shown = self.engine.pixels(y_hat, quality, self.h, self.w)
            mse = self._mse(shown)
            if mse < best_mse:
                best, best_mse = (y_hat, z), mse
        return best

    def _entropy_code(self, y_hat, z) -> tuple[bytes, bytes]:
        try:
            return self.engine.entropy_code(y_hat, z)
        except ValueError as e:
            raise AecError(f"cannot encode this image: {e}") from None

    def measure(self, y_hat, z, quality) -> tuple[int, float]:
        """(file payload bytes, decoded MSE in 8-bit levels squared) of coding these latents."""
        y_bytes, z_bytes = self._entropy_code(y_hat, z)
        self.y_hat = y_hat
        return len(y_bytes) + len(z_bytes), self._decoded_mse(quality)

    def _refined(self, quality, k: int, effort: int, on_check=None):
        from .refine import MAX_PIXELS, rd_lambda

        lam, pixels = rd_lambda(quality), self.h * self.w
        if pixels > MAX_PIXELS:
            raise AecError(f"effort > 0 works on images up to {MAX_PIXELS / 1e6:.1f} megapixels "
                           f"(this one has {pixels / 1e6:.1f}); use effort 0")

        def cost(y_hat, z) -> float:
            nbytes, mse = self.measure(y_hat, z, quality)
            return nbytes * 8 / pixels + lam * mse

        return self.engine.refine(self.state, quality, k, effort, cost, on_check)

    def _decoded_mse(self, quality) -> float:
        """MSE (in 8-bit levels squared) of what the decoder shows for self.y_hat on this device."""
        return self._mse(self.engine.pixels(self.y_hat, quality, self.h, self.w))

    def _mse(self, pixels: np.ndarray) -> float:
        """MSE of decoded (H, W, 3) pixels as the file's colour mode shows them, against the input."""
        pixels = _in_mode(pixels, self.mode)
        if self.mode == "L":
            pixels = pixels[:, :, None]  # against the (H, W, 3) gray input
        return float(np.mean((pixels.astype(np.float64) - self.rgb) ** 2))

    def psnr(self, quality: int | float) -> float:
        """PSNR of what the decoder will show for the last coding (same latents, this device)."""
        mse = self._decoded_mse(quality)
        return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def encode(rgb: np.ndarray, mode: str, quality: int | float, k: int | None = None,
           device=None, effort: int = 0, progress=None, model=None, engine=None, job_pixels: int = 0) -> bytes:
    """Encode an 8-bit (H, W, 3) array. mode is the colour mode recorded for the decoder.
    quality: 1..8; values between the levels (in steps of 1/256) interpolate the gains.
    effort: 0 (one pass) .. MAX_EFFORT: refine the latents for this image (codec/refine.py);
    progress(step, steps) is called as the refinement goes. model: a shipped model's name
    (default: the default model) or weights.Weights; engine: one to use instead of the device's
    (benchmarks and tests compare the engines); job_pixels: the pixels of the whole job this image
    is part of (a batch), for the choice of the CPU engine."""
    quality, effort = _check_quality(quality), _check_effort(effort)
    engine = engine or engines.for_device(device, effort, model, max(rgb.shape[0] * rgb.shape[1], job_pixels))
    with engine.session():
        return _Encoder(rgb, mode, engine).code(quality, k, effort, _on_check(progress))


def _check_effort(effort) -> int:
    if isinstance(effort, bool) or not isinstance(effort, (int, np.integer)) or not 0 <= effort <= MAX_EFFORT:
        raise AecError(f"effort must be an integer 0..{MAX_EFFORT}, got {effort!r}")
    return int(effort)


def _on_check(progress):
    """refine's on_check(step, steps, best) for a progress(step, steps) callback."""
    return None if progress is None else (lambda step, steps, best: progress(step, steps))


def encode_to_target(rgb: np.ndarray, mode: str, *, max_bytes: int | None = None,
                     min_psnr: float | None = None, k: int | None = None,
                     device=None, effort: int = 0, progress=None, model=None,
                     job_pixels: int = 0) -> tuple[bytes, int | float]:
    """-> (file, quality): the highest quality whose file fits in max_bytes (never over), or the
    lowest quality whose decoded PSNR reaches min_psnr. Bisection over the 1/256 quality grid
    (~11 codings; the analysis transform runs once).

    effort > 0: the single-pass search, then the latents refined at the quality found and at up to
    two qualities moved by what refinement changed (its extra bytes for a size, its extra dB for a
    PSNR; then half of it); the result is the best coding that meets the target (highest PSNR
    within the size; smallest file that reaches the PSNR), so never worse than effort 0."""
    if (max_bytes is None) == (min_psnr is None):
        raise AecError("give exactly one target: a size or a PSNR")
    effort, on_check = _check_effort(effort), _on_check(progress)
    engine = engines.for_device(device, effort, model, max(rgb.shape[0] * rgb.shape[1], job_pixels))
    with engine.session():
        enc = _Encoder(rgb, mode, engine)
        data, q = _search(enc, k, max_bytes, min_psnr)
        if not effort:
            return data, q
        return _refine_for_target(enc, k, effort, on_check, data, q, max_bytes, min_psnr)


def _refine_for_target(enc: _Encoder, k, effort: int, on_check, data: bytes, q, max_bytes, min_psnr):
    """encode_to_target's effort > 0 part, from the single-pass result (data, q)."""
    enc.code(q, k)  # the search's last probe may have been another quality: recode for its PSNR
    candidates = [(data, q, enc.psnr(q))]
    refined = enc.code(q, k, effort, on_check)
    candidates.append((refined, q, enc.psnr(q)))
    meets = (lambda c: len(c[0]) <= max_bytes) if max_bytes is not None else (lambda c: c[2] >= min_psnr)
    tried = {q}
    for f in (1.0, 0.5):  # move the target by what refinement changed, then by half of it
        try:
            if max_bytes is not None:  # refined files can be a little larger: aim lower by as much
                _, q2 = _search(enc, k, max(1, int(max_bytes * (max_bytes / len(candidates[1][0])) ** f)), None)
            else:                      # and decode higher: aim lower by the dB gained
                _, q2 = _search(enc, k, None, min_psnr - f * max(0.0, candidates[1][2] - candidates[0][2]))
        except AecError:  # no quality meets the moved target
            continue
        if q2 in tried:
            continue
        tried.add(q2)
        candidates.append((enc.code(q2, k, effort, on_check), q2, enc.psnr(q2)))
        if meets(candidates[-1]):
            break
    if max_bytes is not None:
        return max(filter(meets, candidates), key=lambda c: c[2])[:2]
    return min(filter(meets, candidates), key=lambda c: len(c[0]))[:2]


def _search(enc: _Encoder, k: int | None, max_bytes: int | None, min_psnr: float | None):
    """The single-pass bisection of encode_to_target -> (file, quality)."""
    scale = bitstream.QUALITY_SCALE
    lo, hi = bitstream.QUALITY_MIN * scale, bitstream.QUALITY_MAX * scale

    def probe(i):
        q = bitstream.snap_quality(i / scale)
        data = enc.code(q, k)
        ok = len(data) <= max_bytes if max_bytes is not None else enc.psnr(q) >= min_psnr
        return ok, data, q

    # `good` meets the target and `bad` does not: the smallest quality for a size (files grow
    # with quality), the largest for a PSNR; bisect until they are neighbours on the grid
    good, bad = (lo, hi) if max_bytes is not None else (hi, lo)
    ok, best, q_best = probe(good)
    if not ok:
        if max_bytes is not None:
            raise AecError(f"cannot fit in {max_bytes} bytes: the smallest file (quality 1) is "
                           f"{len(best)} bytes")
        raise AecError(f"cannot reach {min_psnr:g} dB: the best quality (8) gives {enc.psnr(q_best):.2f} dB")
    ok, data, q = probe(bad)
    if ok:
        return data, q
    while abs(good - bad) > 1:
        mid = (good + bad) // 2
        ok, data, q = probe(mid)
        if ok:
            good, best, q_best = mid, data, q
        else:
            bad = mid
    return best, q_best


def engine_to_decode(header: bitstream.Header, device=None, engine=None, job_pixels: int = 0):
    """The engine for decoding this file on `device`, with the model that wrote it (or `engine`,
    which must hold that model); job_pixels: those of the whole job the file is part of (a batch)."""
    if engine is None:
        check_known(header.model)
        engine = engines.for_device(device, model=header.model, pixels=max(header.width * header.height, job_pixels),
                                    decoding=True)
    elif engine.name != header.model:
        raise AecError(f"file was made by model {header.model!r}, not {engine.name!r}")
    if engine.digest[:DIGEST_BYTES] != header.digest:
        raise AecError(other_weights_message(header.model, header.digest, engine.digest[:DIGEST_BYTES]))
    if header.k > engine.channels:
        raise AecError(f"corrupt .aec header (k {header.k} > {engine.channels} channels)")
    return engine


class Latents(NamedTuple):
    """A file's entropy-decoded latents: the first of decoding's two stages (see `decode`)."""
    header: bitstream.Header
    engine: object
    y_hat: object


def decode(data: bytes, device=None, engine=None, job_pixels: int = 0) -> tuple[np.ndarray, bitstream.Header]:
    """Decode an .aec file to an 8-bit array: (H, W, 3) for RGB, (H, W) for L.
    engine: one to use instead of the device's (it must hold the file's model); job_pixels: those
    of the whole job the file is part of (a batch), for the choice of the CPU engine."""
    return synthesize(decode_latents(data, device, engine, job_pixels))


def decode_latents(data: bytes, device=None, engine=None, job_pixels: int = 0) -> Latents:
    """Decoding's first stage: parse, choose the engine, entropy-decode y_hat (AecError for a
    damaged file). A batch runs it for the next file while `synthesize` runs for this one: the
    entropy decoder is mostly one core's work, g_s the engine's threads'."""
    header, z_bytes, y_bytes = bitstream.parse(data)
    engine = engine_to_decode(header, device, engine, job_pixels)
    hp, wp = -(-header.height // PAD) * PAD, -(-header.width // PAD) * PAD
    with engine.session():
        try:
            y_hat = engine.decode_latents(y_bytes, z_bytes, (hp // PAD, wp // PAD))
        except (RuntimeError, ValueError) as e:  # the rANS decoder's own complaints
            raise AecError(f"corrupt .aec payload ({e})") from None
    return Latents(header, engine, y_hat)


def synthesize(latents: Latents) -> tuple[np.ndarray, bitstream.Header]:
    """Decoding's second stage: g_s, cropped to the image, in its colour mode."""
    header, engine = latents.header, latents.engine
    with engine.session():
        pixels = engine.pixels(latents.y_hat, header.quality, header.height, header.width)
    return _in_mode(pixels, header.mode), header


def _in_mode(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Decoded (H, W, 3) pixels as the colour mode shows them: L is the channel mean, (H, W)."""
    return np.round(pixels.astype(np.float32).mean(axis=2)).astype(np.uint8) if mode == "L" else pixels
