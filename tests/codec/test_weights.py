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


def test_cdf_tables_travel_packed_and_load_as_the_model_holds_them():
    """Exports store each CDF table's rows cut to their lengths; loading restores the padded table
    CompressAI's entropy models hold, entry for entry (the shipped files before 0.17 hold that
    padded table themselves: test_compat decodes them)."""
    import numpy as np
    import torch

    from aecodec.codec.model import SCALES_LEVELS, AecModel
    from aecodec.codec.spec import ModelConfig
    from aecodec.codec.weights import export_bytes

    torch.manual_seed(1)
    model = AecModel(ModelConfig(N=16, M=24))
    data = export_bytes(model, "tiny", [12] * 8)
    stored = load(data)
    assert not any(k.endswith("._quantized_cdf") for k in stored)
    assert stored["gaussian_conditional._quantized_cdf_rows"].size == stored["gaussian_conditional._cdf_length"].sum()
    weights = Weights.from_bytes(data)
    for prefix in ("entropy_bottleneck", "gaussian_conditional"):
        held = getattr(model, prefix)._quantized_cdf.numpy()
        np.testing.assert_array_equal(weights.tensors[f"{prefix}._quantized_cdf"], held)
    assert weights.tensors["gaussian_conditional.scale_table"].shape == (SCALES_LEVELS,)
    assert AecModel.from_weights(weights).gaussian_conditional._quantized_cdf.shape == held.shape
    meta = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    short = dict(stored, **{"gaussian_conditional._quantized_cdf_rows": stored["gaussian_conditional._quantized_cdf_rows"][:-1]})
    with pytest.raises(AecError, match="CDF lengths"):
        Weights.from_bytes(save(short, metadata=meta))
    lengths = np.array([1] * 100 + [2 ** 18], np.int32)  # one absurd row: 101 x 262,144 padded
    absurd = dict(stored, **{"gaussian_conditional._cdf_length": lengths,
                             "gaussian_conditional._quantized_cdf_rows": np.zeros(lengths.sum(), np.int32)})
    with pytest.raises(AecError, match="CDF lengths"):  # refused before allocating the padded table
        Weights.from_bytes(save(absurd, metadata=meta))
