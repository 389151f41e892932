"""Pillow plugin: after `import aecodec`, Image.open("x.aec") and img.save("x.aec") work.

Saving takes `quality=` (1..8) and `k=` like `aecodec.compress`. A file that starts like an .aec
file but is damaged raises PIL.UnidentifiedImageError with the reason (truncated, checksum, ...)
instead of Pillow's bare "cannot identify image file".
"""
from __future__ import annotations

from PIL import Image, ImageFile, UnidentifiedImageError

from .codec import bitstream
from .errors import AecError


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == bitstream.MAGIC


class AecImageFile(ImageFile.ImageFile):
    format = "AEC"
    format_description = "aecodec learned image codec"

    def _open(self) -> None:
        data = self.fp.read(bitstream.MAX_PIXELS)  # an .aec file is far smaller than its pixels
        try:
            header = bitstream.parse(data)[0]
        except AecError as e:
            # Pillow would swallow a SyntaxError and try every other format; the magic matched, so
            # this is an .aec file and the reason is worth more than "cannot identify image file"
            raise UnidentifiedImageError(f"{self.filename or 'input'}: {e}") from None
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["quality"] = header.quality
        self.info["k"] = header.k
        self.info["model"] = header.model
        self._aec_data = data
        self.tile = []

    def load(self):
        if self._im is None and getattr(self, "_aec_data", None) is not None:
            from .api import decompress

            self.im = decompress(self._aec_data).im
            self._aec_data = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename) -> None:
    from .api import DEFAULT_QUALITY, compress

    info = im.encoderinfo
    fp.write(compress(im, quality=info.get("quality", DEFAULT_QUALITY), k=info.get("k"),
                      drop_alpha=info.get("drop_alpha", False), reduce_depth=info.get("reduce_depth", False)))


Image.register_open(AecImageFile.format, AecImageFile, _accept)
Image.register_save(AecImageFile.format, _save)
Image.register_extension(AecImageFile.format, ".aec")
Image.register_mime(AecImageFile.format, "image/x-aec")
