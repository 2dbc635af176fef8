import re
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from scalp_ml.models.network import MultiHeadClassifier, create_backbone


def test_six_heads_of_four_logits() -> None:
    model = MultiHeadClassifier("test_efficientnet", dropout=0.1).eval()
    logits = model(torch.randn(3, 3, 64, 64))
    assert logits.shape == (3, 6, 4)
    assert len(model.heads) == 6 and model.heads[0][1].in_features == model.backbone.num_features


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_load_through_timm(tmp_path: Path, suffix: str) -> None:
    saved = timm.create_model("test_efficientnet").state_dict()
    path = tmp_path / f"weights{suffix}"
    save_file(saved, path) if suffix == ".safetensors" else torch.save(saved, path)
    backbone = create_backbone("test_efficientnet", weights=str(path))
    loaded = backbone.state_dict()
    assert loaded.keys() == {key for key in saved if not key.startswith("classifier")}
    for key, value in loaded.items():
        assert torch.equal(value, saved[key]), key


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "effnet_b4.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        create_backbone("test_efficientnet", weights=str(missing))


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), path)
    with pytest.raises(ValueError, match="does not fit 'test_efficientnet'"):
        create_backbone("test_efficientnet", weights=str(path))


def test_pretrained_without_network_explains_the_offline_option() -> None:
    # conftest sets HF_HUB_OFFLINE=1, exactly the state of a cluster node without internet
    with pytest.raises(RuntimeError, match=re.escape("model.weights=/path/to/file.safetensors")):
        create_backbone("test_efficientnet", pretrained=True)


def test_unknown_backbone_lists_close_names() -> None:
    with pytest.raises(ValueError, match="efficientnet_b4"):
        create_backbone("efficientnet_b44")
