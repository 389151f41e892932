"""Python API: `compress(image) -> bytes`, `decompress(data) -> PIL.Image.Image`.

Models load once and are cached. The API may be used from several threads: on the CPU (numpy
and openvino engines) calls run side by side; the torch engine (GPU, effort) serializes them per
model. device "auto" on the CPU picks the engine per image (engines.cpu_engine): bf16 through
OpenVINO for large images where it is installed and the CPU has bf16 instructions, numpy's float32
otherwise; "cpu" is always the float32 engine, and $AECODEC_ENGINE forces one (e.g. openvino in a
long-lived process that codes many small images).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .codec import bitstream, coder
from .codec.zoo import DEFAULT_MODEL
from .errors import AecError
from .imageio import array_to_codec, from_codec_array, open_image, to_codec_array

DEFAULT_QUALITY = 4


def _pixels(image, drop_alpha: bool, reduce_depth: bool) -> tuple[np.ndarray, str]:
    if isinstance(image, np.ndarray):
        return array_to_codec(image)
    if isinstance(image, Image.Image):
        return to_codec_array(image, drop_alpha, reduce_depth)
    if isinstance(image, (str, Path, bytes, bytearray)) or hasattr(image, "read"):
        with open_image(image) as im:
            return to_codec_array(im, drop_alpha, reduce_depth)
    raise AecError(f"cannot compress a {type(image).__name__}; pass a path, PIL image or numpy array")


def compress(image, quality: float = DEFAULT_QUALITY, k: int | None = None, *, size: int | None = None,
             bpp: float | None = None, psnr: float | None = None, effort: int = 0, device: str = "auto",
             drop_alpha: bool = False, reduce_depth: bool = False, model: str = DEFAULT_MODEL) -> bytes:
    """Compress an image (path, PIL image, uint8 numpy array, or encoded bytes) to .aec bytes.

    quality: 1 (smallest) .. 8 (best); values in between (steps of 1/256) interpolate the levels.
    Or a target instead of a quality: size (bytes) or bpp, the highest quality that fits (never
    over); psnr (dB), the smallest file that reaches it. `read_header(data).quality` tells the
    quality chosen. k: channels kept per latent position (default: the model's default for the
    quality). effort: 0 (one pass, the default) .. 3: refine the latents for this image by
    gradient descent, slower and smaller for the same quality; any aecodec decodes the result.
    device: "auto", "cpu" or "cuda".
    """
    targets = [t for t in (size, bpp, psnr) if t is not None]
    if len(targets) > 1:
        raise AecError("give at most one of size, bpp and psnr")
    rgb, mode = _pixels(image, drop_alpha, reduce_depth)
    if not targets:
        return coder.encode(rgb, mode, quality, k, device=device, effort=effort, model=model)
    if bpp is not None:
        if not bpp > 0:
            raise AecError(f"bpp must be positive, got {bpp!r}")
        size = int(bpp * rgb.shape[0] * rgb.shape[1] / 8)
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
        raise AecError(f"size must be a positive number of bytes, got {size!r}")
    if psnr is not None and not 0 < psnr < 100:
        raise AecError(f"psnr must be in 0..100 dB, got {psnr!r}")
    return coder.encode_to_target(rgb, mode, max_bytes=size, min_psnr=psnr, k=k, device=device,
                                  effort=effort, model=model)[0]


def decompress(data, *, device: str = "auto") -> Image.Image:
    """Decode .aec bytes (or a path to an .aec file) to a PIL image (mode RGB or L)."""
    if isinstance(data, (str, Path)):
        try:
            data = Path(data).read_bytes()
        except OSError as e:
            raise AecError(f"{data}: {e.strerror}") from None
    pixels, header = coder.decode(bytes(data), device=device)
    return from_codec_array(pixels, header.mode)


def read_header(data) -> bitstream.Header:
    """Parse and validate an .aec file's header (and checksum) without decoding it."""
    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    return bitstream.parse(data)[0]
