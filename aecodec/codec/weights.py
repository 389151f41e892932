"""Model weights: safetensors files (never pickle), their digests, and the shipped model zoo.

An exported weights file holds the network (convolutions in float16, everything else float32),
the entropy models' quantized CDF tables (since 0.17 each model's rows cut to their lengths and
concatenated, `<model>._quantized_cdf_rows`; before, padded to the longest), and metadata: model
name, architecture and the default k per quality. Its SHA-256 is the model's identity: the bitstream records the first 8 bytes, and a
shipped file whose digest differs from the manifest is refused as tampered.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from ..errors import AecError
from .spec import ModelConfig
from .zoo import DEFAULT_MODEL, shipped_model_bytes

DIGEST_BYTES = 8
_FP16_SUFFIXES = (".weight", ".bias", ".ctx_weight", ".ctx_bias")  # conv kernels and biases; GDN/entropy/gain params stay float32


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _is_half_safe(name: str, config: ModelConfig) -> bool:
    networks = ("g_a", "g_s", "h_a", "h_s") + config.family_impl.modules
    return name.startswith(tuple(f"{n}." for n in networks)) and name.endswith(_FP16_SUFFIXES)


def export_bytes(model, name: str, default_k: list[int], extra: dict | None = None) -> bytes:
    """Serialize a trained AecModel (CDF tables refreshed) to the shipped safetensors format."""
    from safetensors.torch import save

    model = model.cpu().eval()
    model.update(force=True)
    tensors = {}
    for key, t in model.state_dict().items():
        t = t.detach().contiguous()
        if t.is_floating_point():
            t = t.half() if _is_half_safe(key, model.config) else t.float()
        tensors[key] = t
    pack_tables(tensors)
    meta = {
        "format": "aecodec-weights-1",
        "name": name,
        "config": json.dumps(model.config.to_dict()),
        "default_k": json.dumps([int(k) for k in default_k]),
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return save(tensors, metadata=meta)


_PACKED = "._quantized_cdf_rows"


def pack_tables(tensors: dict) -> None:
    """Replace each entropy model's padded CDF table (torch) by its rows cut to their lengths, one
    after another (256 scales padded to 3,133 entries would be 3.2 MB; cut, 0.4 MB)."""
    import torch

    for key in [k for k in tensors if k.endswith("._quantized_cdf")]:
        prefix = key[: -len("._quantized_cdf")]
        cdf, lengths = tensors.pop(key), tensors[f"{prefix}._cdf_length"].reshape(-1).tolist()
        tensors[prefix + _PACKED] = torch.cat([row[:n] for row, n in zip(cdf, lengths)]).contiguous()


def unpack_tables(tensors: dict) -> None:
    """pack_tables undone: the padded (rows, longest) int32 table that CompressAI's entropy models
    hold. Files from before 0.17 hold it already."""
    import numpy as np

    for key in [k for k in tensors if k.endswith(_PACKED)]:
        prefix = key[: -len(_PACKED)]
        flat, lengths = tensors.pop(key), tensors.get(f"{prefix}._cdf_length")
        if lengths is None or flat.ndim != 1 or lengths.size == 0:
            raise AecError(f"weights file is malformed: {prefix}'s CDF table")
        lengths = lengths.reshape(-1).astype(np.int64)
        if lengths.min() < 1 or int(lengths.sum()) != flat.size or lengths.size * int(lengths.max()) > 2 ** 24:
            raise AecError(f"weights file is malformed: {prefix}'s CDF lengths do not fit its table")
        table = np.zeros((lengths.size, int(lengths.max())), np.int32)
        table[np.arange(table.shape[1]) < lengths[:, None]] = flat  # row-major: each row's first n
        tensors[f"{prefix}._quantized_cdf"] = table


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


class Weights:
    """A model's weights as numpy arrays, with its identity (name, SHA-256 of the file), its
    architecture and its default k per quality: what every engine builds its program from.
    Torch-free. Its entropy coder (the family's, float64) is built once, on first use.

    Engines keep their own arrangement of the weights, so once they are built the arrays are
    needed only to build another engine: weights that can be read again (shipped ones) let them
    go (`release`), which keeps a CLI call's memory at what its engine holds."""

    def __init__(self, tensors: dict, config: ModelConfig, name: str, file_digest: bytes, default_k: list[int],
                 reread=None):
        """reread: () -> the file's bytes again, for weights whose arrays may be released."""
        self._tensors, self._reread = tensors, reread
        self.config, self.name, self.digest, self.default_k = config, name, file_digest, default_k
        self._coder = None
        self._lock = threading.Lock()

    @property
    def tensors(self) -> dict:
        with self._lock:
            if self._tensors is None:
                self._tensors = Weights.from_bytes(self._reread(), self.digest.hex())._tensors
            return self._tensors

    def release(self) -> None:
        """Let the arrays go if they can be read again (engines built from them keep their own)."""
        with self._lock:
            if self._reread is not None:
                self._tensors = None

    def coder(self):
        """The entropy coder of these weights (families/), built once."""
        if self._coder is None:
            tensors = self.tensors
            with self._lock:
                if self._coder is None:
                    try:
                        self._coder = self.config.family_impl.coder(tensors, self.config)
                    except (KeyError, ValueError) as e:
                        raise AecError(f"weights file does not fit the model: {e}") from None
        return self._coder

    @classmethod
    def from_bytes(cls, data: bytes, expected_sha256: str | None = None) -> "Weights":
        """A weights file's contents, verified (digest when given, metadata, tensors)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load

        file_digest = digest(data)
        if expected_sha256 is not None and file_digest.hex() != expected_sha256:
            raise AecError("weights file does not match its recorded SHA-256 digest (tampered or damaged); "
                           "reinstall aecodec")
        name, config, default_k = parse_metadata(data)
        try:
            tensors = load(data)
        except (ValueError, SafetensorError) as e:
            raise AecError(f"weights file is malformed: {e}") from None
        unpack_tables(tensors)
        return cls(tensors, config, name, file_digest, default_k)

    @classmethod
    def from_file(cls, path: str | Path) -> "Weights":
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise AecError(f"cannot read weights {path}: {e.strerror}") from None
        return cls.from_bytes(data)

    @classmethod
    def shipped(cls, name: str = DEFAULT_MODEL) -> "Weights":
        """A shipped model by name, read once and cached, its digest verified."""
        with _cache_lock:
            if name not in _cache:
                data, sha = shipped_model_bytes(name)
                weights = cls.from_bytes(data, expected_sha256=sha)
                weights._reread = lambda: shipped_model_bytes(name)[0]
                _cache[name] = weights
            return _cache[name]

    @classmethod
    def from_model(cls, model, name: str = "validation", default_k: list[int] | None = None) -> "Weights":
        """An in-memory torch model's weights (a training run's, say), with a null digest. Its
        CDF tables must be current (AecModel.update)."""
        return cls(model.coding_state(), model.config, name, bytes(32), default_k or [model.config.M] * model.config.qualities)


_cache: dict[str, Weights] = {}
_cache_lock = threading.Lock()
