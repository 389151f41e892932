"""tools/ab_latency.py: two checkouts timed side by side, each process on its own checkout's code."""
import subprocess
import sys
from pathlib import Path

import pytest

import ab_latency


@pytest.mark.slow
def test_each_side_runs_its_own_checkout(tmp_path, capsys, monkeypatch):
    """HEAD against the working tree: both sides report every job, and the old side's processes
    import the worktree's package, not the working tree's (the trap: `python -m aecodec` from the
    repository's folder takes its package from there)."""
    seen = []
    real_run = subprocess.run

    def spy(cmd, *args, **kwargs):
        if kwargs.get("env") and "PYTHONPATH" in kwargs["env"]:
            probe = real_run([sys.executable, "-c", "import aecodec; print(aecodec.__file__)"], env=kwargs["env"],
                             cwd=kwargs.get("cwd"), capture_output=True, text=True)
            seen.append((kwargs["env"]["PYTHONPATH"], probe.stdout.strip()))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(ab_latency.subprocess, "run", spy)
    monkeypatch.setattr(ab_latency, "training_pid", lambda: None)
    crop = tmp_path / "crop.png"
    from PIL import Image

    Image.open(ab_latency.ROOT / "aecodec" / "data" / "kodim23.png").crop((0, 0, 128, 96)).save(crop)
    assert ab_latency.main(["HEAD", "--rounds", "1", "--image", str(crop), "--engines", "numpy"]) == 0
    out = capsys.readouterr().out
    for job in ("numpy encode", "numpy decode", "one-shot compress", "one-shot decompress"):
        assert job in out
    assert seen and all(Path(package).is_relative_to(Path(checkout)) for checkout, package in seen)
    assert {Path(checkout) == ab_latency.ROOT for checkout, _ in seen} == {True, False}
