import os
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
KODAK = REPO.parent / "shared" / "data" / "kodak"


@pytest.fixture(scope="session")
def kernel_device():
    return "cuda" if _HAS_CUDA else "cpu"


@pytest.fixture(scope="session")
def kodak_crop():
    """A 96x64 crop of kodim23 (real photo content, quick to code)."""
    from PIL import Image

    path = KODAK / "kodim23.png"
    if not path.exists():
        from importlib import resources

        path = resources.files("aecodec.data").joinpath("kodim23.png")
    with Image.open(path) as im:
        return im.convert("RGB").crop((300, 200, 396, 264))
