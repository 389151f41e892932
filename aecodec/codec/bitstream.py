"""The .aec container, version 1 (docs/bitstream.md describes it byte by byte).

Everything is validated from the bytes alone before any large allocation: structure, ranges,
payload lengths that add up exactly, and a CRC-32 over the whole file.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from ..errors import AecError

MAGIC = b"\x8aAEC"
VERSION = 1
MODES = {0: "RGB", 1: "L"}
MODE_IDS = {v: k for k, v in MODES.items()}
MAX_SIDE = 65535
MAX_PIXELS = 1 << 26          # 67 megapixels (8192 x 8192): decodable in a few GB of memory
MAX_FILE = 1 << 29            # 512 MiB: no valid .aec file comes near it
MAX_NAME = 64
MAX_K = 4096
QUALITY_RANGE = range(1, 9)
_NAME_RE = re.compile(rb"^[A-Za-z0-9._-]+$")
_FIELDS = struct.Struct(">8sIIBBHII")  # digest, width, height, mode, quality, k, len(z), len(y)
MIN_SIZE = len(MAGIC) + 2 + 1 + _FIELDS.size + 4


@dataclass(frozen=True)
class Header:
    model: str
    digest: bytes
    width: int
    height: int
    mode: str
    quality: int
    k: int
    z_length: int
    y_length: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def pack(header: Header, z_bytes: bytes, y_bytes: bytes) -> bytes:
    name = header.model.encode("ascii")
    if not (1 <= len(name) <= MAX_NAME and _NAME_RE.match(name)):
        raise AecError(f"invalid model name {header.model!r}")
    if len(header.digest) != 8:
        raise AecError("model digest must be 8 bytes")
    _check_ranges(header.width, header.height, header.quality, header.k, header.mode)
    body = (MAGIC + bytes([VERSION, len(name)]) + name
            + _FIELDS.pack(header.digest, header.width, header.height, MODE_IDS[header.mode],
                           header.quality, header.k, len(z_bytes), len(y_bytes))
            + z_bytes + y_bytes)
    return body + struct.pack(">I", zlib.crc32(body))


def _check_ranges(width, height, quality, k, mode) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise AecError(f"image size {width}x{height} is outside 1..{MAX_SIDE}")
    if width * height > MAX_PIXELS:
        raise AecError(f"image size {width}x{height} exceeds the {MAX_PIXELS // 10**6} megapixel limit")
    if quality not in QUALITY_RANGE:
        raise AecError(f"quality {quality} is outside 1..8")
    if not 1 <= k <= MAX_K:
        raise AecError(f"k {k} is out of range")
    if mode not in MODE_IDS:
        raise AecError(f"unsupported colour mode {mode!r}")


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
    if version != VERSION:
        raise AecError(f"unsupported .aec format version {version} (this aecodec reads version {VERSION})")
    name_len = data[5]
    if not 1 <= name_len <= MAX_NAME:
        raise AecError("corrupt .aec header (model name length)")
    head_end = 6 + name_len + _FIELDS.size
    if len(data) < head_end + 4:
        raise AecError(f"truncated .aec file ({len(data)} bytes)")
    name = data[6:6 + name_len]
    digest, width, height, mode_id, quality, k, z_len, y_len = _FIELDS.unpack_from(data, 6 + name_len)
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
    _check_ranges(width, height, quality, k, MODES[mode_id])
    if z_len == 0 or y_len == 0:
        raise AecError("corrupt .aec file (empty payload)")
    header = Header(name.decode("ascii"), digest, width, height, MODES[mode_id], quality, k, z_len, y_len)
    z = data[head_end:head_end + z_len]
    y = data[head_end + z_len:head_end + z_len + y_len]
    return header, z, y
