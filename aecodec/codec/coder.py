"""Image <-> bitstream, the whole data flow:

    pixels -> pad -> g_a -> gain -> gate_quantize(k) -> h_a -> entropy coders -> bitstream
    bitstream -> entropy decoders -> inverse gain -> g_s -> crop -> pixels

The transforms run on the chosen device; entropy coding and the scale network always run on the
CPU (the latter in float64) so that a file encoded on one device decodes on any other.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch

from ..errors import AecError
from . import bitstream
from .model import PAD
from .weights import DEFAULT_MODEL, LoadedModel, load_model
from .zoo import check_known


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AecError("--device cuda was requested but no CUDA GPU is available")
    return dev


def _transforms_on(loaded: LoadedModel, device: torch.device):
    """The model whose g_a/h_a/g_s run on `device` (entropy models stay on the CPU copy)."""
    if device.type == "cpu":
        return loaded.model
    cache = loaded.__dict__.setdefault("_device_models", {})
    if device not in cache:  # entropy models come along: the encoder's refinement needs their likelihoods
        cache[device] = copy.deepcopy(loaded.model).to(device)
    return cache[device]


# Transforms run in tiles so that peak memory stays bounded for huge images. Convolutions only see
# a few latents around each output, so a halo of HALO latents around every tile makes the tiled
# result equal the whole-image one up to float rounding: no seams. Images up to TILE pixels per
# side are a single tile.
TILE = 1024 // 16   # latents per analysis tile side (1024 pixels)
TILE_S = 768 // 16  # latents per synthesis tile side (768 pixels: g_s has the larger activations)
HALO = 4            # latents of context on each side (64 pixels), more than g_a/g_s can see


def _tiles(n: int, size: int | None = None):
    """[(start, stop)] covering 0..n in steps of `size` (default TILE) latents."""
    size = size or TILE
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _analyze_tiled(net, x: torch.Tensor) -> torch.Tensor:
    """g_a over x (1, 3, 16h, 16w) tile by tile -> y (1, M, h, w)."""
    _, _, H, W = x.shape
    h, w = H // 16, W // 16
    if h <= TILE and w <= TILE:
        return net.g_a(x)
    y = torch.empty((1, net.channels, h, w), dtype=x.dtype, device=x.device)
    for r0, r1 in _tiles(h):
        for c0, c1 in _tiles(w):
            a0, a1, b0, b1 = max(0, r0 - HALO), min(h, r1 + HALO), max(0, c0 - HALO), min(w, c1 + HALO)
            t = net.g_a(x[:, :, 16 * a0:16 * a1, 16 * b0:16 * b1])
            y[:, :, r0:r1, c0:c1] = t[:, :, r0 - a0:r1 - a0, c0 - b0:c1 - b0]
    return y


def _synthesize_tiled(net, y_hat: torch.Tensor, quality: int, height: int, width: int) -> np.ndarray:
    """g_s tile by tile, straight to cropped 8-bit pixels (height, width, 3) on the CPU."""
    _, _, h, w = y_hat.shape
    out = torch.empty((height, width, 3), dtype=torch.uint8)
    for r0, r1 in _tiles(h, TILE_S):
        for c0, c1 in _tiles(w, TILE_S):
            if 16 * r0 >= height or 16 * c0 >= width:
                continue
            a0, a1, b0, b1 = max(0, r0 - HALO), min(h, r1 + HALO), max(0, c0 - HALO), min(w, c1 + HALO)
            t = net.synthesize(y_hat[:, :, a0:a1, b0:b1], quality)[0].permute(1, 2, 0)  # HWC
            y0, x0 = 16 * (r0 - a0), 16 * (c0 - b0)
            rows, cols = min(16 * r1, height) - 16 * r0, min(16 * c1, width) - 16 * c0
            t = t[y0:y0 + rows, x0:x0 + cols].clamp(0, 1).mul_(255).round_()
            out[16 * r0:16 * r0 + rows, 16 * c0:16 * c0 + cols] = t.to(torch.uint8).cpu()
    return out.numpy()


def _to_tensor(rgb: np.ndarray, device, pad: int = 1) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H', W') float in [0, 1], H' and W' rounded up to multiples of
    `pad` by repeating the edge pixels. Padded as uint8 and converted once, straight into the
    channels-last layout (the faster one for CPU convolutions): a 24 MP image makes one float
    copy, not three."""
    h, w = rgb.shape[:2]
    rgb = np.pad(rgb, ((0, (-h) % pad), (0, (-w) % pad), (0, 0)), mode="edge")
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.uint8)).to(device)
    return x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)  # HWC memory = channels-last


def _check_quality(quality) -> int | float:
    if isinstance(quality, bool) or not isinstance(quality, (int, float, np.integer, np.floating)) \
            or not bitstream.QUALITY_MIN <= quality <= bitstream.QUALITY_MAX:
        raise AecError(f"quality must be a number in {bitstream.QUALITY_MIN}..{bitstream.QUALITY_MAX}, "
                       f"got {quality!r}")
    return bitstream.snap_quality(quality)


def default_k(loaded: LoadedModel, quality: int | float) -> int:
    """The model's k for a quality; between two levels, the higher level's."""
    return loaded.default_k[math.ceil(quality) - 1]


class _Encoder:
    """One image's analysis transform, run once; then any number of (quality, k) codings of it,
    which cost only the gain, gate, h_a and entropy coding (the target searches probe many)."""

    def __init__(self, rgb: np.ndarray, mode: str, loaded: LoadedModel, device):
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise AecError("encode expects an 8-bit RGB array of shape (H, W, 3)")
        self.h, self.w = rgb.shape[:2]
        bitstream._check_ranges(self.w, self.h, 1, 1, mode)
        self.rgb, self.mode, self.loaded = rgb, mode, loaded
        self.net = _transforms_on(loaded, device)
        self.x = _to_tensor(rgb, device, PAD)
        self.y = _analyze_tiled(self.net, self.x)
        self.y_hat = None

    def code(self, quality: int | float, k: int | None, effort: int = 0, on_check=None) -> bytes:
        M = self.loaded.model.channels
        k = default_k(self.loaded, quality) if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= M:
            raise AecError(f"k must be an integer in 1..{M} for model {self.loaded.name}, got {k}")
        if effort:
            self.y_hat, z = self._refined(quality, k, effort, on_check)
        else:
            self.y_hat, z = self.net.quantize_latents(self.y, quality, k)
        y_bytes, z_bytes = self._entropy_code(self.y_hat, z)
        header = bitstream.Header(self.loaded.name, self.loaded.short_digest, self.w, self.h, self.mode,
                                  quality, k, len(z_bytes), len(y_bytes))
        return bitstream.pack(header, z_bytes, y_bytes)

    def _entropy_code(self, y_hat, z) -> tuple[bytes, bytes]:
        try:
            return self.loaded.model.encode_latents(y_hat.cpu(), z.cpu())
        except ValueError as e:
            raise AecError(f"cannot encode this image: {e}") from None

    def measure(self, y_hat, z, quality) -> tuple[int, float]:
        """(file payload bytes, decoded MSE in 8-bit levels squared) of coding these latents."""
        y_bytes, z_bytes = self._entropy_code(y_hat, z)
        self.y_hat = y_hat
        return len(y_bytes) + len(z_bytes), self._decoded_mse(quality)

    def _refined(self, quality, k: int, effort: int, on_check=None):
        from .refine import MAX_PIXELS, rd_lambda, refine

        lam, pixels = rd_lambda(quality), self.h * self.w
        if pixels > MAX_PIXELS:
            raise AecError(f"effort > 0 works on images up to {MAX_PIXELS / 1e6:.1f} megapixels "
                           f"(this one has {pixels / 1e6:.1f}); use effort 0")

        def cost(y_hat, z) -> float:
            nbytes, mse = self.measure(y_hat, z, quality)
            return nbytes * 8 / pixels + lam * mse

        g, _ = self.net._gains(quality, self.y.device)
        y_scaled = (self.y * g).float()
        _, z = self.net.quantize_latents(self.y, quality, k)
        return refine(self.net, self.x, (self.h, self.w), y_scaled, z, quality, k, effort, cost, on_check)

    def _decoded_mse(self, quality) -> float:
        """MSE (in 8-bit levels squared) of what the decoder shows for self.y_hat on this device."""
        pixels = _in_mode(_synthesize_tiled(self.net, self.y_hat, quality, self.h, self.w), self.mode)
        if self.mode == "L":
            pixels = pixels[:, :, None]  # against the (H, W, 3) gray input
        return float(np.mean((pixels.astype(np.float64) - self.rgb) ** 2))

    def psnr(self, quality: int | float) -> float:
        """PSNR of what the decoder will show for the last coding (same latents, this device)."""
        mse = self._decoded_mse(quality)
        return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def encode(rgb: np.ndarray, mode: str, quality: int | float, k: int | None = None,
           loaded: LoadedModel | None = None, device=None, effort: int = 0, progress=None) -> bytes:
    """Encode an 8-bit (H, W, 3) array. mode is the colour mode recorded for the decoder.
    quality: 1..8; values between the levels (in steps of 1/256) interpolate the gains.
    effort: 0 (one pass) .. MAX_EFFORT: refine the latents for this image (codec/refine.py);
    progress(step, steps) is called as the refinement goes."""
    loaded = loaded or load_model(DEFAULT_MODEL)
    quality, effort = _check_quality(quality), _check_effort(effort)
    with loaded.lock, torch.inference_mode():
        return _Encoder(rgb, mode, loaded, resolve_device(device)).code(quality, k, effort, _on_check(progress))


def _check_effort(effort) -> int:
    from .refine import MAX_EFFORT

    if isinstance(effort, bool) or not isinstance(effort, (int, np.integer)) or not 0 <= effort <= MAX_EFFORT:
        raise AecError(f"effort must be an integer 0..{MAX_EFFORT}, got {effort!r}")
    return int(effort)


def _on_check(progress):
    """refine's on_check(step, steps, best) for a progress(step, steps) callback."""
    return None if progress is None else (lambda step, steps, best: progress(step, steps))


def encode_to_target(rgb: np.ndarray, mode: str, *, max_bytes: int | None = None,
                     min_psnr: float | None = None, k: int | None = None,
                     loaded: LoadedModel | None = None, device=None, effort: int = 0,
                     progress=None) -> tuple[bytes, int | float]:
    """-> (file, quality): the highest quality whose file fits in max_bytes (never over), or the
    lowest quality whose decoded PSNR reaches min_psnr. Bisection over the 1/256 quality grid
    (~11 codings; the analysis transform runs once).

    effort > 0: the single-pass search, then the latents refined at the quality found and at up to
    two qualities moved by what refinement changed (its extra bytes for a size, its extra dB for a
    PSNR; then half of it); the result is the best coding that meets the target (highest PSNR
    within the size; smallest file that reaches the PSNR), so never worse than effort 0."""
    if (max_bytes is None) == (min_psnr is None):
        raise AecError("give exactly one target: a size or a PSNR")
    loaded, effort, on_check = loaded or load_model(DEFAULT_MODEL), _check_effort(effort), _on_check(progress)
    with loaded.lock, torch.inference_mode():
        enc = _Encoder(rgb, mode, loaded, resolve_device(device))
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


def model_for(header: bitstream.Header) -> LoadedModel:
    check_known(header.model)
    loaded = load_model(header.model)
    if loaded.short_digest != header.digest:
        raise AecError(f"file was made by other weights of model {header.model!r} "
                       f"(digest {header.digest.hex()}, installed {loaded.short_digest.hex()}); "
                       "decode it with the aecodec version that wrote it")
    if header.k > loaded.model.channels:
        raise AecError(f"corrupt .aec header (k {header.k} > {loaded.model.channels} channels)")
    return loaded


def decode(data: bytes, device=None) -> tuple[np.ndarray, bitstream.Header]:
    """Decode an .aec file to an 8-bit array: (H, W, 3) for RGB, (H, W) for L."""
    header, z_bytes, y_bytes = bitstream.parse(data)
    loaded = model_for(header)
    device = resolve_device(device)
    hp, wp = -(-header.height // PAD) * PAD, -(-header.width // PAD) * PAD
    with loaded.lock, torch.inference_mode():
        try:
            y_hat = loaded.model.decode_latents(y_bytes, z_bytes, (hp // PAD, wp // PAD))
        except (RuntimeError, ValueError) as e:  # the rANS decoder's own complaints
            raise AecError(f"corrupt .aec payload ({e})") from None
        net = _transforms_on(loaded, device)
        pixels = _synthesize_tiled(net, y_hat.to(device), header.quality, header.height, header.width)
    return _in_mode(pixels, header.mode), header


def _in_mode(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Decoded (H, W, 3) pixels as the colour mode shows them: L is the channel mean, (H, W)."""
    return np.round(pixels.astype(np.float32).mean(axis=2)).astype(np.uint8) if mode == "L" else pixels
