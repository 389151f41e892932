"""The architecture as data (codec/spec.py): layer text, the checks on a layout, configs that
record their layers, and a model grown by a spec change alone coding through both engines."""
import numpy as np
import pytest
import torch

from aecodec.codec import coder, engines
from aecodec.codec.model import AecModel
from aecodec.codec.spec import Layer, ModelConfig, default_layers
from aecodec.codec.weights import Weights, export_bytes, parse_metadata

# g_s 1.33x wider and one stride-1 layer deeper than the default layout of N=24
WIDER_G_S = ["deconv 24>32 k5 s2", "igdn 32", "deconv 32>32 k5 s2", "igdn 32", "conv 32>32 k3 s1", "igdn 32",
             "deconv 32>32 k5 s2", "igdn 32", "deconv 32>3 k5 s2 f32"]


def test_layer_text_round_trips():
    for text in ("conv 3>128 k5 s2 f32", "deconv 192>128 k5 s2", "igdn 128", "gdn 7", "relu", "conv 8>8 k3 s1"):
        assert str(Layer.parse(text)) == text
    with pytest.raises(ValueError, match="not a layer"):
        Layer.parse("conv 3>128")


def test_the_default_layout_is_the_shipped_models():
    """Every shipped model's weights name exactly the parameters the default layout builds."""
    weights = Weights.shipped()
    assert weights.config.custom_layers is None
    model_keys = set(AecModel(weights.config).state_dict())
    assert model_keys == set(weights.tensors)
    assert [str(l) for l in weights.config.layers()["g_a"]] == [
        "conv 3>128 k5 s2 f32", "gdn 128", "conv 128>128 k5 s2", "gdn 128", "conv 128>128 k5 s2", "gdn 128",
        "conv 128>192 k5 s2 f32"]


@pytest.mark.parametrize("change,message", [
    ({"g_s": ["deconv 24>16 k5 s2", "igdn 16", "deconv 16>3 k5 s2"]}, "scales by 4, needs 16"),
    ({"h_a": ["conv 24>16 k3 s1", "relu", "conv 8>16 k5 s2", "relu", "conv 16>16 k5 s2"]}, "takes 8 channels, gets 16"),
    ({"g_a": ["conv 3>16 k4 s2"]}, "odd kernels"),
    ({"h_s": ["deconv 16>16 k3 s2"]}, "k5 s2"),
])
def test_layouts_that_do_not_chain_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(N=16, M=24, family="mean-scale").with_layers(**change)


def test_configs_record_only_the_layers_they_change():
    base = ModelConfig(N=24, M=24, family="mean-scale")
    assert "layers" not in base.to_dict()
    wide = base.with_layers(g_s=WIDER_G_S)
    d = wide.to_dict()
    assert d["layers"] == {"g_s": WIDER_G_S} and ModelConfig.from_dict(d) == wide
    assert wide.layers()["g_a"] == default_layers(24, 24, 48, False)["g_a"]
    assert "layers" not in base.with_layers(g_a=[str(l) for l in base.layers()["g_a"]]).to_dict()


def test_a_wider_deeper_synthesis_is_a_spec_change_and_codes_in_both_engines(kodak_crop, tmp_path):
    config = ModelConfig(N=24, M=24, family="checkerboard").with_layers(g_s=WIDER_G_S)
    torch.manual_seed(0)
    model = AecModel(config).train()
    assert model.g_s[4].weight.shape == (32, 32, 3, 3)
    x = torch.rand(2, 3, 64, 64)
    out = model(x, torch.tensor([2, 6]), 12)
    (((out["x_hat"] - x) ** 2).mean() - out["likelihoods"]["y"].log2().mean()).backward()
    assert model.g_s[4].weight.grad.abs().sum() > 0  # the new layer trains
    model.eval().update(force=True)
    data = export_bytes(model, "toy-wide", [12] * 8)
    assert parse_metadata(data)[1] == config  # the file says how to build it
    weights = Weights.from_bytes(data)
    img = np.asarray(kodak_crop)
    files, pixels = {}, {}
    for kind in ("numpy", "torch"):
        engine = engines.create(kind, weights, **({"device": "cpu"} if kind == "torch" else {}))
        files[kind] = coder.encode(img, "RGB", 5, engine=engine)
        pixels[kind], header = coder.decode(files[kind], engine=engine)
        assert header.model == "toy-wide" and pixels[kind].shape == img.shape
    # one entropy coder: the torch engine's file decodes to the same latents in the numpy engine
    with engines.create("numpy", weights).session():
        _, z_bytes, y_bytes = coder.bitstream.parse(files["torch"])
        y_np = engines.create("numpy", weights).decode_latents(y_bytes, z_bytes, (1, 2))
    y_t = engines.create("torch", weights, device="cpu").decode_latents(y_bytes, z_bytes, (1, 2))
    assert np.array_equal(y_np, y_t[0].permute(1, 2, 0).numpy())
    diff = np.abs(pixels["numpy"].astype(int) - coder.decode(files["numpy"], engine=engines.create(
        "torch", weights, device="cpu"))[0])
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
