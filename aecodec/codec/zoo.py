"""The models that ship inside the package (aecodec/weights/manifest.json): names, files, digests.

Torch-free, so that the CLI can refuse a file made by an unknown model before loading anything.
"""
from __future__ import annotations

import json
from importlib import resources

from ..errors import AecError

DEFAULT_MODEL = "aec-cb-128-192-r8"


def shipped_models() -> dict:
    """name -> {"file": ..., "sha256": ...} for the weights inside the package."""
    return json.loads(resources.files("aecodec.weights").joinpath("manifest.json").read_text())["models"]


def shipped_model_bytes(name: str) -> tuple[bytes, str]:
    """(file contents, recorded SHA-256 hex) of a shipped model."""
    models = shipped_models()
    if name not in models:
        raise AecError(f"unknown model {name!r}; this aecodec ships {', '.join(sorted(models))}")
    entry = models[name]
    return resources.files("aecodec.weights").joinpath(entry["file"]).read_bytes(), entry["sha256"]


def check_known(model: str) -> None:
    """Refuse a file made by a model this aecodec does not ship."""
    models = shipped_models()
    if model not in models:
        raise AecError(f"file was made by model {model!r}, which this aecodec does not have "
                       f"(it has {', '.join(sorted(models))})")
