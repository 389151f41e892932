"""The engines behind one interface: a file from either engine decodes with the other to the same
latents (one entropy coder) and to pixels within one level on rare values; each engine is
deterministic; engines are found by name, built once per model, and report what they lack.
Where CUDA exists, files cross devices the same way (docs/performance.md states the tolerance)."""
import numpy as np
import pytest
import torch

from aecodec.codec import coder, engines, numpy_ops as ops
from aecodec.errors import AecError

MAX_ABS_DIFF = 1          # pixel levels across engines and devices
MAX_DIFFERING = 0.001     # fraction of pixel values


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).contiguous().numpy()


def test_engines_are_found_by_name_and_built_once():
    assert {"numpy", "torch"} <= set(engines.available())
    a = engines.create("numpy")
    assert engines.create("numpy") is a and a.kind == "numpy"
    assert engines.create("torch", device="cpu").kind == "torch"
    with pytest.raises(AecError, match="unknown engine 'onnx'"):
        engines.create("onnx")
    assert engines.for_device("cpu") is a  # the CPU codes with numpy unless it refines
    assert engines.for_device("cpu", effort=1).kind == "torch"


def test_files_cross_engines(kodak_crop):
    """A file from either engine decodes with the other to the same latents (one entropy coder)
    and to pixels within one level on rare values; the numpy engine is deterministic."""
    img = np.asarray(kodak_crop.resize((200, 136)))
    numpy_engine = engines.create("numpy")
    torch_engine = engines.create("torch", device="cpu")
    assert numpy_engine.kind == "numpy"
    for quality in (1, 4.5, 8):
        files = {}
        for engine in (numpy_engine, torch_engine):
            with engine.session():
                files[engine.kind] = coder._Encoder(img, "RGB", engine).code(quality, None)
        for data in files.values():
            header, z_bytes, y_bytes = coder.bitstream.parse(data)
            shape = (-(-header.height // 64), -(-header.width // 64))
            with torch.inference_mode():
                y_np = numpy_engine.decode_latents(y_bytes, z_bytes, shape)
                y_t = torch_engine.decode_latents(y_bytes, z_bytes, shape)
                assert np.array_equal(y_np, _hwc(y_t))
                a = numpy_engine.pixels(y_np, quality, header.height, header.width)
                b = torch_engine.pixels(y_t, quality, header.height, header.width)
            diff = np.abs(a.astype(int) - b)
            assert diff.max() <= MAX_ABS_DIFF and (diff > 0).mean() < MAX_DIFFERING
            assert np.array_equal(a, numpy_engine.pixels(y_np, quality, header.height, header.width))
        # the engines' analyses differ by float rounding only: the files are (nearly) the same size
        assert abs(len(files["numpy"]) - len(files["torch"])) <= 0.01 * len(files["torch"]) + 8


def test_the_shipped_model_decodes_the_same_on_one_core_and_several(kodak_crop, monkeypatch):
    img = np.asarray(kodak_crop.resize((200, 136)))
    data = coder.encode(img, "RGB", 5)
    monkeypatch.setattr(ops, "WORKERS", 1)
    assert coder.encode(img, "RGB", 5) == data
    single = coder.decode(data)[0]
    monkeypatch.setattr(ops, "WORKERS", 2)
    assert np.array_equal(coder.decode(data)[0], single)


@pytest.mark.cuda
@pytest.mark.parametrize("quality", [1, 4, 8])
def test_files_cross_devices_within_tolerance(kodak_crop, quality):
    """A GPU-encoded file decodes on the CPU and vice versa: the entropy parameters are float64, so
    the latents are identical; g_s runs in float32 on the decoding device."""
    img = np.asarray(kodak_crop.resize((200, 136)))
    for enc_device in ("cuda", "cpu"):
        data = coder.encode(img, "RGB", quality, device=enc_device)
        on_cpu = coder.decode(data, device="cpu")[0]
        on_gpu = coder.decode(data, device="cuda")[0]
        diff = np.abs(on_cpu.astype(int) - on_gpu.astype(int))
        assert diff.max() <= MAX_ABS_DIFF, enc_device
        assert (diff > 0).mean() <= MAX_DIFFERING, enc_device
        assert np.array_equal(on_gpu, coder.decode(data, device="cuda")[0])  # deterministic
