"""CompressAI's rANS coder (compressai.ans, a C++ extension) without importing the rest of
CompressAI or torch.

`import compressai.ans` first runs compressai/__init__.py, which imports every subpackage (and
with them torch, torch_geometric, scipy.stats: seconds). When CompressAI has not been imported yet,
a bare `compressai` package is registered instead (same directory, so every submodule still
imports from it, plus the three functions compressai.entropy_models asks the package for).
"""
from __future__ import annotations

import importlib.util
import sys
import types


def _only_ans(name: str) -> None:
    if name != "ans":
        raise ValueError(f'entropy coder "{name}" is not available (aecodec uses "ans")')


def bare_compressai_package() -> None:
    if "compressai" in sys.modules:
        return
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("compressai is not installed")
    pkg = types.ModuleType("compressai")
    pkg.__spec__, pkg.__file__ = spec, spec.origin
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__package__ = "compressai"
    # what compressai/__init__.py would define and entropy_models reads (the rANS coder only)
    pkg.available_entropy_coders = lambda: ["ans"]
    pkg.get_entropy_coder = lambda: "ans"
    pkg.set_entropy_coder = _only_ans
    sys.modules["compressai"] = pkg


bare_compressai_package()
from compressai.ans import RansDecoder, RansEncoder  # noqa: E402

__all__ = ["RansDecoder", "RansEncoder", "bare_compressai_package"]
