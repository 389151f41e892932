"""Training on several processes: torchrun + DistributedDataParallel.

`torchrun --nproc_per_node=N -m aecodec train ...` (and the same with --nnodes / a rendezvous
endpoint across machines) starts N copies of `aecodec train`; torchrun's environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) tells each which it is. NCCL on GPUs, gloo on CPUs.

- Each rank draws its own crops and noise (generators seeded per rank); DDP averages the
  gradients, so one step sees world_size x batch crops: the global batch.
- The entropy bottleneck's quantiles are trained by their own auxiliary loss outside the forward
  pass; DDP ignores them and their gradients are averaged here, so every rank keeps the same ones.
- Only rank 0 writes the state, the logs and the evaluations. All ranks stop at the same step:
  the stop request (signal, time limit) is agreed on with one all-reduce per step.
"""
from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("AECODEC_DIST_TIMEOUT", 600)))
AUX_PARAMS = ("entropy_bottleneck.quantiles",)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device: str) -> tuple[World, torch.device]:
    """Join the process group if launched by torchrun; pick this process's device."""
    size = int(os.environ.get("WORLD_SIZE", 1))
    world = World(int(os.environ.get("RANK", 0)), size, int(os.environ.get("LOCAL_RANK", 0)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            from ..errors import AecError

            raise AecError("--device cuda was requested but no CUDA GPU is available")
        dev = torch.device("cuda", world.local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT)
    return world, dev


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The module to run forward through: DDP around the model when distributed."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    DDP._set_params_and_buffers_to_ignore_for_model(model, list(AUX_PARAMS))
    # the model has no buffers that change in training (no batch norm): nothing to broadcast
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return DDP(model, device_ids=[device] if device.type == "cuda" else None, broadcast_buffers=False)


def average_gradients(params, world: World) -> None:
    """All-reduce (mean) the gradients of parameters DDP does not handle."""
    if not world.distributed:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world.size)


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank if it is true on any (so all ranks leave the loop at the same step)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
