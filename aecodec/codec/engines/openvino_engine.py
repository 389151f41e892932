"""The OpenVINO engine: the transforms g_a and g_s on OpenVINO's CPU runtime, in bfloat16 where
the CPU has bf16 instructions (AMX, AVX512_BF16), float32 elsewhere; the rest (padding, the gate,
h_a, tiling, the float64 entropy coder) is the numpy engine's. An optional backend:
`pip install openvino` (~180 MB); torch-free.

The programs are built from the model's layer lists (spec.py) with OpenVINO's graph API, with one
rewrite: each 5x5 stride-2 transposed convolution runs as its sub-pixel equivalent, a 3x3
convolution to 4x the channels followed by depth-to-space (the same polyphase weights as the numpy
engine's; exactly the same function), which is what OpenVINO's CPU kernels run fast.

bf16 where it costs least: g_a's convolutions that the spec marks `f32` (the first, on the image,
and the last, y, which the gate rounds) are "precise" nodes, float32 inside the bf16 graph (as
float32 segments of their own until 0.17.1, g_a took 2.8x as long); g_s runs in bf16 whole
(a float32 segment for its last layer cost 0.09 s of 0.21 on kodim23), with its output centred on
zero (bias - 0.5, then + 0.5 in float32), which halves bf16's rounding of the pixels: on Kodak
quality 8 that took the loss against float32 from 0.024 to 0.010 dB. Inside bf16, each (I)GDN's
square root and its product (or quotient) with the input stay float32 (nodes marked "precise";
the squares and the convolution stay bf16, which cost nothing measurable): with `-r10`, the worst
Kodak image's loss at q8 fell from 0.061 to 0.033 dB (the mean from 0.014 to 0.012 dB; ~19.5 %
of values still differ), for ~4 % of the decode's time (docs/performance.md). bf16 changes pixels, never
decodability: the entropy parameters are the float64 coder's, as in every engine.
"""
from __future__ import annotations

import functools
import sys
import threading

import numpy as np

from ...errors import AecError
from .. import numpy_ops as ops
from .numpy_engine import NumpyEngine

PRECISIONS = ("bf16", "f32")


def import_openvino():
    """`import openvino`, without its usage telemetry. On import OpenVINO sends an event from a
    thread that forks a process (openvino_telemetry, through multiprocessing), and a fork while
    numpy's BLAS works in other threads can hang the whole process in OpenBLAS's pre-fork handler:
    seen here as an `aecodec decompress` that never returned, once its entropy decoding ran
    during that fork. With openvino_telemetry unimportable, OpenVINO uses its own stub (a user
    who imported either package first keeps it as it is)."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino


def _const(a):
    import_openvino()
    import openvino.opset13 as op

    return op.constant(np.ascontiguousarray(a, dtype=np.float32))


def subpixel_weights(w: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 5x5 stride-2 transposed convolution's weight (C_in, C_out, 5, 5) and bias -> the 3x3
    convolution (4 C_out, C_in, 3, 3) whose output, depth-to-space by 2 (channel c * 4 + 2 r + s
    to pixel (2m + r, 2n + s) of channel c), is the transposed convolution's."""
    c_in, c_out = w.shape[:2]
    phases = np.zeros((c_out, 2, 2, c_in, 3, 3), np.float32)
    for r, s, t, u, a, b in ops.POLYPHASE_TAPS:
        phases[:, r, s, :, t, u] = w[:, :, a, b].T
    return phases.reshape(4 * c_out, c_in, 3, 3), np.repeat(bias.astype(np.float32), 4)


# Python cannot mark a node it builds "precise" (ov::DisableFP16Compression, which keeps it in
# float32 under a bf16 inference precision: rt_info takes strings and ints only), but an IR can:
# a precise node comes from a one-node IR, rewired into the graph.
_DIMS = "<dim>-1</dim>" * 4


@functools.cache  # the text only: each node is parsed from it anew
def _precise_ir(op_type: str, arity: int, data: str = "") -> bytes:
    """data: the node's attributes, as IR's <data .../> element."""
    port = lambda i: f'<port id="{i}" precision="FP32">{_DIMS}</port>'  # noqa: E731
    params = "".join(f'<layer id="{i}" name="x{i}" type="Parameter" version="opset1"><data shape="?,?,?,?" '
                     f'element_type="f32"/><output>{port(0)}</output></layer>' for i in range(arity))
    node = (f'<layer id="{arity}" name="node" type="{op_type}" version="opset1">{data}<rt_info><attribute name="precise" '
            f'version="0"/></rt_info><input>{"".join(port(i) for i in range(arity))}</input>'
            f'<output>{port(arity)}</output></layer>')
    result = f'<layer id="{arity + 1}" name="y" type="Result" version="opset1"><input>{port(0)}</input></layer>'
    edges = "".join(f'<edge from-layer="{i}" from-port="0" to-layer="{arity}" to-port="{i}"/>' for i in range(arity))
    edges += f'<edge from-layer="{arity}" from-port="{arity}" to-layer="{arity + 1}" to-port="0"/>'
    return (f'<?xml version="1.0"?><net name="precise" version="11"><layers>{params}{node}{result}</layers>'
            f'<edges>{edges}</edges></net>').encode()


def precise(core, name: str, op_type: str, *inputs, data: str = ""):
    """A node (Sqrt, Multiply, Divide; Convolution with its attributes in `data`) on `inputs`, named
    `name`, kept in float32 when the model is compiled for bf16."""
    ov = import_openvino()

    template = core.read_model(_precise_ir(op_type, len(inputs), data), ov.Tensor(np.zeros(0, np.uint8)))
    node = next(n for n in template.get_ordered_ops() if n.get_type_name() == op_type)
    del template  # its Result goes: the node's only consumers are the graph's
    for i, x in enumerate(inputs):
        node.input(i).replace_source_output(x.output(0))
    node.validate_and_infer_types()
    node.set_friendly_name(name)
    return node


def build(layers, tensors: dict, prefix: str, channels_in: int, start: int = 0, core=None, f32_layers: bool = False):
    """A spec's layer list (from layer `start` of the transform) as an OpenVINO model on
    (1, C, H, W) float32 of any H, W. f32_layers: the convolutions the spec marks `f32` are
    "precise" nodes, float32 under bf16."""
    ov = import_openvino()
    import openvino.opset13 as op

    core = core or ov.Core()
    x = op.parameter([1, channels_in, -1, -1], np.float32, name="x")
    h = x
    for i, layer in enumerate(layers, start):
        name = f"{prefix}.{i}"
        if layer.op == "conv":
            p, weight = layer.k // 2, _const(tensors[f"{name}.weight"])
            if f32_layers and layer.f32:
                h = precise(core, name, "Convolution", h, weight, data=(
                    f'<data strides="{layer.s},{layer.s}" dilations="1,1" pads_begin="{p},{p}" pads_end="{p},{p}" '
                    'auto_pad="explicit"/>'))
            else:
                h = op.convolution(h, weight, [layer.s] * 2, [p, p], [p, p], [1, 1])
            h = op.add(h, _const(tensors[f"{name}.bias"].reshape(1, -1, 1, 1)))
        elif layer.op == "deconv":
            w, b = subpixel_weights(tensors[f"{name}.weight"].astype(np.float32), tensors[f"{name}.bias"])
            h = op.add(op.convolution(h, _const(w), [1, 1], [1, 1], [1, 1], [1, 1]), _const(b.reshape(1, -1, 1, 1)))
            h = op.depth_to_space(h, "depth_first", 2)
        elif layer.op in ("gdn", "igdn"):
            beta, gamma_t = ops.gdn_parameters(
                tensors[f"{name}.beta"], tensors[f"{name}.beta_reparam.lower_bound.bound"],
                tensors[f"{name}.beta_reparam.pedestal"], tensors[f"{name}.gamma"],
                tensors[f"{name}.gamma_reparam.lower_bound.bound"], tensors[f"{name}.gamma_reparam.pedestal"])
            squares = op.multiply(h, h)
            norm = op.convolution(squares, _const(gamma_t.T[:, :, None, None]), [1, 1], [0, 0], [0, 0], [1, 1])
            norm = precise(core, f"{name}.sqrt", "Sqrt", op.add(norm, _const(beta.reshape(1, -1, 1, 1))))
            h = precise(core, f"{name}.normalize", "Multiply" if layer.op == "igdn" else "Divide", h, norm)
        elif layer.op == "relu":
            h = op.relu(h)
        else:
            raise ValueError(f"{name}: the openvino engine has no {layer.op!r} layer")
    return ov.Model([h], [x], prefix)


def bf16_capable() -> bool:
    """Whether bf16 is the fast precision here: the CPU multiplies bf16 natively (its flags, as the
    engine choice reads them). Not OpenVINO's OPTIMIZATION_CAPABILITIES, which lists BF16 on every
    AVX-512 CPU because it can emulate it: emulated bf16 ran g_s 5x slower than float32 (0.64 s
    against 0.24 on kodim23, docs/performance.md). Without readable flags (not Linux), OpenVINO's
    own default precision, which is bf16 only where the hardware has it."""
    from . import devices

    if devices.cpu_flags():
        return devices.native_bf16()
    ov = import_openvino()

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT") == ov.Type.bf16


class OpenVinoEngine(NumpyEngine):
    kind = "openvino"
    transforms = ("h_a",)  # g_a and g_s run on OpenVINO

    def __init__(self, weights, device=None, precision: str = "bf16"):
        """precision: "bf16" (the default; float32 on CPUs without bf16 instructions) or "f32"."""
        super().__init__(weights, device)
        ov = import_openvino()

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        core = ov.Core()
        self.precision = precision if precision == "f32" or bf16_capable() else "f32"
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": ops.WORKERS}
        tensors, layers = weights.tensors, weights.config.layers()
        self.shift = 0.5 if self.precision == "bf16" else 0.0  # g_s's output centred on zero
        last = f"g_s.{len(layers['g_s']) - 1}.bias"
        # Each transform is compiled when first used (`prepare`): a decode needs only g_s, an
        # encode only g_a (~0.07 and ~0.1 s of a one-shot call's start-up). Until then the engine
        # keeps what it is built from.
        self._sources = {name: ({k: v for k, v in tensors.items() if k.startswith(f"{name}.")}, layers[name], channels)
                         for name, channels in (("g_a", 3), ("g_s", weights.config.M))}
        self._sources["g_s"][0][last] = tensors[last].astype(np.float32) - self.shift
        self._core, self._config = core, config
        self._build_lock = threading.Lock()
        self.compiled = {}

    def prepare(self, *transforms: str) -> None:
        for name in transforms:
            self._compiled(name)

    def _compiled(self, name: str):
        """The transform's compiled model, compiled on first use (once, whichever thread asks)."""
        compiled = self.compiled.get(name)
        if compiled is None:
            with self._build_lock:
                if name not in self.compiled:
                    tensors, layers, channels = self._sources[name]
                    try:
                        # g_a's `f32` layers (the image in, y out) in float32; not g_s's last: its pixels
                        # came out further from the float32 engine's (docs/performance.md)
                        model = build(layers, tensors, name, channels, core=self._core, f32_layers=name == "g_a")
                        self.compiled[name] = self._core.compile_model(model, "CPU", self._config)
                    except RuntimeError as e:  # OpenVINO's own failures
                        raise AecError(f"OpenVINO could not compile {name}: {e}") from None
                    del self._sources[name]
                compiled = self.compiled[name]
        return compiled

    def _run(self, name: str, x: np.ndarray) -> np.ndarray:
        """(H, W, C) float32 -> the transform's (H', W', C') float32."""
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
        y = self._compiled(name).create_infer_request().infer({0: x})[0]  # one request per call: calls may run in parallel
        return np.ascontiguousarray(y[0].transpose(1, 2, 0))

    def g_a(self, x):
        return self._run("g_a", x)

    def tile_pixels(self, y_hat, quality, crop):
        _, ig = self.gains(quality)
        px = self._run("g_s", y_hat * ig)[crop]
        px += np.float32(self.shift)
        np.clip(px, 0, 1, out=px)
        px *= 255
        return np.round(px)


ENGINE = OpenVinoEngine
