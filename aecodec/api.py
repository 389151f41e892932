"""Python API: `compress(image) -> bytes`, `decompress(data) -> PIL.Image.Image`.

Models load once and are cached; calls are serialized per model by a lock, so the API may be used
from several threads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .codec import bitstream, coder
from .codec.weights import DEFAULT_MODEL, load_model
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


def compress(image, quality: int = DEFAULT_QUALITY, k: int | None = None, *, device: str = "auto",
             drop_alpha: bool = False, reduce_depth: bool = False, model: str = DEFAULT_MODEL) -> bytes:
    """Compress an image (path, PIL image, uint8 numpy array, or encoded bytes) to .aec bytes.

    quality: 1 (smallest) .. 8 (best). k: channels kept per latent position (default: the model's
    default for the quality). device: "auto", "cpu" or "cuda".
    """
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 8:
        raise AecError(f"quality must be an integer 1..8, got {quality!r}")
    rgb, mode = _pixels(image, drop_alpha, reduce_depth)
    return coder.encode(rgb, mode, int(quality), k, loaded=load_model(model), device=device)


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
