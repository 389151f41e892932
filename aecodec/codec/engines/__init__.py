"""Engines: what runs the transforms of a model (weights.Weights) on some hardware, behind one
interface (base.Engine). The coder (coder.py) drives any of them the same way.

    numpy     the CPU, no torch import (a CLI call starts in a fraction of a second); the default there
    openvino  the CPU's bf16 units through OpenVINO (optional: pip install openvino; AECODEC_ENGINE=openvino)
    torch     a CUDA GPU, or the CPU while the encoder refines latents by gradient descent (effort > 0)

An engine named X lives in `X_engine.py` here and sets `ENGINE` to its class: adding a backend is
that one file (and its tests); `create("X")` finds it. Engines are built once per weights,
kind, device and options, and cached: this is the one owner of models on devices.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import threading
import weakref

from ...errors import AecError
from ..weights import Weights
from ..zoo import DEFAULT_MODEL
from .devices import device_name, resolve_device  # noqa: F401 (re-exported)

ENGINE_ENV = "AECODEC_ENGINE"  # the CPU engine for device "auto" (default numpy)
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


def for_device(device=None, effort: int = 0, model: str | Weights | None = None):
    """The engine to code with on `device`: on the CPU numpy (or, for device "auto", the engine
    $AECODEC_ENGINE names, e.g. openvino; an explicit "cpu" is always the portable float32 numpy
    engine), torch on a GPU or for effort > 0 (its gradient descent needs autograd); on the CPU the
    torch engine then shows pixels as the numpy engine decodes them, so that refinement judges what
    users will see."""
    dev = device_name(device)
    if dev == "cpu" and not effort:
        return create(os.environ.get(ENGINE_ENV) or "numpy" if device in (None, "auto") else "numpy", model)
    return create("torch", model, device=dev, **({"viewer": create("numpy", model)} if dev == "cpu" else {}))
