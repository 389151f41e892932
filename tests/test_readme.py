"""The README's examples run as written: its command-line block line by line, in order, in a
scratch folder holding a photo.png (beside a small ../shared with one Kodak image), then its
Python block in the same folder."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _block(text: str, heading: str, lang: str) -> str:
    section = text[text.index(heading):]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_examples_run_as_written(tmp_path, kodim23):
    readme = (REPO / "README.md").read_text()
    work = tmp_path / "work"
    work.mkdir()
    kodim23.crop((200, 150, 456, 342)).save(work / "photo.png")
    kodak = tmp_path / "shared" / "data" / "kodak"
    kodak.mkdir(parents=True)
    kodim23.crop((300, 200, 396, 264)).save(kodak / "kodim23.png")
    reference = REPO.parent / "shared" / "reference" / "kodak"  # published points, if the checkout has them
    if reference.is_dir():
        shutil.copytree(reference, tmp_path / "shared" / "reference" / "kodak")
    else:
        (tmp_path / "shared" / "reference" / "kodak").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    lines = [line for line in _block(readme, "## Command line", "sh").splitlines() if line.strip()]
    assert len(lines) > 10
    for line in lines:
        command = line.split("  #")[0].strip()
        r = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{command}\n{r.stderr[-2000:]}"
    for made in ("photo.aec", "photo.decoded.png", "hi.tif", "aec/photo.aec", "png/photo.png", "piped.aec",
                 "my-bench/bd-rate.md"):
        assert (work / made).is_file(), made
    python = _block(readme, "## Python", "python")
    r = subprocess.run([sys.executable, "-c", python], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (work / "photo-via-pillow.png").is_file() and (work / "copy.aec").is_file()
