"""Reading users' images into the 8-bit RGB the codec codes, without silent degradation.

RGB and grayscale are coded as they are (grayscale comes back grayscale). Lossless conversions
(palette without transparency, 1-bit, CMYK/YCbCr to RGB, EXIF rotation applied) happen with a note.
Transparency and more than 8 bits per channel would be lost, so they are refused unless the caller
allows it (`drop_alpha`, `reduce_depth`; CLI --drop-alpha, --reduce-depth).
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .codec.bitstream import MAX_PIXELS, MAX_SIDE
from .errors import AecError

# Pillow's decompression-bomb guard applies, capped by the format's own limit.
Image.MAX_IMAGE_PIXELS = min(Image.MAX_IMAGE_PIXELS or MAX_PIXELS, MAX_PIXELS)


class AecWarning(UserWarning):
    """A lossless-but-notable conversion of the input (reported on stderr by the CLI)."""


def open_image(src, name: str | None = None) -> Image.Image:
    """Open a path, bytes or file object with Pillow, with one-line errors naming `name` (default:
    the path, or "input")."""
    try:
        if isinstance(src, (bytes, bytearray)):
            im = Image.open(io.BytesIO(bytes(src)))
        else:
            im = Image.open(src)
        check_size(*im.size, name or _name(src))  # from the header, before any pixel is decoded
        # Pillow reduces 16-bit RGB PNG/TIFF to 8 bits while loading: note the stored depth first.
        im.info["aecodec_bit_depth"] = _stored_bit_depth(im)
        im.load()
        return im
    except FileNotFoundError:
        raise AecError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise AecError(f"{src}: is a directory") from None
    except PermissionError:
        raise AecError(f"{src}: permission denied") from None
    except UnidentifiedImageError:
        raise AecError(f"{name or _name(src)}: not an image Pillow can read") from None
    except Image.DecompressionBombError as e:  # Pillow's own guard (twice our limit) trips in open()
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        size = f"of {int(pixels.group(1)) / 1e6:.0f} megapixels " if pixels else ""
        raise AecError(f"{name or _name(src)}: image {size}is larger than aecodec codes ({_LIMITS})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise AecError(f"{name or _name(src)}: cannot read image ({e})") from None


_LIMITS = f"{MAX_SIDE} pixels per side, {MAX_PIXELS / 1e6:.0f} megapixels"


def check_size(w: int, h: int, name: str | None = None) -> None:
    """AecError unless aecodec codes a w x h image (bitstream.MAX_SIDE, MAX_PIXELS)."""
    where = f"{name}: " if name else ""
    if w < 1 or h < 1:
        raise AecError(f"{where}image has no pixels ({w}x{h})")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise AecError(f"{where}image {w}x{h} is larger than aecodec codes ({_LIMITS})")


def _name(src) -> str:
    return str(src) if isinstance(src, (str, Path)) else "input"


def _stored_bit_depth(im: Image.Image) -> int | None:
    """Bits per sample as stored in the file, where Pillow's mode may not tell."""
    try:
        if im.format == "PNG" and im.fp is not None:
            pos = im.fp.tell()
            im.fp.seek(0)
            head = im.fp.read(25)
            im.fp.seek(pos)
            return head[24] if len(head) >= 25 and head[12:16] == b"IHDR" else None
        if im.format == "TIFF":
            bits = im.tag_v2.get(258)
            return max(bits) if isinstance(bits, tuple) else bits
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return None


def to_codec_array(im: Image.Image, drop_alpha: bool = False, reduce_depth: bool = False,
                   bit_depth: int | None = None) -> tuple[np.ndarray, str]:
    """PIL image -> ((H, W, 3) uint8 array, colour mode 'RGB' or 'L')."""
    notes = []
    if getattr(im, "n_frames", 1) > 1:
        notes.append(f"animated image with {im.n_frames} frames: only the first frame is coded")
        im.seek(0)
    if im.getexif().get(0x0112, 1) not in (0, 1):
        im = ImageOps.exif_transpose(im)
        notes.append("EXIF orientation applied to the pixels")
    mode = im.mode
    if bit_depth is None:
        bit_depth = im.info.get("aecodec_bit_depth")
    deep = mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F") or (bit_depth or 8) > 8
    if deep:
        if not reduce_depth:
            raise AecError(f"{bit_depth or 16}-bit image: aecodec codes 8 bits per channel; "
                           "pass --reduce-depth (reduce_depth=True) to convert")
        notes.append("reduced to 8 bits per channel")
        if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            a = np.asarray(im, dtype=np.float64)
            peak = 65535.0 if mode != "F" else max(1.0, float(a.max()))
            im = Image.fromarray(np.clip(np.round(a / peak * 255.0), 0, 255).astype(np.uint8), "L")
            mode = "L"
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in im.info) \
        or (mode in ("RGB", "L") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        opaque = rgba.getextrema()[3][0] == 255
        if not opaque and not drop_alpha:
            raise AecError("image has transparency, which aecodec does not code; "
                           "pass --drop-alpha (drop_alpha=True) to discard it")
        notes.append("alpha channel discarded" if not opaque else "fully opaque alpha channel dropped")
        gray = mode in ("LA", "La") or (mode == "L")
        im = rgba.convert("L") if gray else rgba.convert("RGB")
        mode = im.mode
    if mode == "P":
        im, mode = im.convert("RGB"), "RGB"
        notes.append("palette image coded as RGB")
    elif mode == "1":
        im, mode = im.convert("L"), "L"
        notes.append("1-bit image coded as grayscale")
    elif mode not in ("RGB", "L"):
        notes.append(f"{mode} image converted to RGB")
        im, mode = im.convert("RGB"), "RGB"
    check_size(*im.size)
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    for n in notes:
        warnings.warn(n, AecWarning, stacklevel=3)
    return arr, mode


def array_to_codec(a: np.ndarray) -> tuple[np.ndarray, str]:
    """numpy input: (H, W) or (H, W, 1) grayscale, (H, W, 3) RGB; uint8 only (no silent rescaling)."""
    if not isinstance(a, np.ndarray):
        raise AecError("expected a numpy array")
    if a.dtype != np.uint8:
        raise AecError(f"numpy images must be uint8, got {a.dtype}; scale and convert first")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2), "L"
    if a.ndim == 3 and a.shape[2] == 3:
        return np.ascontiguousarray(a), "RGB"
    if a.ndim == 3 and a.shape[2] == 4:
        raise AecError("RGBA arrays are not coded; drop the alpha channel first")
    raise AecError(f"unsupported array shape {a.shape}; expected (H, W) or (H, W, 3)")


def from_codec_array(pixels: np.ndarray, mode: str) -> Image.Image:
    return Image.fromarray(pixels, "L" if mode == "L" else "RGB")


IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def list_images(folder) -> list[Path]:
    """The images directly inside folder (by extension), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AecError(f"{folder}: not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise AecError(f"{folder}: no images found")
    return files
