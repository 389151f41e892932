"""bench.effort: efforts read off one refinement run agree with coding at each effort."""
import numpy as np
import pytest
from conftest import KODAK
from PIL import Image

import aecodec
from aecodec.bench.metrics import psnr

pytestmark = [pytest.mark.needs_data, pytest.mark.slow]


def _crop(name, box):
    with Image.open(KODAK / name) as im:
        return np.asarray(im.convert("RGB").crop(box))


def test_effort_benchmark_reads_lower_efforts_off_one_run(monkeypatch):
    """The effort benchmark times only the highest effort and reads the lower ones at their step
    counts: that is only right if every effort follows the same path and keeps the same best."""
    from aecodec.bench.effort import _refined_run
    from aecodec.codec import refine

    monkeypatch.setitem(refine.EFFORT_STEPS, 1, 10)
    monkeypatch.setitem(refine.EFFORT_STEPS, 2, 30)
    img = _crop("kodim05.png", (300, 200, 428, 296))
    run = _refined_run(img, 3, [1, 2])
    for effort in (1, 2):
        data = aecodec.compress(img, quality=3, effort=effort)
        assert run[effort][0] == len(data)
        assert run[effort][1] == pytest.approx(psnr(img, np.asarray(aecodec.decompress(data))), abs=1e-9)
    assert run[2][2] > run[1][2] > 0
