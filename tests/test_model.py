import re
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.data import resolve_model_data_config

from scalp_ml.models.backbones import create_backbone, load_pretrained_weights
from scalp_ml.models.network import GradeProbabilities, GradingNetwork


def test_six_heads_of_four_logits() -> None:
    model = GradingNetwork("test_efficientnet", dropout=0.1).eval()
    logits = model(torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8))
    assert logits.shape == (3, 6, 4)
    assert len(model.heads) == 6 and model.heads[0][1].in_features == model.backbone.num_features


def test_the_network_normalises_uint8_images_with_the_backbones_pretrained_config() -> None:
    torch.manual_seed(0)
    model = GradingNetwork("test_efficientnet").eval()
    config = resolve_model_data_config(model.backbone)
    images = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        features = model.backbone((images.float() / 255 - mean) / std)
        expected = torch.stack([head(features) for head in model.heads], dim=1)
        torch.testing.assert_close(model(images), expected)
        torch.testing.assert_close(model(images.float()), expected)  # device-augmented floats
    custom = GradingNetwork("test_efficientnet", mean=[0.5] * 3, std=[0.25] * 3)
    assert torch.allclose(custom.mean, torch.full((1, 3, 1, 1), 127.5))
    assert {"mean", "std"} <= {key for key, _ in custom.named_buffers()}  # saved in checkpoints


def test_a_backbone_with_a_pre_logits_layer_feeds_its_pooled_width_to_the_heads() -> None:
    model = GradingNetwork("mobilenetv3_small_050").eval()  # 288 channels, 1024 after conv_head
    assert model.heads[0][1].in_features == model.backbone.head_hidden_size == 1024
    assert model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).shape == (2, 6, 4)


def test_probabilities_are_the_softmax_of_the_logits() -> None:
    model = GradingNetwork("test_efficientnet").eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(GradeProbabilities(model)(images), model(images).softmax(dim=-1))


def test_the_corn_head_gives_three_logits_turned_into_grade_probabilities() -> None:
    model = GradingNetwork("test_efficientnet", head="corn").eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        outputs = model(images)
        probabilities = GradeProbabilities(model)(images)
    assert outputs.shape == (2, 6, 3)
    s0, s1, s2 = torch.sigmoid(outputs).unbind(dim=-1)  # P(y > k | y > k - 1)
    expected = torch.stack([1 - s0, s0 * (1 - s1), s0 * s1 * (1 - s2), s0 * s1 * s2], dim=-1)
    torch.testing.assert_close(probabilities, expected)


def test_the_softmax_heads_keep_the_state_dict_keys_of_earlier_checkpoints() -> None:
    keys = set(GradingNetwork("test_efficientnet").state_dict())
    assert {f"heads.{head}.1.{kind}" for head in range(6) for kind in ("weight", "bias")} <= keys


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_load_through_timm(tmp_path: Path, suffix: str) -> None:
    saved = timm.create_model("test_efficientnet").state_dict()
    path = tmp_path / f"weights{suffix}"
    save_file(saved, path) if suffix == ".safetensors" else torch.save(saved, path)
    backbone = create_backbone("test_efficientnet")
    load_pretrained_weights(backbone, "test_efficientnet", weights=str(path))
    loaded = backbone.state_dict()
    assert loaded.keys() == {key for key in saved if not key.startswith("classifier")}
    for key, value in loaded.items():
        assert torch.equal(value, saved[key]), key


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "effnet_b4.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_pretrained_weights(create_backbone("test_efficientnet"), "x", weights=str(missing))


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), path)
    backbone = create_backbone("test_efficientnet")
    with pytest.raises(ValueError, match="does not fit 'test_efficientnet'"):
        load_pretrained_weights(backbone, "test_efficientnet", weights=str(path))


def test_pretrained_without_network_explains_the_offline_option() -> None:
    # conftest sets HF_HUB_OFFLINE=1, exactly the state of a cluster node without internet
    backbone = create_backbone("test_efficientnet")
    with pytest.raises(RuntimeError, match=re.escape("model.weights=/path/to/file.safetensors")):
        load_pretrained_weights(backbone, "test_efficientnet", pretrained=True)


def test_unknown_backbone_lists_close_names() -> None:
    with pytest.raises(ValueError, match="efficientnet_b4"):
        create_backbone("efficientnet_b44")
