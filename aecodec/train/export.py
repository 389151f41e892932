"""Run state or checkpoint -> the safetensors weights the package ships (EMA weights of a run).

The default k per quality is chosen on validation images (never Kodak): the smallest k in K_GRID
whose real coded RD cost (lambda * 255^2 * MSE + bpp) is within K_TOLERANCE of k = M.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..codec.config import LAMBDAS
from ..codec.model import AecModel
from ..codec.weights import export_bytes
from ..fileio import atomic_write_bytes
from .evaluate import code_image, coding_engine

K_GRID = (32, 48, 64, 96, 128, 160, 192)
K_TOLERANCE = 0.005


def choose_default_k(model: AecModel, images) -> list[int]:
    """model: a coding copy (evaluate.coding_copy)."""
    M = model.config.M
    grid = [k for k in K_GRID if k < M] + [M]
    engine = coding_engine(model)
    out = []
    for q in range(1, model.config.qualities + 1):
        cost = {}
        for k in reversed(grid):
            vals = []
            for _, rgb in images:
                size, rec = code_image(engine, rgb, q, k)
                mse = np.mean((rec.astype(np.float64) - rgb) ** 2) / 255 ** 2
                vals.append(LAMBDAS[q - 1] * 255 ** 2 * mse + size * 8 / (rgb.shape[0] * rgb.shape[1]))
            cost[k] = float(np.mean(vals))
            if cost[k] > cost[M] * (1 + K_TOLERANCE):
                break  # smaller k only gets worse
        out.append(min(k for k, c in cost.items() if c <= cost[M] * (1 + K_TOLERANCE)))
    return out


def integer_exponents(model: AecModel, images, bits: tuple[int, int] | None = None) -> dict[str, list[int]] | None:
    """Calibration of the integer entropy networks (codec/integer_net.py): the activation
    exponents that fit the largest activations of h_s and the context on these images (validation,
    never a test set) at every quality with k = M, through the float networks. None for a family
    without integer networks. model: a coding copy (evaluate.coding_copy); bits: (weight,
    activation) bits, the model config's by default."""
    from ..codec.families.checkerboard import IntegerContext, anchors
    from ..codec.integer_net import IntegerProgram

    config = model.config
    family = config.family_impl
    if not family.integer_networks:
        return None
    engine = coding_engine(model)
    tensors, coder = engine.weights.tensors, engine.coder
    bits = tuple(bits or config.integer_bits_or_default)
    h_s = IntegerProgram(config.layers()["h_s"], tensors, "h_s", bits=bits)
    context = IntegerContext(tensors, config.M, bits=bits) if family.uses_context else None
    peaks = [0.0] * len(h_s.steps)
    for _, rgb in images:
        state = engine.analyze(rgb)
        for q in range(1, config.qualities + 1):
            y_hat, z = (engine.to_chw(a) for a in engine.quantize(state, q, config.M))
            z_hat = coder.z_hat(np.round(z - coder.medians[:, None, None]).astype(np.int32))
            seen = []
            params = h_s(z_hat.transpose(1, 2, 0), seen).transpose(2, 0, 1)
            peaks = [max(a, b) for a, b in zip(peaks, seen)]
            if context is not None:
                context.correct(params, y_hat, anchors(*y_hat.shape[1:]))
    out = {"h_s": h_s.exponents(peaks)}
    if context is not None:
        out["context"] = context.exponents()
    return out


def write_weights(model: AecModel, output: Path, name: str, default_k: list[int], extra: dict,
                  force: bool, register: bool) -> str:
    data = export_bytes(model, name, default_k, extra=extra)
    atomic_write_bytes(output, data, force=force)
    sha = hashlib.sha256(data).hexdigest()
    print(f"wrote {output} ({len(data) / 1e6:.1f} MB, sha256 {sha}), default k {default_k}")
    if register:  # record the file in the manifest beside it (the package's model zoo)
        manifest = output.parent / "manifest.json"
        entries = json.loads(manifest.read_text()) if manifest.exists() else {"models": {}}
        entries["models"][name] = {"file": output.name, "sha256": sha}
        atomic_write_bytes(manifest, (json.dumps(entries, indent=2) + "\n").encode(), force=True)
        print(f"registered {name} in {manifest}")
    return sha
