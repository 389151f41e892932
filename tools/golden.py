"""Refactor guard: hashes of what every shipped model codes and decodes, to compare two checkouts.

    PYTHONPATH=<checkout> python tools/golden.py write OUT.json [--kodak DIR]
    PYTHONPATH=<checkout> python tools/golden.py check OUT.json [--kodak DIR]

For each shipped model, each engine (numpy, torch on the CPU), every Kodak image at qualities 1, 4,
8 (and 4.5 for the default model): SHA-256 of the .aec file and of the decoded pixels (each engine
decodes its own files). Plus a tiled 1280x1152 mosaic, an effort-1 refinement of a crop, and one
training step's loss and gradients (float tolerance). Pixels from g_s depend on the CPU and the
thread count: compare checkouts on one machine.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def sha(b) -> str:
    return hashlib.sha256(bytes(b)).hexdigest()[:16]


def engines(model: str):
    """(numpy engine, torch engine on the CPU) for a shipped model, in either code layout."""
    import torch

    try:
        from aecodec.codec import engines as eng  # the layout with codec/engines/
    except ImportError:
        from aecodec.codec import coder
        from aecodec.codec.torch_engine import TorchEngine
        from aecodec.codec.weights import load_model

        return coder.engine_for("cpu", model=model), TorchEngine(load_model(model), torch.device("cpu"))
    return eng.create("numpy", model), eng.create("torch", model, device="cpu")


def cases(kodak: Path):
    for p in sorted(kodak.glob("kodim*.png")):
        with Image.open(p) as im:
            yield p.stem, np.asarray(im.convert("RGB"))


def mosaic(kodak: Path) -> np.ndarray:
    tiles = [np.asarray(Image.open(kodak / f"kodim{i:02d}.png").convert("RGB"))[:512, :512] for i in (1, 2, 3, 5, 7, 8)]
    img = np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:], 1)], 0)  # 1024 x 1536
    return np.pad(img, ((0, 128), (0, 0), (0, 0)), mode="reflect")[:, :1280]


def coding(kodak: Path) -> dict:
    from aecodec.codec import coder
    from aecodec.codec.zoo import DEFAULT_MODEL, shipped_models

    out = {}
    images = list(cases(kodak))
    for model in sorted(shipped_models()):
        for ename, engine in zip(("numpy", "torch"), engines(model)):
            qs = (1, 4, 8, 4.5) if model == DEFAULT_MODEL else (1, 4, 8)
            for name, rgb in images:
                for q in qs:
                    data = coder.encode(rgb, "RGB", q, engine=engine)
                    px, _ = coder.decode(data, engine=engine)
                    out[f"{model}/{ename}/{name}/q{q}"] = [sha(data), sha(px)]
                print(model, ename, name, file=sys.stderr, flush=True)
            if model == DEFAULT_MODEL:
                big = mosaic(kodak)
                data = coder.encode(big, "RGB", 4, engine=engine)
                out[f"{model}/{ename}/mosaic/q4"] = [sha(data), sha(coder.decode(data, engine=engine)[0])]
                crop = images[22][1][128:384, 256:512]
                data = coder.encode(crop, "RGB", 4, engine=engine, effort=1) if ename == "torch" else None
                if data is not None:
                    out[f"{model}/{ename}/kodim23-crop/q4/effort1"] = [sha(data), sha(coder.decode(data, engine=engine)[0])]
    return out


def train_step() -> dict:
    """Loss and gradient norms of one step of the default recipe from the default model."""

    import torch

    from aecodec.train.checkpoint import initial_model
    from aecodec.train.config import TrainConfig
    from aecodec.train.step import Trainer

    torch.manual_seed(0)
    model = initial_model(None).to(memory_format=torch.channels_last).train()
    trainer = Trainer(model, TrainConfig(data="unused"))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((2, 3, 128, 128), generator=gen).contiguous(memory_format=torch.channels_last)
    q = torch.tensor([2, 7])
    noise = torch.rand((2, 192, 8, 8), generator=gen) - 0.5
    out = trainer.net(x, q, 96, autocast=torch.bfloat16, noise=noise)
    from aecodec.train.step import rd_loss

    loss, bpp, mse = rd_loss(out, x, q)
    loss.backward()
    grads = {n: p.grad.double().norm().item() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return {"loss": loss.item(), "bpp": bpp.tolist(), "mse": mse.tolist(), "grads": grads}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("action", choices=["write", "check"])
    p.add_argument("path")
    p.add_argument("--kodak", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"))
    args = p.parse_args()
    now = {"coding": coding(Path(args.kodak)), "train_step": train_step()}
    if args.action == "write":
        Path(args.path).write_text(json.dumps(now, indent=1))
        print(f"wrote {args.path}: {len(now['coding'])} codings")
        return 0
    ref = json.loads(Path(args.path).read_text())
    bad = [k for k in ref["coding"] if ref["coding"][k] != now["coding"].get(k)]
    for k in bad:
        print(f"differs: {k}: {ref['coding'][k]} -> {now['coding'].get(k)}")
    a, b = ref["train_step"], now["train_step"]
    rel = max(abs(a["grads"][n] - b["grads"].get(n, float("nan"))) / max(a["grads"][n], 1e-12) for n in a["grads"])
    print(f"{len(ref['coding']) - len(bad)}/{len(ref['coding'])} codings identical; training step: "
          f"loss {a['loss']:.6f} -> {b['loss']:.6f}, gradient norms max relative difference {rel:.2e}, "
          f"{len(a['grads'])} -> {len(b['grads'])} parameters with gradients")
    ok = not bad and abs(a["loss"] - b["loss"]) < 1e-4 * abs(a["loss"]) and rel < 1e-3 and a["grads"].keys() == b["grads"].keys()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
