"""GPU-encoded files decode to the same pixels on the CPU and vice versa (runs where CUDA exists)."""
import numpy as np
import pytest
import torch

from aecodec.codec import coder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("quality", [1, 4, 8])
def test_cross_device_decoding_is_identical(kodak_crop, quality):
    img = np.asarray(kodak_crop.resize((200, 136)))
    for enc_device in ("cuda", "cpu"):
        data = coder.encode(img, "RGB", quality, device=enc_device)
        on_cpu = coder.decode(data, device="cpu")[0]
        on_gpu = coder.decode(data, device="cuda")[0]
        assert np.array_equal(on_cpu, on_gpu), enc_device
