"""One small class per codec: encode a PIL RGB image to bytes, decode bytes to a PIL image.

Classic codecs run at the strongest settings their Pillow bindings offer (docs/benchmarks.md):
JPEG with optimized Huffman tables and progressive scans (libjpeg-turbo), 4:2:0 and 4:4:4;
JPEG 2000 with the irreversible 9/7 wavelet, the colour transform and a raw codestream (no JP2
boxes), rate-controlled to a target bpp (OpenJPEG); WebP at method 6; AVIF at speed 4 (libaom).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Codec:
    name: str        # curve name, e.g. "JPEG 4:2:0"
    param: float     # the swept parameter (quality or target bpp)

    @property
    def key(self) -> str:
        return f"{self.name}|{self.param}"

    def encode(self, img: Image.Image) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@dataclass(frozen=True)
class JpegCodec(Codec):
    subsampling: int = 2  # Pillow: 0 = 4:4:4, 2 = 4:2:0

    def encode(self, img):
        return _save(img, "JPEG", quality=int(self.param), subsampling=self.subsampling,
                     optimize=True, progressive=True)


@dataclass(frozen=True)
class Jpeg2000Codec(Codec):
    def encode(self, img):
        ratio = 24.0 / self.param  # 24 bits per RGB pixel -> target bpp
        return _save(img, "JPEG2000", irreversible=True, mct=1, no_jp2=True,
                     quality_mode="rates", quality_layers=[ratio])


@dataclass(frozen=True)
class WebpCodec(Codec):
    def encode(self, img):
        return _save(img, "WEBP", quality=int(self.param), method=6)


@dataclass(frozen=True)
class AvifCodec(Codec):
    def encode(self, img):
        return _save(img, "AVIF", quality=int(self.param), speed=4, subsampling="4:2:0")


@dataclass(frozen=True)
class AecCodec(Codec):
    """aecodec through exactly the path the CLI uses (api.compress / api.decompress)."""
    k: int | None = None
    device: str = "auto"

    @property
    def key(self) -> str:
        from ..codec.weights import DEFAULT_MODEL, load_model

        return f"{self.name}|{self.param}|k{self.k}|{load_model(DEFAULT_MODEL).digest.hex()[:16]}"

    def encode(self, img):
        from ..api import compress

        return compress(img, quality=int(self.param), k=self.k, device=self.device)

    def decode(self, data):
        from ..api import decompress

        return decompress(data, device=self.device).convert("RGB")


JPEG_QUALITIES = (3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 85, 90, 95)
J2K_BPPS = (0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
WEBP_QUALITIES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
AVIF_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)


def classic_codecs(names=("jpeg", "jpeg2000", "webp", "avif"), quick: bool = False) -> list[Codec]:
    def pick(seq):
        return seq[::3] if quick else seq

    out: list[Codec] = []
    if "jpeg" in names:
        out += [JpegCodec("JPEG 4:2:0", q, 2) for q in pick(JPEG_QUALITIES)]
        out += [JpegCodec("JPEG 4:4:4", q, 0) for q in pick(JPEG_QUALITIES)]
    if "jpeg2000" in names:
        out += [Jpeg2000Codec("JPEG 2000", b) for b in pick(J2K_BPPS)]
    if "webp" in names:
        out += [WebpCodec("WebP", q) for q in pick(WEBP_QUALITIES)]
    if "avif" in names:
        from PIL import features

        if features.check("avif"):
            out += [AvifCodec("AVIF", q) for q in pick(AVIF_QUALITIES)]
    return out


def aec_codecs(qualities=range(1, 9), ks=(None,), device="auto") -> list[Codec]:
    return [AecCodec("aecodec" if k is None else f"aecodec k={k}", q, k, device)
            for k in ks for q in qualities]
