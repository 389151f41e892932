"""Engines: what runs the transforms of a model (weights.Weights) on some hardware, behind one
interface (base.Engine). The coder (coder.py) drives any of them the same way.

    numpy     the CPU, float32, no torch import (a CLI call starts in a fraction of a second)
    openvino  the CPU's bf16 units through OpenVINO (optional: pip install openvino); chosen for
              device "auto" on CPUs with native bf16 when a job is large enough (`cpu_engine`)
    torch     a CUDA GPU, or the CPU while the encoder refines latents by gradient descent (effort > 0)

An engine named X lives in `X_engine.py` here and sets `ENGINE` to its class: adding a backend is
that one file (and its tests); `create("X")` finds it. Engines are built once per weights,
kind, device and options, and cached: this is the one owner of models on devices.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import threading
import weakref

from ...errors import AecError
from ..weights import Weights
from ..zoo import DEFAULT_MODEL
from .devices import device_name, native_bf16, resolve_device  # noqa: F401 (re-exported)

ENGINE_ENV = "AECODEC_ENGINE"  # forces the CPU engine for device "auto" (numpy, openvino)
# Below these pixel counts a job runs faster on the numpy engine than OpenVINO's start-up (import
# and graph compilation, ~0.15-0.3 s once per process) repays; the break-even of one-shot CLI calls
# on a 2-core Zen 4 (docs/performance.md, "Which engine codes a CPU job"; 0.17.1's g_a): decoding
# ~0.6 Mpx, encoding ~0.2-0.4 Mpx (g_s's first inference costs OpenVINO more than g_a's).
FAST_CPU_MIN_PIXELS = {"encode": 300_000, "decode": 600_000}
_engines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # weights -> {(kind, device, options): engine}
_lock = threading.Lock()


def available() -> list[str]:
    """The engines this aecodec has (whether their libraries are installed or not)."""
    return sorted(m.name[:-len("_engine")] for m in pkgutil.iter_modules(__path__) if m.name.endswith("_engine"))


def create(kind: str = "numpy", model: str | Weights | None = None, device=None, **options):
    """The `kind` engine for a model: a shipped model's name (default: DEFAULT_MODEL) or Weights.
    device: for engines that have several (torch: "cpu", "cuda", "cuda:1"); options: the engine's own."""
    weights = model if isinstance(model, Weights) else Weights.shipped(model or DEFAULT_MODEL)
    if kind not in available():
        raise AecError(f"unknown engine {kind!r}; this aecodec has {', '.join(available())}")
    key = (kind, None if device is None else str(device), tuple(sorted(options.items())))
    with _lock:
        engine = _engines.setdefault(weights, {}).get(key)
    if engine is None:
        try:
            cls = importlib.import_module(f".{kind}_engine", __name__).ENGINE
            engine = cls(weights, device=device, **options)
        except ModuleNotFoundError as e:  # a light install without torch, an optional backend absent
            raise AecError(f"the {kind} engine needs {e.name}, which is not installed (pip install {e.name})") from None
        weights.release()  # the engine holds its own arrangement of them
        with _lock:
            engine = _engines[weights].setdefault(key, engine)
    return engine


def cpu_engine(pixels: int | None = None, decoding: bool = False) -> str:
    """The engine a CPU job runs on for device "auto": the one $AECODEC_ENGINE names; else openvino
    (bf16) where it is installed and the CPU multiplies bf16 natively, for a job of at least
    FAST_CPU_MIN_PIXELS (pixels: the job's, one image or a whole batch; None: a caller that codes
    much, e.g. a benchmark); else numpy. Each engine gives the same pixels every time; across
    engines they differ within the tolerance docs/performance.md states."""
    forced = os.environ.get(ENGINE_ENV)
    if forced:
        return forced
    if pixels is not None and pixels < FAST_CPU_MIN_PIXELS["decode" if decoding else "encode"]:
        return "numpy"
    return "openvino" if native_bf16() and importlib.util.find_spec("openvino") is not None else "numpy"


def for_device(device=None, effort: int = 0, model: str | Weights | None = None, pixels: int | None = None,
               decoding: bool = False):
    """The engine to code with on `device`: on the CPU `cpu_engine`'s choice for device "auto"
    (an explicit "cpu" is always the portable float32 numpy engine), torch on a GPU or for effort
    > 0 (its gradient descent needs autograd); on the CPU the torch engine then shows pixels as the
    numpy engine decodes them, so that refinement judges what users will see."""
    dev = device_name(device)
    if dev == "cpu" and not effort:
        if device not in (None, "auto"):
            return create("numpy", model)
        kind = cpu_engine(pixels, decoding)
        if kind == "numpy" or os.environ.get(ENGINE_ENV):  # a forced engine's errors are the user's to see
            return create(kind, model)
        try:
            engine = create(kind, model)
            engine.prepare("g_s" if decoding else "g_a")
            return engine
        except (AecError, ImportError, OSError, RuntimeError):  # a broken optional install: numpy still codes
            return create("numpy", model)
    return create("torch", model, device=dev, **({"viewer": create("numpy", model)} if dev == "cpu" else {}))
