"""Shared fixtures and markers.

Markers (pyproject.toml): `slow` (more than a few seconds; `pytest -m "not slow"` skips them),
`needs_data` (reads ../shared/data: a clone without it skips them, saying why), `cuda` (needs a
GPU; skipped without one).
"""
import os
import sys
from pathlib import Path

# Without a GPU the Triton kernel runs in Triton's interpreter on CPU tensors; the variable must be
# set before triton decorates the kernel. With a GPU the same tests run compiled.
try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except Exception:  # pragma: no cover
    _HAS_CUDA = False
if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AECODEC_SHARED", REPO.parent / "shared"))
KODAK = SHARED / "data" / "kodak"
TRAIN = SHARED / "data" / "train"
sys.path.insert(0, str(REPO / "tools"))  # tests/tools import our development tools by module name


def pytest_collection_modifyitems(config, items):
    no_data = pytest.mark.skip(reason=f"needs the shared data at {SHARED / 'data'} (set AECODEC_SHARED)")
    no_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    have_data = KODAK.is_dir() and TRAIN.is_dir()
    for item in items:
        if "needs_data" in item.keywords and not have_data:
            item.add_marker(no_data)
        if "cuda" in item.keywords and not _HAS_CUDA:
            item.add_marker(no_cuda)


@pytest.fixture(scope="session")
def kernel_device():
    return "cuda" if _HAS_CUDA else "cpu"


@pytest.fixture(scope="session")
def kodim23():
    """kodim23 (768x512) from the package's own copy: real photo content, no ../shared needed."""
    from importlib import resources

    from PIL import Image

    with resources.as_file(resources.files("aecodec.data").joinpath("kodim23.png")) as path:
        with Image.open(path) as im:
            return im.convert("RGB")


@pytest.fixture(scope="session")
def kodak_crop(kodim23):
    """A 96x64 crop of kodim23 (quick to code)."""
    return kodim23.crop((300, 200, 396, 264))


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory, kodim23):
    """A training folder: 30 small crops of a real photo (Kodak crops are fine for the mechanics of
    training: nothing is chosen with them)."""
    d = tmp_path_factory.mktemp("photos")
    for i in range(30):
        x, y = 20 * i, 10 * i
        kodim23.crop((x, y, x + 96, y + 80)).save(d / f"img{i:02d}.png")
    return d


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Exported weights of a tiny scale-only model (N=16, M=24), randomly initialised."""
    import torch

    from aecodec.codec.model import AecModel
    from aecodec.codec.spec import ModelConfig
    from aecodec.codec.weights import export_bytes

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    p.write_bytes(export_bytes(AecModel(ModelConfig(N=16, M=24)), "tiny", [12] * 8))
    return p
