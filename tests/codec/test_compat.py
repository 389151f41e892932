"""Files that aecodec wrote keep decoding: small files written by e800093 (`-r7`, `-r8`: before
the network became a spec) and by 0.15.0 (`-r9`: integer entropy networks), listed with what they
decoded to in tests/data/compat/golden.json, against today's coder.

- everywhere: each file's entropy decoding gives the same latents (the entropy parameters agree
  on any device) and pixels within one level of what the writer decoded (g_s in float32);
- on the machine the files were made on (same CPU, core count, numpy and torch): every engine
  encodes the same crops to the very same bytes and decodes them to the very same pixels.
`python tools/golden.py` makes the same comparison on all of Kodak.
"""
import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aecodec.bench.metrics import psnr
from aecodec.codec import bitstream, coder, engines, numpy_ops
from aecodec.codec.zoo import shipped_models

DATA = Path(__file__).resolve().parents[1] / "data" / "compat"
GOLDEN = json.loads((DATA / "golden.json").read_text())
CASES = [name for name in GOLDEN["files"] if bitstream.parse((DATA / name).read_bytes())[0].model in shipped_models()]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    return f"{cpu}, {numpy_ops.WORKERS} cores, numpy {np.__version__}, torch {torch.__version__.split('+')[0]}"


def _sha(b) -> str:
    return hashlib.sha256(bytes(b)).hexdigest()[:16]


def _engine(kind: str, model: str):
    return engines.create(kind, model, **({"device": "cpu"} if kind == "torch" else {}))


def _crop(box) -> np.ndarray:
    with resources.as_file(resources.files("aecodec.data").joinpath("kodim23.png")) as p:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB").crop(box))


@pytest.mark.parametrize("name", CASES)
def test_old_files_decode_to_the_same_latents_and_pixels_within_a_level(name):
    data = (DATA / name).read_bytes()
    want = GOLDEN["files"][name]
    header, z_bytes, y_bytes = bitstream.parse(data)
    for kind in ("numpy", "torch"):
        engine = _engine(kind, header.model)
        with engine.session():
            y_hat = engine.decode_latents(y_bytes, z_bytes, (-(-header.height // 64), -(-header.width // 64)))
        assert _sha(np.ascontiguousarray(engine.to_chw(y_hat).transpose(1, 2, 0)).tobytes()) == want["latents"]
        pixels = coder.decode(data, engine=engine)[0]
        if _sha(pixels) != want[f"{kind}_pixels"]:  # another machine: g_s's float32 rounding may differ
            assert machine() != GOLDEN["machine"], f"{name}: {kind} pixels changed on the machine that made them"
            reference = coder.decode(data, engine=_engine("torch" if kind == "numpy" else "numpy", header.model))[0]
            assert np.abs(pixels.astype(int) - reference).max() <= 1


@pytest.mark.parametrize("name", CASES)
def test_on_the_same_machine_every_engine_codes_the_same_bytes_and_pixels(name):
    if machine() != GOLDEN["machine"]:
        pytest.skip(f"the files were made on {GOLDEN['machine']}; this is {machine()}")
    model, crop, quality = name.removesuffix(".aec").rsplit("-", 2)
    rgb = _crop(GOLDEN["crops_of_kodim23"][crop])
    want = GOLDEN["files"][name]
    for kind in ("numpy", "torch"):
        engine = _engine(kind, model)
        data = coder.encode(rgb, "RGB", float(quality[1:]), engine=engine)
        assert _sha(data) == want[f"{kind}_encode"], kind
        assert _sha(coder.decode((DATA / name).read_bytes(), engine=engine)[0]) == want[f"{kind}_pixels"], kind


@pytest.mark.parametrize("name", CASES)
def test_the_openvino_engine_decodes_every_shipped_models_files_within_its_tolerance(name):
    """bf16 (or float32 where the CPU has no bf16) g_s: the same latents, pixels within the
    tolerance docs/performance.md states against the float32 engine (test_openvino_engine.py)."""
    pytest.importorskip("openvino")
    from test_openvino_engine import BF16_MAX_DB_LOSS, BF16_MAX_DIFFERING, BF16_MAX_LEVELS

    data = (DATA / name).read_bytes()
    header, z_bytes, y_bytes = bitstream.parse(data)
    shape = (-(-header.height // 64), -(-header.width // 64))
    numpy_engine, ov = _engine("numpy", header.model), _engine("openvino", header.model)
    y_hat = ov.decode_latents(y_bytes, z_bytes, shape)
    assert _sha(np.ascontiguousarray(ov.to_chw(y_hat).transpose(1, 2, 0)).tobytes()) == GOLDEN["files"][name]["latents"]
    reference, pixels = coder.decode(data, engine=numpy_engine)[0], coder.decode(data, engine=ov)[0]
    diff = np.abs(pixels.astype(int) - reference)
    assert diff.max() <= BF16_MAX_LEVELS and (diff > 0).mean() < BF16_MAX_DIFFERING
    model, crop, _ = name.removesuffix(".aec").rsplit("-", 2)
    rgb = _crop(GOLDEN["crops_of_kodim23"][crop])
    assert psnr(rgb, pixels) > psnr(rgb, reference) - BF16_MAX_DB_LOSS
