import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from scalp_ml.inference.checkpoint import CheckpointError, load_checkpoint


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_checkpoint_is_refused_without_running_its_code(
    best_checkpoint: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "code_ran"
    checkpoint = torch.load(best_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["model"]["dropout"] = Payload(marker)
    tampered = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, tampered)
    with pytest.raises(CheckpointError, match=re.escape(str(tampered))):
        load_checkpoint(tampered)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"definitely not a checkpoint", "not a checkpoint that can be loaded safely"),
        (pickle.dumps({"just": "a dict"}), "not a checkpoint that can be loaded safely"),
    ],
)
def test_non_checkpoint_files_give_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_foreign_torch_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a scalp_ml training checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt"):
        load_checkpoint(tmp_path / "nowhere.ckpt")


def test_loading_never_downloads_weights(best_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(best_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["model"]["pretrained"] = True  # as in the study's recipe
    path = tmp_path / "pretrained.ckpt"
    torch.save(checkpoint, path)
    loaded = load_checkpoint(path)  # HF_HUB_OFFLINE=1: a download attempt would fail
    assert not loaded.model.training and loaded.data["image_size"] == 64
