"""Bitstream writer/parser: round trip, field validation, and a seeded fuzz of the parser."""
import dataclasses
import random
import struct
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from aecodec.codec import bitstream
from aecodec.codec.bitstream import Header, pack, parse
from aecodec.errors import AecError

H = Header("aec-hp-128-192", bytes(range(8)), 17, 31, "RGB", 3, 48, 5, 9)


def _valid():
    return pack(H, b"zzzzz", b"yyyyyyyyy")


def test_round_trip():
    data = _valid()
    h, z, y = parse(data)
    assert h == H and z == b"zzzzz" and y == b"yyyyyyyyy"
    assert data[:4] == bitstream.MAGIC and data[4] == bitstream.VERSION


def _reseal(body: bytes) -> bytes:
    """Replace the CRC so that a field edit reaches the field checks."""
    return body[:-4] + struct.pack(">I", zlib.crc32(body[:-4]))


def _field_offset():
    return 6 + len(H.model.encode())


@pytest.mark.parametrize("field,offset,fmt,value,message", [
    ("width 0", 8, ">I", 0, "size"),
    ("width max", 8, ">I", 2**32 - 1, "size"),
    ("height 0", 12, ">I", 0, "size"),
    ("huge area", 8, ">II", (60000, 60000), "megapixel"),
    ("mode", 16, ">B", 7, "colour mode"),
    ("quality 0", 17, ">B", 0, "quality"),
    ("quality 9", 17, ">B", 9, "quality"),
    ("k 0", 18, ">H", 0, "k"),
])
def test_field_validation(field, offset, fmt, value, message):
    data = bytearray(_valid())
    values = value if isinstance(value, tuple) else (value,)
    struct.pack_into(fmt, data, _field_offset() + offset, *values)
    with pytest.raises(AecError, match=message):
        parse(_reseal(bytes(data)))


def test_version_and_magic():
    data = bytearray(_valid())
    data[4] = 3
    with pytest.raises(AecError, match="version 3"):
        parse(bytes(data))
    with pytest.raises(AecError, match="magic"):
        parse(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(AecError, match="magic"):
        parse(b"")


def test_lengths_past_the_end_and_trailing_bytes():
    data = bytearray(_valid())
    struct.pack_into(">I", data, _field_offset() + 20, 2**32 - 1)  # len(z)
    with pytest.raises(AecError, match="truncated"):
        parse(_reseal(bytes(data)))
    with pytest.raises(AecError, match="trailing"):
        parse(_valid()[:-4] + b"xx" + _valid()[-4:])


def test_every_truncation_is_rejected():
    data = _valid()
    for n in range(len(data)):
        with pytest.raises(AecError):
            parse(data[:n])


def test_every_single_bit_flip_is_rejected():
    data = _valid()
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(AecError):
            parse(bytes(flipped))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_aec_error(blob):
    for candidate in (blob, bitstream.MAGIC + blob, _valid()[:6] + blob):
        try:
            parse(candidate)
        except AecError:
            pass


def test_seeded_mutations_only_raise_aec_error():
    rng = random.Random(0)
    base = _valid()
    for _ in range(2000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
        if rng.random() < 0.5:
            data = _reseal(data)
        try:
            parse(data)
        except AecError:
            pass


def test_pack_rejects_bad_headers():
    with pytest.raises(AecError):
        pack(Header("bad name!", bytes(8), 1, 1, "RGB", 1, 1, 0, 0), b"z", b"y")
    with pytest.raises(AecError):
        pack(Header("m", bytes(8), 0, 1, "RGB", 1, 1, 0, 0), b"z", b"y")


def test_fractional_quality_is_version_2_and_levels_stay_version_1():
    base = parse(_valid())[0]
    for q, version in [(4, 1), (4.0, 1), (4.5, 2), (1 + 1 / 256, 2), (7.99609375, 2)]:
        header = dataclasses.replace(base, quality=q)
        data = pack(header, b"z" * header.z_length, b"y" * header.y_length)
        assert data[4] == version
        back = parse(data)[0]
        assert back.quality == q and back.version == version
        assert len(data) == len(_valid()) + (version - 1)  # the quality field grows by one byte
    with pytest.raises(AecError, match="multiple of 1/256"):
        pack(dataclasses.replace(base, quality=4.001), b"z" * base.z_length, b"y" * base.y_length)
    # a version-2 file with a whole quality is not canonical
    data = bytearray(pack(dataclasses.replace(base, quality=4.5), b"z" * base.z_length, b"y" * base.y_length))
    struct.pack_into(">H", data, _field_offset() + 17, 4 * 256)
    with pytest.raises(AecError, match="whole quality"):
        parse(_reseal(bytes(data)))
    for bad in (255, 2049):
        struct.pack_into(">H", data, _field_offset() + 17, bad)
        with pytest.raises(AecError, match="quality"):
            parse(_reseal(bytes(data)))


@pytest.mark.parametrize("quality", [3, 3.5])
def test_peek_size_reads_the_size_from_the_head_alone(quality):
    h = dataclasses.replace(H, quality=quality, width=4000, height=3000)
    data = pack(h, b"z", b"y")
    assert bitstream.peek_size(data[:bitstream.HEAD_MAX]) == (4000, 3000)
    assert bitstream.peek_size(data[:bitstream.HEAD_MAX][:len(data) - 6]) == (4000, 3000)  # no payload needed


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=120))
def test_peek_size_only_raises_aec_error(blob):
    for candidate in (blob, bitstream.MAGIC + blob, _valid()[:6] + blob, _valid()[:len(blob) % 40]):
        try:
            width, height = bitstream.peek_size(candidate)
        except AecError:
            continue
        assert 0 <= width < 2 ** 32 and 0 <= height < 2 ** 32
