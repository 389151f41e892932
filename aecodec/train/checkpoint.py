"""The full state of a training run in one safetensors file (no pickle), written atomically.

Tensors: model (`model.*`), EMA weights (`ema.*`), both Adams' per-parameter state
(`opt.<i>.<name>`, `aux.<i>.<name>`) and torch's RNG state (`rng.torch`). Metadata (JSON): the
recipe, the step, the data RNG's state, counters (megapixels seen, CPU seconds) and the
optimizers' hyper-parameters. A run resumes exactly where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..codec import families
from ..codec.model import AecModel, is_derived_table
from ..codec.spec import ModelConfig
from ..codec.weights import DEFAULT_MODEL, Weights, read_metadata, shipped_model_bytes
from ..errors import AecError
from .config import TrainConfig
from .distributed import World
from .step import Trainer

STATE_FILE = "state.safetensors"


def _flat_optimizer(prefix: str, opt: torch.optim.Optimizer, out: dict) -> list:
    sd = opt.state_dict()
    for i, st in sd["state"].items():
        for name, t in st.items():
            out[f"{prefix}.{i}.{name}"] = t.detach().cpu().contiguous()
    return sd["param_groups"]


def _unflat_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        if key.startswith(prefix + "."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_state(path: Path, trainer: Trainer, step: int, gen: random.Random, counters: dict) -> None:
    # the coding tables are left out: derived from the weights, rebuilt by whatever codes (3 MB)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()
               if not is_derived_table(k)}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in trainer.ema.items()})
    groups = _flat_optimizer("opt", trainer.opt, tensors)
    aux_groups = _flat_optimizer("aux", trainer.aux_opt, tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "format": "aecodec-run-1",
        "step": json.dumps(step),
        "config": json.dumps(trainer.cfg.to_dict()),
        "model_config": json.dumps(trainer.model.config.to_dict()),
        "data_rng": json.dumps(gen.getstate()),
        "counters": json.dumps(counters),
        "opt_groups": json.dumps(groups),
        "aux_groups": json.dumps(aux_groups),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_meta(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "aecodec-run-1":
        raise AecError(f"{path}: not an aecodec training state")
    return {k: json.loads(v) for k, v in meta.items() if k != "format"}


def load_state(path: Path, cfg_override: dict | None = None, world: World = World(),
               device: torch.device = torch.device("cpu")):
    """-> (trainer, step, data generator, counters). cfg_override: recipe fields changed on resume.

    Rank 0 continues the saved generators; other ranks (of a distributed run, whatever the
    world size that saved the state) get fresh ones seeded by (seed, rank, step)."""
    meta = read_meta(path)
    tensors = load_file(str(path))
    cfg = TrainConfig.from_dict({**meta["config"], **(cfg_override or {})})
    model = AecModel(ModelConfig.from_dict(meta["model_config"]))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    trainer = Trainer(model.to(memory_format=torch.channels_last).train(), cfg, world, device)
    trainer.ema = {k[4:]: v.to(device) for k, v in tensors.items() if k.startswith("ema.")}
    _unflat_optimizer("opt", trainer.opt, tensors, meta["opt_groups"])
    _unflat_optimizer("aux", trainer.aux_opt, tensors, meta["aux_groups"])
    for group in trainer.opt.param_groups:  # a changed recipe takes effect
        group["lr"] = cfg.lr
    for group in trainer.aux_opt.param_groups:
        group["lr"] = cfg.aux_lr
    step = int(meta["step"])
    if world.main:
        torch.set_rng_state(tensors["rng.torch"])
        gen = random.Random()
        state = meta["data_rng"]
        gen.setstate((state[0], tuple(state[1]), state[2]))
    else:
        gen = rank_generator(cfg.seed, world.rank, step)
    return trainer, step, gen, meta["counters"]


def rank_generator(seed: int, rank: int, step: int) -> random.Random:
    """Data generator of a rank > 0 (also seeds torch's generator: the latent path's noise)."""
    torch.manual_seed(hash((seed, rank, step)) & 0x7FFF_FFFF)
    return random.Random(f"{seed}/{rank}/{step}")


def weight_keys(keys) -> list[str]:
    """The tensors of a run state that make up its weights: the EMA (`ema.*`), and the model's
    tensors the EMA lacks (integer buffers). What `initial_model` and `transfer split --weights-only` take."""
    ema = {k[4:] for k in keys if k.startswith("ema.")}
    return [k for k in keys if k.startswith("model.") and k[6:] not in ema] + [k for k in keys if k.startswith("ema.")]


def source_weights(init: str | None) -> tuple[ModelConfig | None, dict | None]:
    """(architecture, state dict) of what a new run starts from: exported weights or a run state's
    EMA weights (a path), a shipped model name, or "scratch" ((None, None)). The default is the
    shipped default model, so a machine that lost its run directory continues from what the
    repository ships."""
    if init == "scratch":
        return None, None
    if init is None or init in _shipped_names():
        source = AecModel.from_weights(Weights.shipped(init or DEFAULT_MODEL))
        return source.config, source.state_dict()
    p = Path(init)
    try:
        meta = read_meta(p)
    except AecError:
        source = AecModel.from_weights(Weights.from_file(p))
        return source.config, source.state_dict()
    except Exception as e:  # not safetensors at all
        raise AecError(f"{init}: cannot read ({e})") from None
    tensors = load_file(str(p))
    return ModelConfig.from_dict(meta["model_config"]), {k.split(".", 1)[1]: tensors[k] for k in weight_keys(tensors)}


def grown(config: ModelConfig | None, state: dict | None, family: str | None) -> AecModel:
    """The source model (source_weights) as a model of `family` (None: its own). A source of an
    earlier family grows into it through each family's `grow` (families.lineage), which keeps its
    coding unchanged at first: a scale-only model gains a zero mean head, a mean-scale one a
    context whose correction is zero. No source: a new model of `family`, randomly initialised."""
    if config is None:
        return AecModel(ModelConfig(family=family or "mean-scale"))
    if family is not None and family != config.family:
        try:
            path = families.lineage(config.family, family)
        except ValueError as e:
            raise AecError(str(e)) from None
        for fam in path:  # a new family's networks are float until an export calibrates them
            config = dataclasses.replace(config, family=fam.name, integer=None, integer_bits=None)
            state = fam.grow(state, AecModel(config))
    model = AecModel(config)
    model.load_state_dict(state)
    return model


def initial_model(init: str | None, family: str | None = None) -> AecModel:
    """grown(source_weights(init), family): a model to start from, or to evaluate."""
    return grown(*source_weights(init), family)


def training_totals(step: int, counters: dict) -> dict:
    """Steps, megapixels and CPU hours behind a run's current weights: this run's counters plus the
    history of the weights it started from (counters["before"])."""
    before = counters.get("before", {})
    return {"steps": int(before.get("steps", 0)) + int(step),
            "megapixels": round(float(before.get("megapixels", 0.0)) + counters["megapixels"], 3),
            "cpu_hours": round(float(before.get("cpu_hours", 0.0)) + counters["cpu_hours"], 3)}


def initial_history(init: str | None) -> dict:
    """The training history recorded with the weights a new run starts from (zeros if none): so a
    run restarted from the shipped weights on a new machine keeps counting where they left off."""
    if init == "scratch":
        return {}
    try:
        if init is None or init in _shipped_names():
            meta = read_metadata(shipped_model_bytes(init or DEFAULT_MODEL)[0])
            return json.loads(meta.get("train_history", "{}"))
        p = Path(init)
        try:
            meta = read_meta(p)
        except AecError:
            return json.loads(read_metadata(p.read_bytes()).get("train_history", "{}"))
        return training_totals(meta["step"], meta["counters"])
    except (OSError, ValueError, KeyError, AecError):
        return {}


def _shipped_names():
    from ..codec.zoo import shipped_models

    return shipped_models()
