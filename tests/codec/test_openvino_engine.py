"""The openvino engine (codec/engines/openvino_engine.py): the sub-pixel rewrite is the transposed
convolution, its files decode to the same latents as every engine's, its float32 pixels agree with
the numpy engine's and its bf16 pixels stay within the stated tolerance; without openvino it is a
clear error; device "auto" chooses it per machine and job, and falls back to numpy."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aecodec.bench.metrics import psnr
from aecodec.codec import coder, engines
from aecodec.codec.engines.openvino_engine import subpixel_weights
from aecodec.errors import AecError

# docs/performance.md: bf16 pixels within one level of float32 on ~13 % of values with -r9, within
# two levels on ~19.5 % with -r10 and -r11 (all Kodak, every quality: at most 24.6 % on one image;
# 0.012 dB lost on average at q8, 0.033 dB on the worst image), and up to 0.13 dB on a smooth crop
# coded at 45 dB
BF16_MAX_LEVELS, BF16_MAX_DIFFERING, BF16_MAX_DB_LOSS = 2, 0.25, 0.15


@pytest.mark.parametrize("c_in,c_out,size", [(24, 3, (5, 7)), (8, 20, (1, 1)), (16, 16, (4, 9))])
def test_the_subpixel_rewrite_is_the_transposed_convolution(c_in, c_out, size):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(1, c_in, *size, generator=g), torch.randn(c_in, c_out, 5, 5, generator=g), torch.randn(c_out, generator=g)
    ref = F.conv_transpose2d(x.double(), w.double(), b.double(), stride=2, padding=2, output_padding=1)
    sw, sb = subpixel_weights(w.numpy(), b.numpy())
    got = F.pixel_shuffle(F.conv2d(x.double(), torch.from_numpy(sw).double(), torch.from_numpy(sb).double(), padding=1), 2)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-10)


def test_without_openvino_it_is_a_clear_error_and_auto_falls_back_to_numpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed (or broken)
    weights = engines.Weights.from_bytes(_shipped_bytes())  # not the cached shipped weights' engines
    with pytest.raises(AecError, match="the openvino engine needs openvino, which is not installed"):
        engines.create("openvino", weights)
    monkeypatch.setattr(engines, "cpu_engine", lambda *a: "openvino")  # a machine that would choose it
    assert engines.for_device("auto", model=weights).kind == "numpy"
    monkeypatch.setenv(engines.ENGINE_ENV, "openvino")
    assert engines.for_device("cpu").kind == "numpy"  # an explicit cpu is the portable float32 engine


@pytest.mark.parametrize("bf16,installed,forced,pixels,decoding,want", [
    (True, True, None, None, False, "openvino"),            # a long job on a bf16 machine
    (True, True, None, 1024 * 768, True, "openvino"),       # decoding a 0.8 Mpx file repays its start-up
    (True, True, None, 768 * 512, True, "numpy"),           # a Kodak-sized one does not
    (True, True, None, 768 * 512, False, "openvino"),       # encoding it does
    (True, True, None, 512 * 384, False, "numpy"),          # not a 0.2 Mpx one
    (True, True, None, 24 * 768 * 512, False, "openvino"),  # a batch of 24 Kodak images does
    (False, True, None, None, False, "numpy"),              # no native bf16: OpenVINO's f32 gains little
    (True, False, None, None, False, "numpy"),              # not installed
    (False, False, "openvino", 16, True, "openvino"),       # $AECODEC_ENGINE decides alone
    (True, True, "numpy", None, False, "numpy"),
])
def test_the_cpu_engine_is_chosen_per_machine_and_job(monkeypatch, bf16, installed, forced, pixels, decoding, want):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(engines, "native_bf16", lambda: bf16)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real_find_spec(name, *a) if installed else None) if name == "openvino"
                        else real_find_spec(name, *a))
    if forced:
        monkeypatch.setenv(engines.ENGINE_ENV, forced)
    else:
        monkeypatch.delenv(engines.ENGINE_ENV, raising=False)
    if installed and want == "openvino" and real_find_spec("openvino") is None:
        pytest.skip("openvino is not installed here")
    assert engines.cpu_engine(pixels, decoding) == want


def test_cpu_flags_are_read_without_importing_anything():
    from aecodec.codec.engines.devices import cpu_flags

    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    if sys.platform.startswith("linux"):
        assert flags and ("sse2" in flags or "fp" in flags or "asimd" in flags)  # x86-64 or ARM


@pytest.mark.parametrize("flags,want", [
    ({"avx512f", "avx512_bf16"}, "bf16"),   # Zen 4, Cooper Lake
    ({"avx512f", "amx_bf16"}, "bf16"),      # Sapphire Rapids on
    ({"avx512f", "avx512_vnni"}, "f32"),    # Skylake-X to Ice Lake: OpenVINO would emulate bf16, 5x slower
    ({"avx2", "fma"}, "f32"),
])
def test_bf16_only_where_the_cpu_multiplies_it_natively(monkeypatch, flags, want):
    pytest.importorskip("openvino")
    from aecodec.codec.engines import devices, openvino_engine

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(flags))
    assert ("bf16" if openvino_engine.bf16_capable() else "f32") == want


def _shipped_bytes() -> bytes:
    from aecodec.codec.zoo import DEFAULT_MODEL, shipped_model_bytes

    return shipped_model_bytes(DEFAULT_MODEL)[0]


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_files_cross_the_numpy_and_openvino_engines(kodak_crop, precision):
    pytest.importorskip("openvino")
    img = np.asarray(kodak_crop.resize((200, 136)))
    numpy_engine, ov = engines.create("numpy"), engines.create("openvino", precision=precision)
    for quality in (1, 4.5, 8):
        files = {e.kind: coder.encode(img, "RGB", quality, engine=e) for e in (numpy_engine, ov)}
        for data in files.values():
            header, z_bytes, y_bytes = coder.bitstream.parse(data)
            shape = (-(-header.height // 64), -(-header.width // 64))
            assert np.array_equal(numpy_engine.decode_latents(y_bytes, z_bytes, shape),
                                  ov.decode_latents(y_bytes, z_bytes, shape))  # one entropy coder
            a, b = coder.decode(data, engine=numpy_engine)[0], coder.decode(data, engine=ov)[0]
            assert np.array_equal(b, coder.decode(data, engine=ov)[0])  # deterministic
            diff = np.abs(a.astype(int) - b)
            if ov.precision == "f32":
                assert diff.max() <= 1 and (diff > 0).mean() < 0.001
            else:
                assert diff.max() <= BF16_MAX_LEVELS and (diff > 0).mean() < BF16_MAX_DIFFERING
                assert psnr(img, b) > psnr(img, a) - BF16_MAX_DB_LOSS


def test_each_transform_compiles_when_first_used_and_auto_falls_back_on_a_failure(kodak_crop, monkeypatch):
    pytest.importorskip("openvino")
    weights = engines.Weights.from_bytes(_shipped_bytes())  # engines of its own
    monkeypatch.setattr(engines, "cpu_engine", lambda *a: "openvino")  # a machine and job that choose it
    engine = engines.for_device("auto", model=weights, decoding=True)
    assert engine.kind == "openvino" and list(engine.compiled) == ["g_s"]  # a decode compiles g_s only
    data = coder.encode(np.asarray(kodak_crop.resize((128, 64))), "RGB", 4, engine=engine)
    assert sorted(engine.compiled) == ["g_a", "g_s"]  # then g_a, when an encode first needs it

    broken = engines.Weights.from_bytes(_shipped_bytes())
    engine = engines.create("openvino", broken)

    def fail(*args, **kwargs):
        raise RuntimeError("no kernel for this node")

    monkeypatch.setattr(engine._core, "compile_model", fail)
    assert engines.for_device("auto", model=broken, decoding=True).kind == "numpy"  # compiled up front
    with pytest.raises(AecError, match="OpenVINO could not compile g_s: no kernel"):  # one line, later
        coder.decode(data, engine=engine)


def test_openvino_is_imported_without_its_forking_telemetry():
    """OpenVINO's import-time telemetry forks a process from a thread; a fork while numpy's BLAS
    runs in the codec's threads hung a decompress (docs/performance.md). A fresh process, as a
    CLI call is: building the engine leaves OpenVINO on its telemetry stub."""
    pytest.importorskip("openvino")
    code = ("import sys; from aecodec.codec import engines; engines.create('openvino').prepare('g_s'); "
            "import openvino.tools.ovc.telemetry_utils as t; "
            "print(sys.modules['openvino_telemetry'], t.tm.__name__, 'multiprocessing' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "openvino.tools.ovc.telemetry_stub", "False"]


def test_openvino_through_the_environment(kodak_crop, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setenv(engines.ENGINE_ENV, "openvino")
    assert engines.for_device("auto").kind == "openvino"
    img = np.asarray(kodak_crop)
    data = coder.encode(img, "RGB", 4)
    assert psnr(img, coder.decode(data)[0]) > 30


def test_gdn_square_root_and_product_stay_float32_under_bf16():
    """The (I)GDN's square root and product are built as "precise" nodes: compiled for bf16 they
    run in float32 (most of bf16's loss came from rounding them: docs/performance.md), the
    convolutions in bf16. The square root is fused into the norm's convolution, which then
    writes float32 instead of bf16."""
    pytest.importorskip("openvino")
    import openvino as ov

    from aecodec.codec.engines import openvino_engine
    from aecodec.codec.spec import gdn
    from aecodec.codec.weights import Weights

    if not openvino_engine.bf16_capable():
        pytest.skip("this CPU has no native bf16: the engine runs float32 throughout")
    tensors = Weights.shipped().tensors
    for layer, prefix in ((gdn(128, inverse=True), "g_s"), (gdn(128), "g_a")):
        index = next(i for i, l in enumerate(Weights.shipped().config.layers()[prefix]) if l.op == layer.op)
        model = openvino_engine.build([layer], tensors, prefix, 128, index)
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
        runs = {}  # an original node's name -> (runtime precision, output precision) of what runs it
        for node in compiled.get_runtime_model().get_ordered_ops():
            info = node.get_rt_info()
            for original in info["originalLayersNames"].astype(str).split(","):
                runs[original] = (info["runtimePrecision"].astype(str), info["outputPrecisions"].astype(str))
        conv = next(n.get_friendly_name() for n in model.get_ordered_ops() if n.get_type_name() == "Convolution")
        assert runs[f"{prefix}.{index}.sqrt"][1] == "f32" and runs[f"{prefix}.{index}.normalize"] == ("f32", "f32"), runs
        assert runs[conv][0] == "bf16", runs


def test_g_a_runs_its_f32_layers_in_float32_inside_one_bf16_graph():
    """g_a's convolutions that the spec marks `f32` (on the image, and y's) are "precise" nodes of
    the one compiled graph: float32 where the rest is bf16 (as separate float32 models they made
    g_a 2.8x slower; docs/performance.md)."""
    pytest.importorskip("openvino")
    from aecodec.codec.engines import openvino_engine

    if not openvino_engine.bf16_capable():
        pytest.skip("this CPU has no native bf16: the engine runs float32 throughout")
    weights = engines.Weights.from_bytes(_shipped_bytes())
    engine = engines.create("openvino", weights)
    engine.prepare("g_a")
    runs = {}  # an original node's name -> the runtime precision of what runs it
    for node in engine.compiled["g_a"].get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            for original in info["originalLayersNames"].astype(str).split(","):
                runs[original] = info["runtimePrecision"].astype(str)
    layers = weights.config.layers()["g_a"]
    marked = [f"g_a.{i}" for i, l in enumerate(layers) if l.op == "conv" and l.f32]
    assert marked == ["g_a.0", f"g_a.{len(layers) - 1}"]
    assert all(runs[name] == "f32" for name in marked), runs
    assert sorted(p for name, p in runs.items() if name not in marked).count("bf16") >= 2, runs
