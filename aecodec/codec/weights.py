"""Model weights: safetensors files (never pickle), their digests, and the shipped model zoo.

An exported weights file holds the network (convolutions in float16, everything else float32),
the entropy models' quantized CDF tables, and metadata: model name, architecture and the default
k per quality. Its SHA-256 is the model's identity: the bitstream records the first 8 bytes, and a
shipped file whose digest differs from the manifest is refused as tampered.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from ..errors import AecError
from .config import ModelConfig
from .zoo import DEFAULT_MODEL, shipped_model_bytes, shipped_models  # noqa: F401 (re-exported)
DIGEST_BYTES = 8
_FP16_SUFFIXES = (".weight", ".bias", ".ctx_weight", ".ctx_bias")  # conv kernels and biases; GDN/entropy/gain params stay float32


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _is_half_safe(name: str) -> bool:
    return name.startswith(("g_a.", "g_s.", "h_a.", "h_s.", "context.")) and name.endswith(_FP16_SUFFIXES)


def export_bytes(model, name: str, default_k: list[int], extra: dict | None = None) -> bytes:
    """Serialize a trained AecModel (CDF tables refreshed) to the shipped safetensors format."""
    from safetensors.torch import save

    model = model.cpu().eval()
    model.update(force=True)
    tensors = {}
    for key, t in model.state_dict().items():
        t = t.detach().contiguous()
        if t.is_floating_point():
            t = t.half() if _is_half_safe(key) else t.float()
        tensors[key] = t
    meta = {
        "format": "aecodec-weights-1",
        "name": name,
        "config": json.dumps(model.config.to_dict()),
        "default_k": json.dumps([int(k) for k in default_k]),
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return save(tensors, metadata=meta)


def read_metadata(data: bytes) -> dict:
    # safetensors layout: u64 little-endian header length, then a JSON header with "__metadata__".
    if len(data) < 8:
        raise AecError("weights file is truncated")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8 or n > 100_000_000:
        raise AecError("weights file is not a valid safetensors file")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        raise AecError("weights file is not a valid safetensors file") from None
    return header.get("__metadata__", {}) or {}


def parse_metadata(data: bytes) -> tuple[str, ModelConfig, list[int]]:
    """(name, architecture, default k per quality) of a weights file, validated."""
    meta = read_metadata(data)
    if meta.get("format") != "aecodec-weights-1":
        raise AecError("not an aecodec weights file (missing format tag)")
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        default_k = [int(k) for k in json.loads(meta["default_k"])]
    except (KeyError, ValueError, TypeError) as e:
        raise AecError(f"weights file is malformed: {e}") from None
    if len(default_k) != config.qualities or not all(1 <= k <= config.M for k in default_k):
        raise AecError("weights file has an invalid default_k table")
    return meta.get("name", "unnamed"), config, default_k


class LoadedModel:
    """A model ready for coding: network, default k per quality, identity (name, digest)."""

    def __init__(self, model: AecModel, name: str, file_digest: bytes, default_k: list[int]):
        self.model = model
        self.name = name
        self.digest = file_digest
        self.default_k = default_k
        self.lock = threading.RLock()  # torch modules are not safe to run from several threads
        self.device_models = {}  # torch device -> copy of the model there (torch_engine)
        self._numpy = None

    @property
    def short_digest(self) -> bytes:
        return self.digest[:DIGEST_BYTES]

    def numpy_model(self):
        """The same weights for the numpy engine (built once)."""
        with self.lock:
            if self._numpy is None:
                from .numpy_model import from_torch

                self._numpy = from_torch(self)
            return self._numpy


def read_weights(data: bytes, expected_sha256: str | None, load):
    """A weights file's (tensors, name, architecture, default k, SHA-256), verified; `load` is
    safetensors' numpy or torch loader (the numpy engine never imports torch)."""
    from safetensors import SafetensorError

    file_digest = digest(data)
    if expected_sha256 is not None and file_digest.hex() != expected_sha256:
        raise AecError("weights file does not match its recorded SHA-256 digest (tampered or damaged); "
                       "reinstall aecodec")
    name, config, default_k = parse_metadata(data)
    try:
        tensors = load(data)
    except (ValueError, SafetensorError) as e:
        raise AecError(f"weights file is malformed: {e}") from None
    return tensors, name, config, default_k, file_digest


def model_from_bytes(data: bytes, expected_sha256: str | None = None) -> LoadedModel:
    import torch
    from safetensors.torch import load

    from .model import AecModel

    tensors, name, config, default_k, file_digest = read_weights(data, expected_sha256, load)
    model = AecModel(config)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as e:
        raise AecError(f"weights file does not fit the model: {str(e).splitlines()[0]}") from None
    model = model.eval().to(memory_format=torch.channels_last)  # the faster layout for CPU convolutions
    return LoadedModel(model, name, file_digest, default_k)


_cache: dict[tuple[str, str], object] = {}
_cache_lock = threading.Lock()


def load_shipped(name: str, from_bytes, kind: str):
    """A shipped model by name, read once per kind (torch or numpy) and cached, digest verified."""
    with _cache_lock:
        if (kind, name) not in _cache:
            data, sha = shipped_model_bytes(name)
            _cache[kind, name] = from_bytes(data, expected_sha256=sha)
        return _cache[kind, name]


def load_model(name: str = DEFAULT_MODEL) -> LoadedModel:
    """Load (once, then cached) a shipped model by name for the torch engine and training."""
    return load_shipped(name, model_from_bytes, "torch")


def load_model_file(path: str | Path) -> LoadedModel:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AecError(f"cannot read weights {path}: {e.strerror}") from None
    return model_from_bytes(data)
