import pytest
import numpy as np
import torch

from aecodec.codec.model import PAD, AecModel, ModelConfig
from aecodec.codec.weights import DEFAULT_MODEL, load_model


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return AecModel(ModelConfig(N=16, M=24)).eval()


def test_transform_shapes(small_model):
    x = torch.rand(2, 3, 128, 192)
    y = small_model.g_a(x)
    assert y.shape == (2, 24, 8, 12)  # 16x downsampling, M channels
    z = small_model.h_a(y)
    assert z.shape == (2, 16, 2, 3)   # 4x more
    assert small_model.g_s(y).shape == x.shape
    assert small_model.h_s(z).shape == y.shape


def test_forward_training_outputs(small_model):
    small_model.train()
    x = torch.rand(2, 3, 64, 64)
    out = small_model(x, torch.tensor([1, 8]), k=6)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 24, 4, 4)
    assert torch.all(out["likelihoods"]["y"] > 0) and torch.all(out["likelihoods"]["y"] <= 1)
    loss = out["x_hat"].mean() + out["likelihoods"]["y"].log().mean()
    loss.backward()
    assert small_model.g_a[0].weight.grad is not None and small_model.gain.grad is not None
    small_model.eval()


def test_analyze_keeps_at_most_k_integer_channels(small_model):
    x = torch.rand(1, 3, PAD, PAD)
    for k in (1, 5, 24):
        y_hat, z = small_model.analyze(x, 4, k)
        assert torch.all((y_hat != 0).sum(1) <= k)
        assert torch.equal(y_hat, torch.round(y_hat))


def test_quality_gains_order_rate():
    """Higher quality => larger gain => more nonzero symbols, on the shipped model and a real image."""
    from aecodec.codec.torch_engine import to_tensor
    import numpy as np

    loaded = load_model(DEFAULT_MODEL)
    g = loaded.model.gain.abs().mean(1)
    assert g.shape == (8,)
    rng = np.random.default_rng(0)
    x = to_tensor(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "cpu")
    nz = [int((loaded.model.analyze(x, q, loaded.model.channels)[0] != 0).sum()) for q in (1, 8)]
    assert nz[0] < nz[1]


def test_mean_scale_model_codes_integer_latents_exactly():
    """A mean-scale model (integer means) round-trips its k-sparse latents through the coder, and
    a scale-only state gains a zero mean head that leaves its likelihoods unchanged at first."""
    from aecodec.codec.model import with_mean_head

    torch.manual_seed(0)
    scale_only = AecModel(ModelConfig(N=16, M=24)).eval()
    m = AecModel(ModelConfig(N=16, M=24, means=True))
    m.load_state_dict(with_mean_head(scale_only.state_dict(), 24))
    with torch.no_grad():  # non-trivial means
        m.h_s[4].bias[24:] = torch.linspace(-3, 3, 24)
    m.eval().update(force=True)
    x = torch.rand(1, 3, PAD, 2 * PAD)
    y_hat, z = m.analyze(x, 5, 12)
    y_bytes, z_bytes = m.encode_latents(y_hat, z)
    out = m.decode_latents(y_bytes, z_bytes, (1, 2))
    assert torch.equal(out, y_hat)
    _, means = m.entropy_coder().parameters(m.entropy_bottleneck.decompress([z_bytes], (1, 2))[0].numpy())
    assert np.abs(means).max() >= 1 and np.array_equal(means, np.round(means))
    # zero mean head: the same training likelihoods as the scale-only model
    m2 = AecModel(ModelConfig(N=16, M=24, means=True))
    m2.load_state_dict(with_mean_head(scale_only.state_dict(), 24))
    xt = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    a = scale_only.train()(xt, torch.tensor([1, 8]), 12)["likelihoods"]["y"]
    torch.manual_seed(1)
    b = m2.train()(xt, torch.tensor([1, 8]), 12)["likelihoods"]["y"]
    scale_only.eval()
    assert torch.equal(a, b)


def test_bf16_autocast_keeps_the_biased_layers_float32(small_model):
    """Under the training's bf16 autocast, g_a's first and last layers, g_s's last layer and every GDN run in float32
    (their bf16 rounding biased the gradient, docs/training.md); the other convolutions do run in bf16."""
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: seen.update({n: out.dtype}))
             for n, m in small_model.named_modules() if n.startswith(("g_a.", "g_s."))]
    try:
        small_model(torch.rand(1, 3, 64, 64), torch.tensor([4]), k=12, autocast=torch.bfloat16)
    finally:
        for h in hooks:
            h.remove()
    assert seen["g_a.0"] == seen["g_a.6"] == torch.float32
    assert all(seen[f"g_a.{i}"] == seen[f"g_s.{i}"] == torch.float32 for i in (1, 3, 5))  # the GDNs
    assert all(seen[f"g_a.{i}"] == torch.bfloat16 for i in (2, 4))  # the convolutions between them
    assert all(seen[f"g_s.{i}"] == torch.bfloat16 for i in (0, 2, 4))
    assert seen["g_s.6"] == torch.float32
