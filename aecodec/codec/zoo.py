"""The models that ship inside the package (aecodec/weights/manifest.json: names, files, digests)
and every model any release shipped (releases.json: which release shipped it and the last one
that decodes its files), so that a file of a retired model names the release to install.

Torch-free, so that the CLI can refuse a file made by an unknown model before loading anything.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from .._version import __version__
from ..errors import AecError

DEFAULT_MODEL = "aec-cb-128-192-r11"


def shipped_models() -> dict:
    """name -> {"file": ..., "sha256": ...} for the weights inside the package."""
    return json.loads(resources.files("aecodec.weights").joinpath("manifest.json").read_text())["models"]


@lru_cache(maxsize=1)
def history() -> dict:
    """releases.json: {"releases": [{version, tag, commit, date, default_model, models}],
    "models": {name: {sha256, shipped_in, last_release (None: still shipped)}}}."""
    return json.loads(resources.files("aecodec.weights").joinpath("releases.json").read_text())


def shipped_model_bytes(name: str) -> tuple[bytes, str]:
    """(file contents, recorded SHA-256 hex) of a shipped model."""
    models = shipped_models()
    if name not in models:
        raise AecError(f"unknown model {name!r}; this aecodec ships {', '.join(sorted(models))}")
    entry = models[name]
    return resources.files("aecodec.weights").joinpath(entry["file"]).read_bytes(), entry["sha256"]


def _install_hint(version: str) -> str:
    release = next(r for r in history()["releases"] if r["version"] == version)
    commit = f", commit {release['commit'][:7]}" if release.get("commit") else ""
    return (f"aecodec {version} (git tag {release['tag']}{commit}) decodes it: install that release, e.g. "
            f"`git checkout {release['tag']} && pip install .` in the aecodec repository")


def check_known(model: str) -> None:
    """Refuse a file made by a model this aecodec does not ship, naming the release that decodes it."""
    models = shipped_models()
    if model in models:
        return
    old = history()["models"].get(model)
    if old is not None and old["last_release"] is not None:
        raise AecError(f"file was made by model {model!r}, which aecodec {__version__} no longer ships; "
                       + _install_hint(old["last_release"]))
    raise AecError(f"file was made by model {model!r}, which no aecodec release has shipped "
                   f"(this aecodec {__version__} has {', '.join(sorted(models))})")


def other_weights_message(model: str, digest: bytes, installed: bytes) -> str:
    """The refusal of a file whose model name is shipped but whose weights digest is another's."""
    for name, entry in history()["models"].items():
        if bytes.fromhex(entry["sha256"])[:len(digest)] == digest:
            return (f"file was made by the weights of {name!r}, not those {model!r} has here; "
                    + _install_hint(entry["last_release"] or entry["shipped_in"]))
    return (f"file was made by other weights of model {model!r} (digest {digest.hex()}, installed "
            f"{installed.hex()}), which no aecodec release has shipped: decode it with the aecodec that made it")
