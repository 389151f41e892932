"""aecodec: a learned image codec.

    import aecodec
    data = aecodec.compress("photo.png", quality=4)   # -> bytes
    img = aecodec.decompress(data)                     # -> PIL.Image.Image

Importing aecodec also registers a Pillow plugin, so Image.open("x.aec") and img.save("x.aec") work.
"""
from ._version import __version__

import os as _os

# OpenBLAS (numpy's BLAS, which codes on the CPU) keeps idle worker threads spinning for ~2^28
# cycles after each product by default; between the many products of a transform that spin
# slows the codec's own single-threaded steps by up to 1.7x on a 2-core machine (measured,
# docs/performance.md). It is read once, when numpy loads; a value the user set is kept.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "10")

from .errors import AecError  # noqa: E402

__all__ = ["AecError", "compress", "decompress", "read_header", "__version__"]


def __getattr__(name):
    # The API pulls in numpy and the codec (torch too, for GPUs and effort); keep `import aecodec` cheap.
    if name in ("compress", "decompress", "read_header"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)

from . import pillow_plugin  # noqa: E402,F401  (registers .aec with Pillow)
