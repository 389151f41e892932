"""Files cross devices (runs where CUDA exists): a GPU-encoded file decodes on the CPU and vice
versa. The entropy parameters are computed in float64, so the latents decode identically on any
device; the synthesis transform runs in float32 on the decoding device, so pixels may differ by
one level where a rounding flips (docs/performance.md states the measured tolerance)."""
import numpy as np
import pytest
import torch

from aecodec.codec import coder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MAX_ABS_DIFF = 1          # pixel levels
MAX_DIFFERING = 0.001     # fraction of pixel values


@pytest.mark.parametrize("quality", [1, 4, 8])
def test_cross_device_decoding_within_tolerance(kodak_crop, quality):
    img = np.asarray(kodak_crop.resize((200, 136)))
    for enc_device in ("cuda", "cpu"):
        data = coder.encode(img, "RGB", quality, device=enc_device)
        on_cpu = coder.decode(data, device="cpu")[0]
        on_gpu = coder.decode(data, device="cuda")[0]
        diff = np.abs(on_cpu.astype(int) - on_gpu.astype(int))
        assert diff.max() <= MAX_ABS_DIFF, enc_device
        assert (diff > 0).mean() <= MAX_DIFFERING, enc_device
        # and each device is deterministic
        assert np.array_equal(on_gpu, coder.decode(data, device="cuda")[0])
