"""The run that never stops: `aecodec train` starts a run or resumes it where it stopped.

A run lives in RUNS_DIR/NAME (outside the repository): `state.safetensors` (everything needed to
resume, rewritten atomically every few minutes and at exit), `log.csv` (one row per log interval)
and `eval.jsonl` (validation results). SIGTERM or Ctrl-C finishes the current step, saves and
exits 0, so a session can stop the run cleanly at any time; SIGSTOP/SIGCONT pause it for timings.
If the directory is gone (a new machine), the run starts again from the shipped weights.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import signal
import time
from pathlib import Path

import torch

from ..codec.config import PAD
from ..codec.model import AecModel
from ..errors import AecError
from ..imageio import list_images
from . import distributed
from .checkpoint import (STATE_FILE, grown, initial_history, load_state, rank_generator, read_meta, save_state,
                         source_weights, training_totals)
from .distributed import World
from .config import CALIBRATION_IMAGES, RUNS_DIR, TrainConfig, parse_integer_bits
from .data import CropSampler, split
from .grow import widen, widened
from .latent_cache import LatentCache, keep, step_inputs
from .step import Trainer, draw_k

FINITE_CHECK_STEPS = 100  # how often the loss is checked for NaN (a check syncs a GPU)
LOG_FIELDS = ["time", "step", "megapixels", "cpu_hours", "loss", "bpp", "psnr", "steps_per_s", "mpx_per_s"]


ARRANGE_CROPS = 16  # training crops a newly grown model's family may look at first (Family.arrange)


def run_dir(name_or_path: str) -> Path:
    p = Path(name_or_path)
    return p if (p.is_absolute() or len(p.parts) > 1) else RUNS_DIR / name_or_path


def _set_threads(cfg: TrainConfig) -> None:
    # 0 = this process's share of the cores (torchrun may start several processes per machine)
    n = cfg.threads or max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    torch.set_num_threads(n)


def start_or_resume(rdir: Path, cfg_override: dict, init: str | None, world: World, device: torch.device):
    path = rdir / STATE_FILE
    if path.exists():
        stored = read_meta(path)["config"]
        defaults = TrainConfig()
        if any(key in cfg_override and cfg_override[key] != stored.get(key, getattr(defaults, key))
               for key in ("family", "means", "context", "train_only", "widen", "integer_bits")):
            raise AecError(f"{rdir}: a run keeps its architecture; start a new run (another name) with --init")
        trainer, step, gen, counters = load_state(path, cfg_override, world, device)
        if world.main:
            print(f"resuming {rdir} at step {step} ({counters['megapixels']:.0f} Mpx seen, "
                  f"{counters['cpu_hours']:.2f} CPU h)", flush=True)
        return trainer, step, gen, counters
    cfg = TrainConfig.from_dict(cfg_override)
    if not cfg.data:
        raise AecError("a new run needs its training images: --data DIR")
    config, state = source_weights(init)
    model: AecModel = grown(config, state, TrainConfig.target_family(cfg_override, config and config.family))
    if cfg.widen:
        model = widen(model, widened(model.config, cfg.widen))
    family = model.config.family_impl
    if config is not None and family.name != config.family:  # grown: its family's last step sees crops
        files, _ = split(list_images(cfg.data))
        pick = random.Random(cfg.seed).sample(files, min(ARRANGE_CROPS, len(files)))
        torch.manual_seed(cfg.seed)  # the same arrangement on every rank
        family.arrange(model, CropSampler(pick, cfg.crop).batch(len(pick), random.Random(cfg.seed)))
    cfg = dataclasses.replace(cfg, family=family.name, means=not family.scales_only, context=family.uses_context)
    bits = parse_integer_bits(cfg.integer_bits)
    if bits is not None:  # the exponents, once: the networks then train around them
        model = calibrated(model, bits, cfg.data)
        if world.main:
            print(f"integer-aware entropy networks ({bits[0]}-bit weights, {bits[1]}-bit activations): "
                  f"exponents {dict(model.config.integer)}", flush=True)
    elif model.config.integer_bits:  # a narrow source, trained on as float networks: 12-bit at export
        model = _with_config(model, model.config.with_integer(None))
    if world.main:
        torch.manual_seed(cfg.seed)
        gen = random.Random(cfg.seed)
    else:
        gen = rank_generator(cfg.seed, world.rank, 0)
    trainer = Trainer(model.to(memory_format=torch.channels_last).train(), cfg, world, device)
    if world.main:
        print(f"new run {rdir} from {init or 'the shipped default model'}", flush=True)
    counters = {"megapixels": 0.0, "cpu_hours": 0.0, "wall_hours": 0.0, "before": initial_history(init)}
    return trainer, 0, gen, counters


def calibrated(model: AecModel, bits: tuple[int, int], data: str) -> AecModel:
    """The model with integer entropy networks of these bits, calibrated on validation images."""
    from .data import validation_set
    from .evaluate import coding_copy
    from .export import integer_exponents

    if not model.family.integer_networks:
        raise AecError(f"the {model.family.name} family has no integer entropy networks")
    exps = integer_exponents(coding_copy(model), validation_set(data)[:CALIBRATION_IMAGES], bits)
    return _with_config(model, model.config.with_integer(exps, bits))


def _with_config(model: AecModel, config) -> AecModel:
    out = AecModel(config)  # integer-aware where the config has integer_bits (codec/integer_torch.py)
    out.load_state_dict(model.state_dict())
    return out


class _StopFlag:
    """SIGTERM / SIGINT ask the loop to stop after the current step."""

    def __init__(self):
        self.stop = False
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame):
        self.stop = True

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)


def train(rdir: Path, cfg_override: dict, init: str | None = None, max_steps: int | None = None,
          max_minutes: float | None = None, save_minutes: float = 5.0, log_seconds: float = 60.0,
          quiet: bool = False, device: str = "auto") -> int:
    """Train until stopped (signal), max_steps more steps or max_minutes; returns the final step.
    Under torchrun every rank runs this; see `distributed`."""
    if cfg_override.get("crop", PAD) % PAD:
        raise AecError(f"crop must be a multiple of {PAD} (the model's total downsampling)")
    world, dev = distributed.setup(device)
    try:
        return _train(rdir, cfg_override, init, max_steps, max_minutes, save_minutes, log_seconds,
                      quiet or not world.main, world, dev)
    finally:
        distributed.teardown(world)


def _train(rdir, cfg_override, init, max_steps, max_minutes, save_minutes, log_seconds, quiet, world, dev):
    trainer, step, gen, counters = start_or_resume(rdir, cfg_override, init, world, dev)
    cfg = trainer.cfg
    _set_threads(cfg)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest convolution once
    compiled = cfg.compile and dev.type == "cpu" and not trainer.rate_only  # untimed on GPUs
    if compiled:
        trainer.compile()
    if world.main:
        rdir.mkdir(parents=True, exist_ok=True)
    files, held_out = split(list_images(cfg.data))  # one in five held out: a lone image still trains
    sampler = CropSampler(files, cfg.crop, progress=not quiet)
    if world.main:
        print(f"{len(files)} training images ({len(held_out)} more held out for validation; "
              f"{sampler.pixels / 1e6:.0f} Mpx at {len(sampler.images)} image scales), batch {cfg.batch}x{cfg.crop}x{cfg.crop} x {world.size} process(es) on {dev}, "
              f"lr {cfg.lr:g}, bf16 {cfg.bf16}, compiled {compiled}, {torch.get_num_threads()} threads", flush=True)
    log_path = rdir / "log.csv"
    log = writer = None
    if world.main:
        new_log = not log_path.exists()
        log = open(log_path, "a", newline="")
        writer = csv.DictWriter(log, LOG_FIELDS)
        if new_log:
            writer.writeheader()

    # g_a frozen: reuse the latents of recent crops (latent_cache.py)
    cache = LatentCache() if trainer.rate_only else None
    flag = _StopFlag()
    M = trainer.model.config.M
    Q = trainer.model.config.qualities
    px = cfg.batch * cfg.crop * cfg.crop * world.size  # pixels per step, all ranks
    end_step = step + max_steps if max_steps else None
    t_start = time.time()
    t_save = t_log = time.time()
    steps_log, acc = 0, {"loss": 0.0, "bpp": 0.0, "mse_db": 0.0}

    cpu_mark, wall_mark = time.process_time(), time.time()  # counted into `counters` up to here
    first_step, diverged, stats = step, None, None

    def save():
        nonlocal cpu_mark, wall_mark
        if not world.main:
            return
        # on a GPU the host's CPU time says nothing of the work done: count GPU hours there instead
        if dev.type == "cuda":
            counters["gpu_hours"] = counters.get("gpu_hours", 0.0) + (time.time() - wall_mark) / 3600
        else:
            counters["cpu_hours"] += (time.process_time() - cpu_mark) / 3600
        counters["wall_hours"] += (time.time() - wall_mark) / 3600
        cpu_mark, wall_mark = time.process_time(), time.time()
        save_state(rdir / STATE_FILE, trainer, step, gen, counters)

    try:
        while True:
            stop = flag.stop or (max_minutes is not None and time.time() - t_start > max_minutes * 60)
            if distributed.any_rank(stop, world, dev) or (end_step is not None and step >= end_step):
                break
            x, y = step_inputs(trainer, cache, sampler, cfg.batch, gen, dev)
            quality = torch.tensor([gen.randint(1, Q) for _ in range(cfg.batch)], device=dev)
            k = draw_k(cfg, M, gen)
            stats = trainer.step(x, quality, k, y=y)
            keep(cache, stats, cached=x is None)
            step += 1
            # once a loss is NaN or infinite the weights are too: stop before that state is saved
            if (step - first_step) % FINITE_CHECK_STEPS == 1 and not _finite(stats):
                diverged = step
                break
            counters["megapixels"] += px / 1e6
            steps_log += 1
            # summed on the device: a .item() per step would stall a GPU on every step
            acc["loss"] += stats["loss"]
            acc["bpp"] += stats["bpp"].mean()
            acc["mse_db"] += (10 * torch.log10(1 / stats["mse"].clamp_min(1e-10))).mean()
            now = time.time()
            if world.main and now - t_log >= log_seconds:
                rate = steps_log / (now - t_log)
                row = {"time": int(now), "step": step, "megapixels": round(counters["megapixels"], 1),
                       "cpu_hours": round(counters["cpu_hours"] + (0.0 if dev.type == "cuda" else
                                                                      (time.process_time() - cpu_mark) / 3600), 4),
                       "loss": round(float(acc["loss"]) / steps_log, 4), "bpp": round(float(acc["bpp"]) / steps_log, 4),
                       "psnr": round(float(acc["mse_db"]) / steps_log, 3), "steps_per_s": round(rate, 3),
                       "mpx_per_s": round(rate * px / 1e6, 4)}
                writer.writerow(row)
                log.flush()
                if not quiet:
                    print(" ".join(f"{k}={v}" for k, v in row.items() if k != "time"), flush=True)
                t_log, steps_log, acc = now, 0, dict.fromkeys(acc, 0.0)
            if now - t_save >= save_minutes * 60:
                if not _finite(stats):
                    diverged = step
                    break
                save()
                t_save = now
    finally:
        if diverged is None and not _finite(stats):
            diverged = step
        if diverged is None:
            save()
        flag.restore()
        if log:
            log.close()
    if diverged is not None:
        raise AecError(f"the training loss is not finite at step {diverged} (NaN or infinite): stopped "
                       f"without saving it; the run keeps its last good save. Check --init and --lr")
    if world.main:
        print(f"saved {rdir / STATE_FILE} at step {step}", flush=True)
    return step


def _finite(stats: dict | None) -> bool:
    return stats is None or math.isfinite(float(stats["loss"]))


def write_eval(rdir: Path, step: int, counters: dict, result: dict, bd: float) -> None:
    with open(rdir / "eval.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "megapixels": counters["megapixels"],
                            "cpu_hours": counters["cpu_hours"], "total": training_totals(step, counters),
                            "bd_vs_jpeg2000": bd, **result}) + "\n")
