"""Weights files (codec/weights.py): digests, validation, and weights that do not fit their
config refused by every engine with one clear error."""
import json

import pytest
from safetensors.numpy import load, save

from aecodec.codec import engines
from aecodec.codec.weights import DEFAULT_MODEL, Weights, shipped_model_bytes
from aecodec.errors import AecError


def test_tampered_weights_are_refused():
    data, sha = shipped_model_bytes(DEFAULT_MODEL)
    assert Weights.from_bytes(data, expected_sha256=sha).name == DEFAULT_MODEL
    tampered = bytearray(data)
    tampered[-100] ^= 1
    with pytest.raises(AecError, match="tampered"):
        Weights.from_bytes(bytes(tampered), expected_sha256=sha)
    with pytest.raises(AecError):
        Weights.from_bytes(b"\x00" * 64)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_weights_that_do_not_fit_their_config_are_refused(kind):
    data, _ = shipped_model_bytes(DEFAULT_MODEL)
    tensors = load(data)
    meta = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    tensors["g_s.2.weight"] = tensors["g_s.2.weight"][:, :64]  # one layer narrower than its config
    broken = Weights.from_bytes(save(tensors, metadata=meta))
    with pytest.raises(AecError, match="does not fit the model"):
        engines.create(kind, broken, **({"device": "cpu"} if kind == "torch" else {}))
