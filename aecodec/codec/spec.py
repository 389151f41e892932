"""The network as data: the layers of g_a, g_s, h_a and h_s, from which the torch module
(model.py) and every engine's program (engines/) are built. Torch-free.

A layer is one line of text, e.g.

    conv 3>128 k5 s2 f32    a convolution, 3 -> 128 channels, 5x5, stride 2, padding k // 2,
                            kept in float32 under a low-precision autocast (training)
    deconv 128>3 k5 s2      the transposed convolution that doubles the size (padding 2, output padding 1)
    gdn 128 / igdn 128      GDN and its inverse (Balle et al. 2016)
    relu

A layer's position in its list is its index in the weights (`g_s.2.weight` is g_s's third layer),
so layers without weights (relu) still take a place. The default layout, derived from N, M and the
entropy model's family, is the one every shipped model has; a model with another layout records
its layer lists in its config (ModelConfig.layers), so the weights always say how to build them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .config import QUALITIES, Y_STRIDE

TRANSFORMS = ("g_a", "g_s", "h_a", "h_s")
OPS = ("conv", "deconv", "gdn", "igdn", "relu")
# total downsampling of each transform (the bitstream's padding rule depends on it: config.PAD)
_SCALE = {"g_a": Y_STRIDE, "g_s": Y_STRIDE, "h_a": 4, "h_s": 4}
_LAYER_RE = re.compile(r"^(conv|deconv)\s+(\d+)>(\d+)\s+k(\d+)\s+s(\d+)(\s+f32)?$|^(gdn|igdn)\s+(\d+)$|^(relu)$")


@dataclass(frozen=True)
class Layer:
    op: str
    cin: int = 0
    cout: int = 0
    k: int = 0
    s: int = 1
    f32: bool = False  # stays float32 under autocast (layers.Float32Conv2d says why)

    def __str__(self) -> str:
        if self.op in ("conv", "deconv"):
            return f"{self.op} {self.cin}>{self.cout} k{self.k} s{self.s}" + (" f32" if self.f32 else "")
        if self.op in ("gdn", "igdn"):
            return f"{self.op} {self.cin}"
        return self.op

    @classmethod
    def parse(cls, text: str) -> "Layer":
        m = _LAYER_RE.match(text.strip())
        if not m:
            raise ValueError(f"not a layer: {text!r} (e.g. 'conv 3>128 k5 s2', 'igdn 128', 'relu')")
        if m.group(1):
            return cls(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), bool(m.group(6)))
        if m.group(7):
            c = int(m.group(8))
            return cls(m.group(7), c, c)
        return cls("relu")

    @property
    def has_weights(self) -> bool:
        return self.op != "relu"


def conv(cin: int, cout: int, k: int = 5, s: int = 2, f32: bool = False) -> Layer:
    return Layer("conv", cin, cout, k, s, f32)


def deconv(cin: int, cout: int, f32: bool = False) -> Layer:
    return Layer("deconv", cin, cout, 5, 2, f32)


def gdn(c: int, inverse: bool = False) -> Layer:
    return Layer("igdn" if inverse else "gdn", c, c)


RELU = Layer("relu")


def default_layers(N: int, M: int, hyper_out: int, hyper_relu: bool) -> dict[str, tuple[Layer, ...]]:
    """The layout of every shipped model (Balle et al. 2018's hyperprior autoencoder). h_s ends in
    `hyper_out` channels (the family's entropy parameters), with a ReLU when they are scales only."""
    return {
        "g_a": (conv(3, N, f32=True), gdn(N), conv(N, N), gdn(N), conv(N, N), gdn(N), conv(N, M, f32=True)),
        "g_s": (deconv(M, N), gdn(N, True), deconv(N, N), gdn(N, True), deconv(N, N), gdn(N, True),
                deconv(N, 3, f32=True)),
        "h_a": (conv(M, N, 3, 1), RELU, conv(N, N), RELU, conv(N, N)),
        "h_s": (deconv(N, N), RELU, deconv(N, N), RELU, conv(N, hyper_out, 3, 1)) + ((RELU,) if hyper_relu else ()),
    }


def to_text(layers: dict[str, tuple[Layer, ...]]) -> dict[str, list[str]]:
    return {name: [str(l) for l in seq] for name, seq in layers.items()}


def from_text(d: dict) -> dict[str, tuple[Layer, ...]]:
    if not isinstance(d, dict) or set(d) - set(TRANSFORMS):
        raise ValueError(f"layers must be a mapping of {', '.join(TRANSFORMS)} to layer lists")
    return {name: tuple(Layer.parse(t) for t in seq) for name, seq in d.items()}


def check(layers: dict[str, tuple[Layer, ...]], N: int, M: int, hyper_out: int) -> None:
    """ValueError unless the layer lists chain up: g_a 3 -> M and g_s M -> 3 with 16x scaling,
    h_a M -> N and h_s N -> hyper_out with 4x, each layer's input the previous one's output."""
    ends = {"g_a": (3, M), "g_s": (M, 3), "h_a": (M, N), "h_s": (N, hyper_out)}
    for name in TRANSFORMS:
        seq = layers.get(name)
        if not seq:
            raise ValueError(f"{name} has no layers")
        c, scale = ends[name][0], 1
        for i, layer in enumerate(seq):
            if layer.op not in OPS:
                raise ValueError(f"{name}.{i}: unknown op {layer.op!r}")
            if layer.has_weights and layer.cin != c:
                raise ValueError(f"{name}.{i} ({layer}) takes {layer.cin} channels, gets {c}")
            if layer.op == "conv":
                if layer.k % 2 == 0 or layer.s not in (1, 2):
                    raise ValueError(f"{name}.{i} ({layer}): convolutions have odd kernels and stride 1 or 2")
                scale *= layer.s
            elif layer.op == "deconv":
                if (layer.k, layer.s) != (5, 2):
                    raise ValueError(f"{name}.{i} ({layer}): transposed convolutions are k5 s2")
                scale *= 2
            c = layer.cout if layer.has_weights else c
        if c != ends[name][1]:
            raise ValueError(f"{name} ends with {c} channels, needs {ends[name][1]}")
        if scale != _SCALE[name]:
            raise ValueError(f"{name} scales by {scale}, needs {_SCALE[name]}")


DEFAULT_INTEGER_BITS = (12, 12)  # integer_net.WEIGHT_BITS, ACTIVATION_BITS: the first integer models'


@dataclass(frozen=True)
class ModelConfig:
    """A model's architecture: channel counts, quality levels, the entropy model's family
    (families/), when they are not the default layout the transforms' layers, and when its entropy
    networks are integer networks (integer_net.py) their activation exponents."""
    N: int = 128
    M: int = 192
    qualities: int = QUALITIES
    family: str = "hyperprior"
    custom_layers: tuple[tuple[str, tuple[Layer, ...]], ...] | None = None  # (transform, layers) pairs
    integer: tuple[tuple[str, tuple[int, ...]], ...] | None = None  # (network, input exponents) pairs
    integer_bits: tuple[int, int] | None = None  # (weight, activation) bits; None: 12 and 12

    def __post_init__(self):
        from . import families

        fam = families.get(self.family)  # ValueError for an unknown family
        check(self.layers(), self.N, self.M, fam.hyper_outputs(self.M))
        if self.integer is not None:
            want = {"h_s"} | ({"context"} if fam.uses_context else set())
            if not fam.integer_networks or set(dict(self.integer)) != want:
                raise ValueError(f"integer entropy networks of the {self.family} family are {sorted(want)}"
                                 if fam.integer_networks else f"the {self.family} family has no integer networks")
            for name, exps in self.integer:
                if not all(isinstance(f, int) and not isinstance(f, bool) and -64 <= f <= 64 for f in exps):
                    raise ValueError(f"integer exponents of {name} must be integers in -64..64")
        if self.integer_bits is not None:
            bits = self.integer_bits
            if self.integer is None:
                raise ValueError("integer_bits needs integer entropy networks (their exponents)")
            if not (isinstance(bits, tuple) and len(bits) == 2
                    and all(isinstance(b, int) and not isinstance(b, bool) and 2 <= b <= 16 for b in bits)):
                raise ValueError("integer_bits must be (weight bits, activation bits), each in 2..16")

    def integer_exponents(self, network: str) -> tuple[int, ...] | None:
        """A network's activation exponents when it is an integer network, else None (float64)."""
        return dict(self.integer).get(network) if self.integer else None

    @property
    def integer_bits_or_default(self) -> tuple[int, int]:
        """The integer networks' (weight bits, activation bits)."""
        return self.integer_bits or DEFAULT_INTEGER_BITS

    def with_integer(self, exponents: dict[str, list[int]] | None, bits: tuple[int, int] | None = None) -> "ModelConfig":
        """This config with integer entropy networks of these exponents (None: float64 networks)
        and bits (None: the default 12 and 12, which a config does not record)."""
        integer = tuple(sorted((k, tuple(int(f) for f in v)) for k, v in exponents.items())) if exponents else None
        bits = None if bits is None or tuple(bits) == DEFAULT_INTEGER_BITS else tuple(int(b) for b in bits)
        return replace(self, integer=integer, integer_bits=bits if integer else None)

    @property
    def family_impl(self):
        from . import families

        return families.get(self.family)

    def layers(self) -> dict[str, tuple[Layer, ...]]:
        """Each transform's layers: the default layout, with this config's own lists in place."""
        fam = self.family_impl
        out = default_layers(self.N, self.M, fam.hyper_outputs(self.M), fam.scales_only)
        out.update(dict(self.custom_layers or ()))
        return out

    def with_layers(self, **layers) -> "ModelConfig":
        """This config with some transforms' layers replaced (lists of Layer or of their text)."""
        own = dict(self.custom_layers or ())
        own.update({k: tuple(Layer.parse(l) if isinstance(l, str) else l for l in v) for k, v in layers.items()})
        return replace(self, custom_layers=tuple(sorted(own.items())))

    def to_dict(self) -> dict:
        d = {"N": self.N, "M": self.M, "qualities": self.qualities}
        # the first families were named by flags; those configs keep their form (and file digests)
        legacy = self.family_impl.legacy_flags
        d.update(legacy if legacy is not None else {"family": self.family})
        if self.custom_layers:
            default = ModelConfig(self.N, self.M, self.qualities, self.family).layers()
            own = {k: v for k, v in self.custom_layers if v != default[k]}
            if own:
                d["layers"] = to_text(own)
        if self.integer:
            d["integer"] = {k: list(v) for k, v in self.integer}
        if self.integer_bits:
            d["integer_bits"] = list(self.integer_bits)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        from . import families

        family = d.get("family") or families.from_flags(bool(d.get("means", False)), bool(d.get("context", False)))
        layers = from_text(d["layers"]) if "layers" in d else None
        integer = d.get("integer")
        if integer is not None and not (isinstance(integer, dict) and all(isinstance(v, list) for v in integer.values())):
            raise ValueError("integer must map each entropy network to a list of exponents")
        bits = d.get("integer_bits")
        if bits is not None and not isinstance(bits, list):
            raise ValueError("integer_bits must be a list of two bit counts")
        return cls(N=int(d["N"]), M=int(d["M"]), qualities=int(d.get("qualities", QUALITIES)), family=str(family),
                   custom_layers=tuple(sorted(layers.items())) if layers else None,
                   integer=tuple(sorted((str(k), tuple(v)) for k, v in integer.items())) if integer else None,
                   integer_bits=tuple(bits) if bits is not None else None)
