"""tools/transfer.py and tools/lease.py: run states through size-limited channels, and the packing
of a GPU lease."""
import pytest
import torch
from safetensors.torch import load_file

import lease
import transfer
from aecodec.errors import AecError
from aecodec.train.checkpoint import STATE_FILE, read_meta
from aecodec.train.loop import train

TINY = {"batch": 2, "crop": 64, "lr": 1e-3, "threads": 1}


def test_state_transfer_split_and_join(photo_dir, tiny_weights, tmp_path):
    run = tmp_path / "run"
    train(run, {**TINY, "data": str(photo_dir)}, init=str(tiny_weights), max_steps=2, quiet=True)
    state = run / STATE_FILE
    parts = transfer.split(state, tmp_path / "parts", limit_mib=0.2)
    assert len(parts) > 2
    for p in parts:  # within the limit, or a single tensor larger than it
        assert p.stat().st_size <= 0.2 * 2 ** 20 or len(load_file(str(p))) == 1, p.name
    joined = transfer.join(list(reversed(parts)), tmp_path / "back" / STATE_FILE)
    a, b = load_file(str(state)), load_file(str(joined))
    assert not any(k.endswith("._quantized_cdf") for k in a)  # derived tables stay out of run states
    assert a.keys() == b.keys()
    for k in a:
        if k.startswith(("opt.", "aux.")) and a[k].dim() > 0:  # Adam moments travel as bfloat16
            assert torch.allclose(a[k], b[k], rtol=2 ** -8, atol=0), k
        else:
            assert torch.equal(a[k], b[k]), k
    assert read_meta(joined) == read_meta(state)
    assert train(tmp_path / "back", {}, max_steps=1, quiet=True) == 3  # the joined state resumes
    with pytest.raises(AecError, match="missing"):
        transfer.join(parts[:-1], tmp_path / "x" / STATE_FILE)
    exact = transfer.split(state, tmp_path / "exact", exact=True)
    b = load_file(str(transfer.join(exact, tmp_path / "e" / STATE_FILE)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # weights only: the EMA weights exactly, ~1/3 of the bytes; a new run starts from them
    light = transfer.split(state, tmp_path / "light", weights_only=True)
    init = transfer.join(light, tmp_path / "init.safetensors")
    assert init.stat().st_size < 0.6 * state.stat().st_size
    w = load_file(str(init))
    assert not any(k.startswith(("opt.", "aux.")) for k in w)
    assert all(torch.equal(a[k], w[k]) for k in a if k.startswith("ema."))
    assert train(tmp_path / "new", {**TINY, "data": str(photo_dir)}, init=str(init), max_steps=1, quiet=True) == 1
    from aecodec.train.checkpoint import initial_model
    m = initial_model(str(init)).state_dict()
    assert all(torch.equal(m[k[4:]], a[k]) for k in a if k.startswith("ema."))


def test_lease_prepare_packs_calls_within_the_limit(photo_dir, tiny_weights, tmp_path):
    """Weights, photo shards and the job for a GPU lease: every call within its byte limit, every
    photo exactly once, the weights joinable into a file a new run starts from."""
    import subprocess

    run = tmp_path / "run"
    train(run, {**TINY, "data": str(photo_dir)}, init=str(tiny_weights), max_steps=1, quiet=True)
    repo = tmp_path / "repo"
    (repo / "wheels").mkdir(parents=True)
    (repo / "wheels" / "x.whl").write_bytes(b"w" * 1000)
    (repo / "code.py").write_bytes(b"c" * 20_000)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "code.py"], check=True)
    with pytest.raises(AecError, match="not ignored"):
        lease.prepare(run / STATE_FILE, photo_dir, repo / "gpu", repo, repo / "wheels", call_mib=0.5)
    (repo / ".git" / "info" / "exclude").write_text("/gpu/\n/wheels/\n")
    limit = 0.5 * 2 ** 20
    text = lease.prepare(run / STATE_FILE, photo_dir, repo / "gpu", repo, repo / "wheels", call_mib=0.5)
    assert lease.tree_bytes(repo) == 20_000
    shards = sorted((repo / "gpu").glob("p*"))
    assert len(shards) > 1 and f"{len(shards)} shards" in text
    names = [p.name for d in shards for p in d.iterdir()]
    assert sorted(names) == sorted(p.name for p in photo_dir.iterdir())
    first = lease._size(repo / "gpu" / "init") + lease._size(repo / "wheels")
    for i, d in enumerate(shards):
        assert 20_000 + lease._size(d) + (first if i == 0 else 0) <= limit
    assert "bash gpu/job.sh A B" in text and (repo / "gpu" / "job.sh").exists()
    init = transfer.join(sorted((repo / "gpu" / "init").glob("part*")), tmp_path / "init.safetensors")
    assert train(tmp_path / "new", {**TINY, "data": str(photo_dir)}, init=str(init), max_steps=1, quiet=True) == 1
