"""Growing a trained model's transforms without restarting its curve (function-preserving widening).

`widen(model, config)` returns a model of `config`, whose layer lists are the model's with more
channels between layers (the same ops, kernels and strides; y's M and the entropy parameters
unchanged), that computes exactly what the model computed:
- a convolution's old outputs ignore its new inputs (zero weights there), and its new outputs start
  as a fresh layer's (random): they compute something, but the next layer ignores them at first;
  those zero weights then learn from the new outputs, and the new outputs from them;
- a GDN's old channels are not normalised by the new ones (gamma entries zero); its new channels
  start as a fresh GDN's.
So the codec codes the same bytes and the same pixels until it trains, and the training that
follows decides what the new channels carry (Chen et al. 2016, Net2Net, with zero instead of
copied units).
"""
from __future__ import annotations

import torch

from ..codec.model import AecModel
from ..codec.spec import Layer, ModelConfig, TRANSFORMS
from ..errors import AecError


@torch.no_grad()
def widen(model: AecModel, config: ModelConfig) -> AecModel:
    old_layers, new_layers = model.config.layers(), config.layers()
    if (config.N, config.M, config.family, config.qualities) != \
            (model.config.N, model.config.M, model.config.family, model.config.qualities):
        raise ValueError("widening keeps N (z's channels), M, the family and the qualities: it changes layer lists")
    for name in TRANSFORMS:
        old, new = old_layers[name], new_layers[name]
        if len(old) != len(new) or any((a.op, a.k, a.s) != (b.op, b.k, b.s) or b.cin < a.cin or b.cout < a.cout
                                       for a, b in zip(old, new)):
            raise ValueError(f"{name}: a wider layout has the same layers with at least as many channels")
    grown = AecModel(config)
    state, fresh = model.state_dict(), grown.state_dict()
    out = {}
    for key, value in fresh.items():
        if key not in state:
            raise ValueError(f"{key}: not in the model being widened")
        out[key] = _place(key, state[key], value, grown)
    grown.load_state_dict(out)
    return grown


def _place(key: str, old: torch.Tensor, new: torch.Tensor, grown: AecModel) -> torch.Tensor:
    """The grown model's tensor: the old one in its leading block, what feeds old outputs from new
    inputs zero, the rest as the fresh model has it."""
    if old.shape == new.shape or key.split(".")[0] not in TRANSFORMS:  # (CDF tables are sized by what fills them)
        return old
    t = new.clone()
    t[tuple(slice(0, n) for n in old.shape)] = old
    module = grown.get_submodule(key.rsplit(".", 1)[0])
    name = key.rsplit(".", 1)[1]
    if isinstance(module, torch.nn.ConvTranspose2d) and name == "weight":  # (in, out, k, k)
        t[old.shape[0]:, :old.shape[1]] = 0
    elif isinstance(module, torch.nn.Conv2d) and name == "weight":      # (out, in, k, k)
        t[:old.shape[0], old.shape[1]:] = 0
    elif name == "gamma":  # GDN (out, in), stored reparametrised: the stored value of a zero
        t[:old.shape[0], old.shape[1]:] = module.gamma_reparam.init(torch.zeros(1))
    return t


def widened(config: ModelConfig, spec: str) -> ModelConfig:
    """config with the hidden layers of some transforms `width` channels wide: spec is
    "T=WIDTH[,T=WIDTH...]" (T one of g_a, g_s, h_a, h_s); a transform's ends (its input and output
    channels) stay."""
    layers = config.layers()
    changes = {}
    for part in spec.split(","):
        name, _, width = part.partition("=")
        name = name.strip()
        if name not in TRANSFORMS or not width.strip().isdigit() or int(width) < 1:
            raise AecError(f"--widen {spec!r}: expected T=WIDTH[,T=WIDTH...] with T one of {', '.join(TRANSFORMS)}")
        seq, w = layers[name], int(width)
        out = []
        for i, l in enumerate(seq):
            if not l.has_weights:
                out.append(l)
                continue
            cin = l.cin if i == 0 else w
            cout = l.cout if all(not m.has_weights for m in seq[i + 1:]) else w
            out.append(Layer(l.op, cin, cout, l.k, l.s, l.f32))
        changes[name] = out
    return config.with_layers(**changes)
