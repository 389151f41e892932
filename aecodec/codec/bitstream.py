"""The .aec container, versions 1 and 2 (docs/bitstream.md describes them byte by byte).

Version 2 differs only in the quality field: a 16-bit fixed-point value (quality x 256) for the
continuous qualities between the levels. Integer qualities are always written as version 1, so
they produce exactly the files earlier aecodec versions wrote.

Everything is validated from the bytes alone before any large allocation: structure, ranges,
payload lengths that add up exactly, and a CRC-32 over the whole file.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from ..errors import AecError
from .config import QUALITIES

MAGIC = b"\x8aAEC"
VERSION = 1             # integer quality
VERSION_FRACTIONAL = 2  # quality in steps of 1/QUALITY_SCALE
VERSIONS = (VERSION, VERSION_FRACTIONAL)
QUALITY_SCALE = 256
MODES = {0: "RGB", 1: "L"}
MODE_IDS = {v: k for k, v in MODES.items()}
MAX_SIDE = 65535
MAX_PIXELS = 1 << 26          # 67 megapixels (8192 x 8192): decodable in a few GB of memory
MAX_FILE = 1 << 29            # 512 MiB: no valid .aec file comes near it
MAX_NAME = 64
MAX_K = 4096
QUALITY_MIN, QUALITY_MAX = 1, QUALITIES
_NAME_RE = re.compile(rb"^[A-Za-z0-9._-]+$")
# digest, width, height, mode, quality (v1: u8 level; v2: u16 level x 256), k, len(z), len(y)
_FIELDS = {VERSION: struct.Struct(">8sIIBBHII"), VERSION_FRACTIONAL: struct.Struct(">8sIIBHHII")}
MIN_SIZE = len(MAGIC) + 2 + 1 + _FIELDS[VERSION].size + 4


def snap_quality(quality) -> int | float:
    """A quality as the format stores it: an int for the levels 1..8, else the nearest multiple of
    1/QUALITY_SCALE (which must not round to a level: then it is that int)."""
    q = round(float(quality) * QUALITY_SCALE) / QUALITY_SCALE
    return int(q) if q.is_integer() else q


@dataclass(frozen=True)
class Header:
    model: str
    digest: bytes
    width: int
    height: int
    mode: str
    quality: int | float  # an int for the levels, a multiple of 1/QUALITY_SCALE between them
    k: int
    z_length: int
    y_length: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def version(self) -> int:
        """The format version this header is written in (2 only for a quality between levels)."""
        return VERSION if float(self.quality).is_integer() else VERSION_FRACTIONAL


def pack(header: Header, z_bytes: bytes, y_bytes: bytes) -> bytes:
    name = header.model.encode("ascii")
    if not (1 <= len(name) <= MAX_NAME and _NAME_RE.match(name)):
        raise AecError(f"invalid model name {header.model!r}")
    if len(header.digest) != 8:
        raise AecError("model digest must be 8 bytes")
    _check_ranges(header.width, header.height, header.quality, header.k, header.mode)
    quality = snap_quality(header.quality)
    if quality != header.quality:
        raise AecError(f"quality {header.quality} is not a multiple of 1/{QUALITY_SCALE}")
    version = VERSION if isinstance(quality, int) else VERSION_FRACTIONAL
    stored = quality if version == VERSION else round(quality * QUALITY_SCALE)
    body = (MAGIC + bytes([version, len(name)]) + name
            + _FIELDS[version].pack(header.digest, header.width, header.height, MODE_IDS[header.mode],
                                    stored, header.k, len(z_bytes), len(y_bytes))
            + z_bytes + y_bytes)
    return body + struct.pack(">I", zlib.crc32(body))


def _check_ranges(width, height, quality, k, mode) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise AecError(f"image size {width}x{height} is outside 1..{MAX_SIDE}")
    if width * height > MAX_PIXELS:
        raise AecError(f"image size {width}x{height} exceeds the {MAX_PIXELS // 10**6} megapixel limit")
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) \
            or not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise AecError(f"quality {quality} is outside {QUALITY_MIN}..{QUALITY_MAX}")
    if not 1 <= k <= MAX_K:
        raise AecError(f"k {k} is out of range")
    if mode not in MODE_IDS:
        raise AecError(f"unsupported colour mode {mode!r}")


HEAD_MAX = len(MAGIC) + 2 + MAX_NAME + max(f.size for f in _FIELDS.values())


def peek_size(head: bytes) -> tuple[int, int]:
    """(width, height) from a file's first HEAD_MAX bytes (or fewer), its structure checked but
    not its checksum: for estimates such as a batch's size, never for decoding (parse is that)."""
    if head[:len(MAGIC)] != MAGIC or len(head) < 6 or head[4] not in VERSIONS or not 1 <= head[5] <= MAX_NAME:
        raise AecError("not an .aec file")
    fields = _FIELDS[head[4]]
    if len(head) < 6 + head[5] + fields.size:
        raise AecError("truncated .aec file")
    return fields.unpack_from(head, 6 + head[5])[1:3]


def parse(data: bytes) -> tuple[Header, bytes, bytes]:
    """Validate and split an .aec file into (header, z payload, y payload)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise AecError("bitstream must be bytes")
    data = bytes(data)
    if len(data) > MAX_FILE:
        raise AecError(f"file too large for an .aec file ({len(data)} bytes)")
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise AecError("not an .aec file (bad magic)")
    if len(data) < MIN_SIZE:
        raise AecError(f"truncated .aec file ({len(data)} bytes)")
    version = data[4]
    if version not in VERSIONS:
        raise AecError(f"unsupported .aec format version {version} (this aecodec reads versions "
                       f"{', '.join(map(str, VERSIONS))})")
    name_len = data[5]
    if not 1 <= name_len <= MAX_NAME:
        raise AecError("corrupt .aec header (model name length)")
    fields = _FIELDS[version]
    head_end = 6 + name_len + fields.size
    if len(data) < head_end + 4:
        raise AecError(f"truncated .aec file ({len(data)} bytes)")
    name = data[6:6 + name_len]
    digest, width, height, mode_id, quality, k, z_len, y_len = fields.unpack_from(data, 6 + name_len)
    if head_end + z_len + y_len + 4 != len(data):
        if head_end + z_len + y_len + 4 > len(data):
            raise AecError("truncated .aec file (payload shorter than the header says)")
        raise AecError("corrupt .aec file (trailing bytes after the payload)")
    (crc,) = struct.unpack_from(">I", data, len(data) - 4)
    if zlib.crc32(memoryview(data)[:-4]) != crc:
        raise AecError("corrupt .aec file (checksum mismatch)")
    if not _NAME_RE.match(name):
        raise AecError("corrupt .aec header (model name)")
    if mode_id not in MODES:
        raise AecError(f"corrupt .aec header (colour mode {mode_id})")
    if version == VERSION_FRACTIONAL:
        if quality % QUALITY_SCALE == 0:  # levels are version 1: one file per (image, settings)
            raise AecError("corrupt .aec header (version 2 with a whole quality)")
        quality = quality / QUALITY_SCALE
    _check_ranges(width, height, quality, k, MODES[mode_id])
    if z_len == 0 or y_len == 0:
        raise AecError("corrupt .aec file (empty payload)")
    header = Header(name.decode("ascii"), digest, width, height, MODES[mode_id], quality, k, z_len, y_len)
    z = data[head_end:head_end + z_len]
    y = data[head_end + z_len:head_end + z_len + y_len]
    return header, z, y
