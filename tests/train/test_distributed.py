"""torchrun / DDP training on the CPU (gloo): equivalence with one process, resume across world
sizes, and a crashing rank."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from aecodec.codec.model import AecModel
from aecodec.codec.spec import ModelConfig
from aecodec.train.checkpoint import STATE_FILE, read_meta
from aecodec.train.config import TrainConfig
from aecodec.train.distributed import World, setup, teardown
from aecodec.train.step import Trainer

from conftest import REPO

B, CROP, K = 4, 64, 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(B, 3, CROP, CROP, generator=g).contiguous(memory_format=torch.channels_last)
    noise = torch.rand(B, 24, CROP // 16, CROP // 16, generator=g) - 0.5
    return x, torch.tensor([1, 3, 6, 8]), noise


def _tiny() -> AecModel:
    torch.manual_seed(0)
    return AecModel(ModelConfig(N=16, M=24, family="mean-scale"))


def _trainer(world=World()):
    model = _tiny().to(memory_format=torch.channels_last).train()
    # CompressAI draws z's training noise itself, per process: zero it so both sides agree
    eb, quantize = model.entropy_bottleneck, model.entropy_bottleneck.quantize
    eb.quantize = lambda inputs, mode, means=None: inputs if mode == "noise" else quantize(inputs, mode, means)
    return Trainer(model, TrainConfig(bf16=False, lr=1e-3), world)


def _rank_step(rank: int, size: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    world, _ = setup("cpu")
    t = _trainer(world)
    x, q, noise = _inputs()
    part = slice(rank * B // size, (rank + 1) * B // size)
    t.step(x[part], q[part], K, noise[part])
    if rank == 0:
        save_file({k: v.contiguous() for k, v in t.model.state_dict().items()}, out)
    teardown(world)


def test_two_ranks_take_the_same_step_as_one_process(tmp_path):
    """2 ranks x batch 2 == 1 process x batch 4 on the same crops, qualities and noise."""
    out = str(tmp_path / "ddp.safetensors")
    mp.start_processes(_rank_step, args=(2, _free_port(), out), nprocs=2, start_method="spawn")
    torch.set_num_threads(1)
    single = _trainer()
    x, q, noise = _inputs()
    single.step(x, q, K, noise)
    ddp = load_file(out)
    ref = single.model.state_dict()
    moved = 0
    for k, v in ddp.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, ref[k], rtol=1e-5, atol=1e-6, msg=k)
            moved += int(not torch.equal(v, _tiny().state_dict()[k]))
    assert moved > 20  # the step changed the weights (quantiles included)


def _torchrun(nproc: int, *args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--master_port", str(_free_port()), "-m", "aecodec", "train", *args]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_rank_run_checkpoints_and_resumes_on_one(photo_dir, tiny_weights, tmp_path):
    rdir = tmp_path / "run"
    common = [str(rdir), "--device", "cpu", "--threads", "1", "--quiet"]
    r = subprocess.run(_torchrun(2, *common, "--data", str(photo_dir), "--init", str(tiny_weights),
                                 "--steps", "2", "--batch", "2", "--crop", "64"),
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = read_meta(rdir / STATE_FILE)
    assert meta["step"] == 2
    assert meta["counters"]["megapixels"] == pytest.approx(2 * 2 * 2 * 64 * 64 / 1e6)  # 2 ranks
    r = subprocess.run([sys.executable, "-m", "aecodec", "train", *common, "--steps", "1"],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = read_meta(rdir / STATE_FILE)
    assert meta["step"] == 3 and meta["config"]["batch"] == 2
    assert meta["counters"]["megapixels"] == pytest.approx((8 + 2) * 64 * 64 / 1e6)
    assert "resuming" in r.stdout


@pytest.mark.slow
def test_a_crashing_rank_ends_the_run_with_an_error(photo_dir, tiny_weights, tmp_path):
    rdir = tmp_path / "run"
    p = subprocess.Popen(_torchrun(2, str(rdir), "--data", str(photo_dir), "--init", str(tiny_weights),
                                   "--batch", "2", "--crop", "64", "--device", "cpu", "--threads", "1",
                                   "--quiet", "--minutes", "5"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(1)
            out = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout
            workers = [int(w) for w in out.split()]
        assert len(workers) == 2, "torchrun did not start two workers"
        time.sleep(8)  # let them reach the training loop
        os.kill(workers[-1], signal.SIGKILL)  # a rank dies (out of memory, a node lost, ...)
        _, err = p.communicate(timeout=120)  # no hang: torchrun ends the other rank
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert "failed" in err.lower() or "error" in err.lower(), err[-2000:]
