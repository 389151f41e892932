"""aecodec: a learned image codec.

    import aecodec
    data = aecodec.compress("photo.png", quality=4)   # -> bytes
    img = aecodec.decompress(data)                     # -> PIL.Image.Image

Importing aecodec also registers a Pillow plugin, so Image.open("x.aec") and img.save("x.aec") work.
"""
__version__ = "0.1.0"

from .errors import AecError  # noqa: E402

__all__ = ["AecError", "compress", "decompress", "read_header", "__version__"]


def __getattr__(name):
    # The API pulls in torch; keep `import aecodec` cheap until it is used.
    if name in ("compress", "decompress", "read_header"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)

from . import pillow_plugin  # noqa: E402,F401  (registers .aec with Pillow)
