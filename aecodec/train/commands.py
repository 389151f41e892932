"""`aecodec train` and `aecodec export` (argument parsing lives in cli.py)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from ..errors import AecError
from .checkpoint import STATE_FILE, initial_model, load_state, read_meta, training_totals
from .config import DATA_ENV
from .data import validation_set
from .evaluate import bd_vs_jpeg2000, coding_copy, evaluate, format_result, jpeg2000_anchor

_RECIPE_FLAGS = ("family", "means", "context", "train_only", "widen", "integer_bits", "data", "batch", "crop", "lr", "ema_decay", "k_min", "bf16", "compile", "threads", "seed")


def _overrides(args) -> dict:
    out = {name: getattr(args, name) for name in _RECIPE_FLAGS if getattr(args, name, None) is not None}
    if "data" in out:
        out["data"] = str(Path(out["data"]).resolve())
    return out


def data_dir(given: str | None, what: str) -> str:
    """The training folder: --data, else $AECODEC_TRAIN_DATA; a clear error without either."""
    data = given or os.environ.get(DATA_ENV)
    if not data:
        raise AecError(f"{what} needs the training images: give --data DIR or set {DATA_ENV}")
    return str(Path(data).resolve())


def _validate(model, data_dir: str, cache_dir: Path, state: dict | None = None):
    images = validation_set(data_dir)
    anchor = jpeg2000_anchor(images, cache_dir)
    result = evaluate(coding_copy(model, state), images)
    return result, bd_vs_jpeg2000(result, anchor), len(images)


def cmd_train(args) -> int:
    from .loop import run_dir, train, write_eval

    rdir = run_dir(args.run)
    if args.evaluate and args.init:  # a weights file or shipped model instead of a run
        model = initial_model(args.init)
        data = data_dir(args.data, "--evaluate --init")
        result, bd, n = _validate(model, data, rdir.parent)
        print(f"{args.init}: validation ({n} images):")
        print(format_result(result, bd))
        return 0
    if args.evaluate:
        path = rdir / STATE_FILE
        if not path.exists():
            raise AecError(f"{rdir}: no training state to evaluate")
        trainer, step, _, counters = load_state(path)
        torch.set_num_threads(trainer.cfg.threads or torch.get_num_threads())
        # --data: the run may have trained elsewhere (a GPU host) with the same images at another path
        data = str(Path(args.data).resolve()) if args.data else trainer.cfg.data
        result, bd, n = _validate(trainer.model, data, rdir.parent, trainer.ema)
        write_eval(rdir, step, counters, result, bd)
        total = training_totals(step, counters)
        gpu = f", {60 * counters['gpu_hours']:.1f} GPU minutes" if counters.get("gpu_hours") else ""
        print(f"{rdir} step {step}, {counters['megapixels']:.0f} Mpx, {counters['cpu_hours']:.2f} CPU core-hours{gpu} "
              f"(with the weights it started from: {total['steps']} steps, {total['megapixels']:.0f} Mpx, "
              f"{total['cpu_hours']:.2f} CPU h), validation (EMA weights, {n} images):")
        print(format_result(result, bd))
        return 0
    overrides = _overrides(args)
    if not (rdir / STATE_FILE).exists():
        overrides["data"] = data_dir(args.data, "a new run")
    train(rdir, overrides, init=args.init, max_steps=args.steps, max_minutes=args.minutes,
          save_minutes=args.save_minutes, log_seconds=args.log_seconds, quiet=args.quiet, device=args.device)
    return 0


def cmd_export(args) -> int:
    from .export import choose_default_k, integer_exponents, write_weights
    from .loop import run_dir

    src = Path(args.source)
    if not src.exists():
        src = run_dir(args.source)
    if src.is_dir():
        src = src / STATE_FILE
    if not src.exists():
        raise AecError(f"{args.source}: no such run or file")
    model = initial_model(str(src))  # EMA weights of a run state, or a weights file
    # a model trained integer-aware (a run's or an export's: its config records the narrow bits)
    # keeps the exponents and bits it trained with; others are calibrated here, at their bits
    trained_integer = model.config.integer is not None and model.config.integer_bits is not None
    extra = {}
    try:
        meta = read_meta(src)
        extra = {"train_steps": meta["step"], "train_megapixels": round(meta["counters"]["megapixels"]),
                 "train_history": json.dumps(training_totals(meta["step"], meta["counters"]))}
        run_data = meta["config"]["data"]
    except AecError:
        run_data = None
    coder = coding_copy(model)
    images = validation_set(args.data or run_data or data_dir(None, "calibrating and choosing k"))[: args.k_images]
    if not trained_integer:
        bits = coder.config.integer_bits
        coder.config = coder.config.with_integer(integer_exponents(coder, images, bits), bits)
    if args.default_k in (None, "auto"):
        default_k = choose_default_k(coder, images)
    else:
        default_k = [int(v) for v in args.default_k.split(",")]
        if len(default_k) == 1:
            default_k *= model.config.qualities
    if not math.prod(1 <= k <= model.config.M for k in default_k) or len(default_k) != model.config.qualities:
        raise AecError(f"--default-k needs {model.config.qualities} values in 1..{model.config.M}")
    c = model.config
    name = args.name or f"aec-{c.family_impl.tag}-{c.N}-{c.M}"
    write_weights(coder, Path(args.output), name, default_k, extra, args.force, args.register)
    return 0
