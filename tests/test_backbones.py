from __future__ import annotations

import numpy as np
import pytest
import torch

from leopard_reid import create_backbone
from leopard_reid.backbones import data_config, weights_sha256


def _daisy_logits(model: torch.nn.Module) -> torch.Tensor:
    import timm.data
    from PIL import Image
    from sklearn.datasets import load_sample_image

    cfg = data_config(model)
    tf = timm.data.create_transform(**cfg)
    x = tf(Image.fromarray(load_sample_image("flower.jpg")))[None]
    with torch.inference_mode():
        return model(x)[0]


def test_embedded_weights_classify_daisy():
    model = create_backbone("efficientnet_lite0", num_classes=1000)
    assert int(_daisy_logits(model).argmax()) == 985  # ImageNet "daisy": the shipped weights are really loaded


def test_unloaded_model_does_not_classify_daisy():
    model = create_backbone("efficientnet_lite0", pretrained=False, num_classes=1000)
    assert int(_daisy_logits(model).argmax()) != 985


def test_headless_backbone_gives_pooled_features():
    model = create_backbone()
    x = torch.zeros(2, 3, 224, 224)
    with torch.inference_mode():
        assert model(x).shape == (2, model.num_features)


def test_preprocessing_comes_from_pretrained_config():
    cfg = data_config(create_backbone())
    assert cfg["input_size"] == (3, 224, 224)
    assert cfg["mean"] == (0.5, 0.5, 0.5)  # TF-Lite weights: not the torchvision ImageNet mean


def test_checkpoint_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    model = create_backbone()
    state = {k: v.clone() + 0.01 for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    state.update({k: v for k, v in model.state_dict().items() if not v.dtype.is_floating_point})
    save_file(state, str(tmp_path / "w.safetensors"))
    loaded = create_backbone(checkpoint=tmp_path / "w.safetensors")
    assert weights_sha256(loaded) != weights_sha256(model)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[k])


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoint_refuses_pickled_objects(tmp_path):
    torch.save({"x": _Payload()}, tmp_path / "evil.pt")  # an arbitrary pickled object: never unpickled
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        create_backbone(checkpoint=tmp_path / "evil.pt")


def test_shape_mismatch_is_refused(tmp_path):
    from leopard_reid.backbones import _map_in_order

    model = create_backbone(pretrained=False)
    bad = {k: torch.zeros(1) for k in model.state_dict()}
    with pytest.raises(ValueError, match="shape"):
        _map_in_order(model, bad, origin="test")
    assert np.isfinite(weights_sha256(model) != "")
