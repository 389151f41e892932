"""Benchmarks: the rate-distortion harness (`aecodec bench`), the classic codecs it compares
with, metrics and plots, and timings of what users wait for."""
from __future__ import annotations

import os

KODAK_ENV = "AECODEC_KODAK"  # the Kodak folder when a benchmark is not given one


def kodak_folder(given: str | None) -> str:
    """--kodak, else $AECODEC_KODAK; a clear error without either."""
    folder = given or os.environ.get(KODAK_ENV)
    if not folder:
        raise SystemExit(f"give the Kodak folder: --kodak DIR, or set {KODAK_ENV}")
    return folder


def require_extra() -> None:
    """`aecodec bench` needs what the `bench` extra installs (`aecodec compress` needs none of it)."""
    import importlib.util

    from ..errors import AecError

    missing = [m for m in ("matplotlib", "pytorch_msssim", "scipy", "torch") if importlib.util.find_spec(m) is None]
    if missing:
        raise AecError(f"aecodec bench needs {', '.join(missing)}: pip install 'aecodec[bench]'")
