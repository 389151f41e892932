"""Which runtime should run the synthesis transform on a CPU? (issue 30: "choose by measurement")

    python tools/backends.py [--image kodak/kodim23.png] [--quality 4] [--repeat 5]

g_s of the shipped default model on one image's latents (decoded by the float64 entropy coder, so
every backend sees the same input), on each backend that is installed:

    numpy        the numpy engine (float32 BLAS, row shares on every core): the reference
    torch        AecModel.g_s, float32, channels_last (oneDNN)
    torch-bf16   the same under CPU autocast to bfloat16
    openvino     the openvino engine's g_s graph, float32 and bf16
    onnxruntime  the same layer list as an ONNX graph (transposed convolutions as sub-pixel
                 convolutions, as in the openvino engine), float32, and int8 (QDQ, static
                 calibration on the latents of four training photos, never on a test set)

For each: the import time of the package (a fresh interpreter), the time to build the runner
(load + compile) and its first call, the median of --repeat calls after that, the installed size,
and the decoded image's PSNR against the original (the numpy engine's pixels are the reference
coding). Pause a background training run first. Not part of the package: a measurement for
docs/performance.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aecodec.bench.metrics import psnr  # noqa: E402
from aecodec.codec import coder, engines  # noqa: E402
from aecodec.codec.engines.openvino_engine import subpixel_weights  # noqa: E402
from aecodec.codec import numpy_ops as ops  # noqa: E402


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return min(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
               for _ in range(3))


def installed_mb(*packages: str) -> float:
    total = 0
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            total += sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    return total / 1e6


def onnx_model(layers, tensors: dict, M: int):
    """g_s's layer list as an ONNX graph on (1, M, H, W) float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name))
        return name

    h = "y"
    for i, layer in enumerate(layers):
        name, out = f"g_s.{i}", f"t{i}"
        if layer.op == "deconv":
            w, b = subpixel_weights(tensors[f"{name}.weight"].astype(np.float32), tensors[f"{name}.bias"])
            nodes.append(helper.make_node("Conv", [h, const(name + ".w", w), const(name + ".b", b)], [out + "c"],
                                          pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("DepthToSpace", [out + "c"], [out], blocksize=2, mode="CRD"))
        elif layer.op == "conv":
            p = layer.k // 2
            nodes.append(helper.make_node("Conv", [h, const(name + ".w", tensors[f"{name}.weight"]),
                                                   const(name + ".b", tensors[f"{name}.bias"])], [out],
                                          pads=[p] * 4, strides=[layer.s] * 2))
        elif layer.op in ("gdn", "igdn"):
            beta, gamma_t = ops.gdn_parameters(
                tensors[f"{name}.beta"], tensors[f"{name}.beta_reparam.lower_bound.bound"],
                tensors[f"{name}.beta_reparam.pedestal"], tensors[f"{name}.gamma"],
                tensors[f"{name}.gamma_reparam.lower_bound.bound"], tensors[f"{name}.gamma_reparam.pedestal"])
            nodes += [helper.make_node("Mul", [h, h], [out + "sq"]),
                      helper.make_node("Conv", [out + "sq", const(name + ".g", gamma_t.T[:, :, None, None]),
                                                const(name + ".beta", beta)], [out + "n"]),
                      helper.make_node("Sqrt", [out + "n"], [out + "r"]),
                      helper.make_node("Mul" if layer.op == "igdn" else "Div", [h, out + "r"], [out])]
        elif layer.op == "relu":
            nodes.append(helper.make_node("Relu", [h], [out]))
        h = out
    graph = helper.make_graph(nodes, "g_s", [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, M, None, None])],
                              [helper.make_tensor_value_info(h, TensorProto.FLOAT, [1, 3, None, None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    ap.add_argument("--image", default="kodim23.png")
    ap.add_argument("--train", default=str(ROOT.parent / "shared/data/train"), help="calibration photos (int8)")
    ap.add_argument("--quality", type=float, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    kodak = Path(args.kodak)
    ref = np.asarray(Image.open(kodak / args.image).convert("RGB"))
    numpy_engine = engines.create("numpy")
    weights, M = numpy_engine.weights, numpy_engine.channels

    def latents(rgb):
        header, z_bytes, y_bytes = coder.bitstream.parse(coder.encode(rgb, "RGB", args.quality, engine=numpy_engine))
        y = numpy_engine.decode_latents(y_bytes, z_bytes, (-(-header.height // 64), -(-header.width // 64)))
        return y * numpy_engine.gains(args.quality)[1]  # (h, w, M), scaled as g_s reads it

    y = latents(ref)
    h, w = ref.shape[:2]

    def pixels(x_hwc):
        return np.round(np.clip(x_hwc[:h, :w], 0, 1) * 255).astype(np.uint8)

    rows = []

    def measure(name, build, run, packages, module):
        t = time.perf_counter()
        runner = build()
        out = run(runner, y)
        first = time.perf_counter() - t
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = run(runner, y)
            times.append(time.perf_counter() - t)
        rows.append((name, import_seconds(module) if module else 0.0, first, statistics.median(times),
                     installed_mb(*packages), psnr(ref, pixels(out))))
        print(f"{name:<24} import {rows[-1][1]:5.2f} s  build+first {first:6.2f} s  g_s {rows[-1][3]:6.3f} s  "
              f"{rows[-1][4]:6.0f} MB  PSNR {rows[-1][5]:.3f} dB", flush=True)

    with ops.one_blas_thread():
        measure("numpy (float32)", lambda: numpy_engine.programs["g_s"], lambda p, y: p(np.ascontiguousarray(y)),
                ["numpy"], "numpy")

    import torch

    model = None

    def torch_build():
        nonlocal model
        from aecodec.codec.model import AecModel

        model = model or AecModel.from_weights(weights).eval()
        return model.g_s.to(memory_format=torch.channels_last)

    def torch_run(bf16):
        def run(g_s, y):
            x = torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1)[None])).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return g_s(x).float()[0].permute(1, 2, 0).numpy()
        return run

    measure("torch (float32)", torch_build, torch_run(False), ["torch"], "torch")
    measure("torch (bf16 autocast)", torch_build, torch_run(True), ["torch"], "torch")

    if importlib.util.find_spec("openvino"):
        from aecodec.codec.engines.openvino_engine import OpenVinoEngine

        for precision in ("f32", "bf16"):
            def ov_run(e, y):
                return e._run("g_s", y) + np.float32(e.shift)
            measure(f"openvino ({precision})", lambda p=precision: OpenVinoEngine(weights, precision=p), ov_run,
                    ["openvino"], "openvino")

    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        import onnxruntime as ort

        tensors = weights.tensors
        model_proto = onnx_model(weights.config.layers()["g_s"], tensors, M)

        def session(proto):
            so = ort.SessionOptions()
            so.intra_op_num_threads = ops.WORKERS
            return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])

        def ort_run(s, y):
            return s.run(None, {"y": np.ascontiguousarray(y.transpose(2, 0, 1)[None], dtype=np.float32)})[0][0].transpose(1, 2, 0)

        measure("onnxruntime (float32)", lambda: session(model_proto), ort_run, ["onnxruntime"], "onnxruntime")

        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        import tempfile

        photos = sorted(p for p in Path(args.train).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        calibration = [latents(np.asarray(Image.open(p).convert("RGB"))) for p in photos[::len(photos) // 4][:4]]

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter([{"y": np.ascontiguousarray(c.transpose(2, 0, 1)[None], dtype=np.float32)}
                                   for c in calibration])

            def get_next(self):
                return next(self.items, None)

        def quantized():
            import onnx

            with tempfile.TemporaryDirectory() as tmp:
                src, dst = Path(tmp) / "g_s.onnx", Path(tmp) / "g_s.int8.onnx"
                onnx.save(model_proto, src)
                quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
                return session(onnx.load(dst))

        measure("onnxruntime (int8 QDQ)", quantized, ort_run, ["onnxruntime"], "onnxruntime")

    print("\n| backend | import | build + first call | g_s (median) | installed | PSNR |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, imp, first, med, mb, db in rows:
        print(f"| {name} | {imp:.2f} s | {first:.2f} s | **{med:.3f} s** | {mb:.0f} MB | {db:.3f} dB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
