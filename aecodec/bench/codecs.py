"""One small class per codec: encode a PIL RGB image to bytes, decode bytes to a PIL image.

Classic codecs run at the strongest settings their Pillow bindings offer for the metric plotted
(docs/benchmarks.md says why each): JPEG with optimized Huffman tables and progressive scans
(libjpeg-turbo), 4:2:0 and 4:4:4; JPEG 2000 with the irreversible 9/7 wavelet, the colour
transform and a raw codestream, rate-controlled to a target bpp (OpenJPEG); WebP at method 6;
AVIF (libaom) twice: as Pillow encodes it by default (4:2:0, libaom's default tune, speed 4) and
tuned for PSNR (4:4:4, tune=psnr, speed 2); HEIC (x265 through pillow-heif) 4:2:0 and 4:4:4,
preset veryslow, tune psnr; JPEG XL (libjxl through pillow-jxl-plugin) at effort 7. HEIC and JPEG
XL need the `bench` extra (pip install 'aecodec[bench]'); without it they are skipped with a note.
"""
from __future__ import annotations

import io
import sys
from dataclasses import dataclass

from PIL import Image, features

from ..codec.config import QUALITY_LEVELS


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

    def settings(self) -> dict:
        """The encoder options besides the swept parameter (written into the results JSON)."""
        return {}

    @staticmethod
    def library() -> str:
        return ""


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@dataclass(frozen=True)
class JpegCodec(Codec):
    subsampling: int = 2  # Pillow: 0 = 4:4:4, 2 = 4:2:0

    def settings(self):
        return {"quality": "param", "subsampling": self.subsampling, "optimize": True, "progressive": True}

    def encode(self, img):
        return _save(img, "JPEG", quality=int(self.param), **_no_param(self.settings()))

    @staticmethod
    def library():
        return f"libjpeg-turbo {features.version('libjpeg_turbo')} (Pillow {Image.__version__})"


@dataclass(frozen=True)
class Jpeg2000Codec(Codec):
    def settings(self):
        return {"irreversible": True, "mct": 1, "no_jp2": True, "quality_mode": "rates",
                "quality_layers": "[24 / param] (param = target bpp)"}

    def encode(self, img):
        ratio = 24.0 / self.param  # 24 bits per RGB pixel -> target bpp
        return _save(img, "JPEG2000", irreversible=True, mct=1, no_jp2=True,
                     quality_mode="rates", quality_layers=[ratio])

    @staticmethod
    def library():
        return f"OpenJPEG {features.version('jpg_2000')} (Pillow {Image.__version__})"


@dataclass(frozen=True)
class WebpCodec(Codec):
    def settings(self):
        return {"quality": "param", "method": 6}

    def encode(self, img):
        return _save(img, "WEBP", quality=int(self.param), method=6)

    @staticmethod
    def library():
        return f"libwebp {features.version('webp')} (Pillow {Image.__version__})"


@dataclass(frozen=True)
class AvifCodec(Codec):
    subsampling: str = "4:2:0"
    speed: int = 4
    advanced: tuple = ()  # libaom options, e.g. (("tune", "psnr"),)

    def settings(self):
        return {"quality": "param", "subsampling": self.subsampling, "speed": self.speed,
                "codec": "aom", "advanced": dict(self.advanced)}

    def encode(self, img):
        return _save(img, "AVIF", quality=int(self.param), subsampling=self.subsampling, speed=self.speed,
                     codec="aom", **({"advanced": dict(self.advanced)} if self.advanced else {}))

    @staticmethod
    def library():
        from PIL import AvifImagePlugin

        return (f"libavif {features.version('avif')}, libaom {AvifImagePlugin.get_codec_version('aom')} "
                f"(Pillow {Image.__version__})")


def _heif():
    import pillow_heif

    pillow_heif.register_heif_opener()
    return pillow_heif


@dataclass(frozen=True)
class HeicCodec(Codec):
    chroma: int = 420
    enc_params: tuple = (("preset", "veryslow"), ("tune", "psnr"))

    def settings(self):
        return {"quality": "param", "chroma": self.chroma, "enc_params": dict(self.enc_params)}

    def encode(self, img):
        _heif()
        return _save(img, "HEIF", quality=int(self.param), chroma=self.chroma, enc_params=dict(self.enc_params))

    def decode(self, data):
        _heif()
        return super().decode(data)

    @staticmethod
    def library():
        h = _heif()
        return f"libheif {h.libheif_version()}, {h.libheif_info()['HEIF']}, pillow-heif {h.__version__}"


def _jxl():
    import pillow_jxl  # noqa: F401  (registers the JXL plugin with Pillow)


@dataclass(frozen=True)
class JxlCodec(Codec):
    effort: int = 7

    def settings(self):
        return {"quality": "param", "effort": self.effort}

    def encode(self, img):
        _jxl()
        return _save(img, "JXL", quality=int(self.param), effort=self.effort)

    def decode(self, data):
        _jxl()
        return super().decode(data)

    @staticmethod
    def library():
        from importlib.metadata import version

        return f"libjxl through pillow-jxl-plugin {version('pillow-jxl-plugin')}"


def _no_param(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if v != "param"}


@dataclass(frozen=True)
class AecCodec(Codec):
    """aecodec through exactly the path the CLI uses (api.compress / api.decompress)."""
    k: int | None = None
    device: str = "auto"
    effort: int = 0

    @property
    def key(self) -> str:
        # effort 0 keeps the key it had before efforts existed, so cached points stay valid
        effort = f"|effort{self.effort}" if self.effort else ""
        return f"{self.name}|{self.param}|k{self.k}{effort}|{_default_model_sha256()[:16]}"

    def settings(self):
        return {"quality": "param", "k": self.k or "the model's default for the quality", "effort": self.effort,
                "device": self.device}

    def library(self):
        from .. import __version__
        from ..codec.zoo import DEFAULT_MODEL

        return f"aecodec {__version__}, model {DEFAULT_MODEL} (sha256 {_default_model_sha256()})"

    @property
    def _device(self) -> str:
        """On the CPU the float32 reference engine, whichever engine `auto` would pick for a
        user's job there: the curves are the model's (the bf16 engine's pixels are within ~0.01 dB,
        docs/performance.md), so cached points stay comparable across machines."""
        from ..codec.engines import device_name

        return "cpu" if device_name(self.device) == "cpu" else self.device

    def encode(self, img):
        from ..api import compress

        return compress(img, quality=int(self.param), k=self.k, effort=self.effort, device=self._device)

    def decode(self, data):
        from ..api import decompress

        return decompress(data, device=self._device).convert("RGB")


def _default_model_sha256() -> str:
    """The shipped default model's SHA-256, from the manifest (its file is checked against it
    whenever it loads)."""
    from ..codec.zoo import DEFAULT_MODEL, shipped_models

    return shipped_models()[DEFAULT_MODEL]["sha256"]


JPEG_QUALITIES = (3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 85, 90, 95)
J2K_BPPS = (0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
WEBP_QUALITIES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
AVIF_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
HEIC_QUALITIES = (1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 70)
JXL_QUALITIES = (0, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)  # 0 is libjxl's floor (~0.15 bpp)
AVIF_DEFAULT = "AVIF 4:2:0 (default tune)"
AVIF_PSNR = "AVIF 4:4:4 tune=psnr"


def _available(module: str, label: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        print(f"aecodec bench: note: {label} skipped: {module} is not installed "
              "(pip install 'aecodec[bench]')", file=sys.stderr)
        return False
    return True


def classic_codecs(names=("jpeg", "jpeg2000", "webp", "avif", "avif-psnr", "heic", "jxl"),
                   quick: bool = False) -> list[Codec]:
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
    if {"avif", "avif-psnr"} & set(names):
        if not features.check("avif"):
            print("aecodec bench: note: AVIF skipped: this Pillow has no AVIF support", file=sys.stderr)
        else:
            if "avif" in names:
                out += [AvifCodec(AVIF_DEFAULT, q) for q in pick(AVIF_QUALITIES)]
            if "avif-psnr" in names:
                out += [AvifCodec(AVIF_PSNR, q, "4:4:4", 2, (("tune", "psnr"),)) for q in pick(AVIF_QUALITIES)]
    if "heic" in names and _available("pillow_heif", "HEIC"):
        out += [HeicCodec("HEIC 4:2:0", q, 420) for q in pick(HEIC_QUALITIES)]
        out += [HeicCodec("HEIC 4:4:4", q, 444) for q in pick(HEIC_QUALITIES)]
    if "jxl" in names and _available("pillow_jxl", "JPEG XL"):
        out += [JxlCodec("JPEG XL", q) for q in pick(JXL_QUALITIES)]
    return out


def aec_codecs(qualities=QUALITY_LEVELS, ks=(None,), device="auto", efforts=()) -> list[Codec]:
    """The default curve, one curve per extra k, and one per extra effort (at the default k)."""
    out = [AecCodec("aecodec" if k is None else f"aecodec k={k}", q, k, device) for k in ks for q in qualities]
    return out + [AecCodec(f"aecodec effort={e}", q, None, device, e) for e in efforts for q in qualities]
