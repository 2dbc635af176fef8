import json
import os
import pickle
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from scalp_ml.inference.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import FAST, compose_train


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
    checkpoint["hyper_parameters"]["dropout"] = Payload(marker)
    tampered = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, tampered)
    with pytest.raises(CheckpointError, match=re.escape(str(tampered))) as error:
        load_checkpoint(tampered)
    assert not marker.exists()
    assert "weights_only" not in str(error.value)  # torch's advice to load it unsafely is dropped


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"definitely not a checkpoint", "not a PyTorch checkpoint"),
        (pickle.dumps({"just": "a dict"}), "not a PyTorch checkpoint"),
        (b"PK\x03\x04 truncated zip", "not a PyTorch checkpoint"),
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


def test_loading_never_downloads_weights(best_checkpoint: Path) -> None:
    from scalp_ml.module import ScalpGrader

    checkpoint = torch.load(best_checkpoint, weights_only=True)
    assert "pretrained" not in checkpoint["hyper_parameters"]  # training loads weights itself
    loaded = load_checkpoint(best_checkpoint)  # HF_HUB_OFFLINE=1: a download attempt would fail
    assert not loaded.model.training and loaded.data["image_size"] == 64
    assert ScalpGrader.load_from_checkpoint(best_checkpoint, weights_only=True) is not None


def test_an_onnx_file_is_named_as_an_export(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx")
    with pytest.raises(CheckpointError, match="ONNX export") as error:
        load_checkpoint(path)
    assert "weights_only" not in str(error.value)


def earlier_layout(checkpoint: dict) -> dict:
    """The same checkpoint as scalp_ml wrote it before the network normalised its input."""
    hparams = checkpoint["hyper_parameters"]
    old = dict(checkpoint)
    old.pop("scalp_ml_checkpoint_version")
    old["hyper_parameters"] = {
        "model": {
            "backbone": hparams["backbone"],
            "pretrained": True,
            "weights": None,
            "dropout": hparams["dropout"],
        },
        "optimizer": {
            "_target_": "torch.optim.AdamW",
            "lr": hparams["lr"],
            "weight_decay": hparams["weight_decay"],
        },
        "loss": {"gamma": hparams["gamma"]},
    }
    old["state_dict"] = {
        key: value
        for key, value in checkpoint["state_dict"].items()
        if key not in ("net.mean", "net.std")
    }
    old["datamodule_hyper_parameters"] = {
        **checkpoint["datamodule_hyper_parameters"],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "normalize_on_device": True,
    }
    return old


def test_a_checkpoint_of_the_earlier_layout_loads_and_predicts_the_same(
    best_checkpoint: Path, tmp_path: Path
) -> None:
    current = torch.load(best_checkpoint, weights_only=True)
    path = tmp_path / "earlier.ckpt"
    torch.save(earlier_layout(current), path)
    migrated, loaded = load_checkpoint(path), load_checkpoint(best_checkpoint)
    assert migrated.data == loaded.data and "mean" not in migrated.data
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(
            migrated.model.deployable()(images), loaded.model.deployable()(images)
        )


def best_logged_epoch(run_dir: Path) -> int:
    """The epoch of the highest logged val/macro_f1 (the first of equals, as Lightning keeps)."""
    log = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["val/macro_f1"])
    return int(log.loc[log["val/macro_f1"].idxmax(), "epoch"])


def test_a_run_names_its_best_checkpoint_best_ckpt(demo_run: tuple[Path, dict]) -> None:
    run_dir, _ = demo_run
    best = run_dir / "checkpoints" / "best.ckpt"
    assert torch.load(best, weights_only=True)["epoch"] == best_logged_epoch(run_dir)
    assert json.loads((run_dir / "metrics.json").read_text())["context"]["checkpoint"] == str(best)


@pytest.mark.slow
def test_best_ckpt_is_the_best_epochs_checkpoint(synthetic_root: Path, tmp_path: Path) -> None:
    from scalp_ml.train import train

    every = tmp_path / "every_epoch"  # a second callback keeps each epoch's checkpoint
    keep_all = "lightning.pytorch.callbacks.ModelCheckpoint"
    train(
        compose_train(
            [
                *FAST,
                f"data.root={synthetic_root}",
                f"run_dir={tmp_path / 'run'}",
                "trainer.max_epochs=4",
                "+trainer.limit_train_batches=2",
                f"+callbacks.every._target_={keep_all}",
                f"+callbacks.every.dirpath={every}",
                "+callbacks.every.save_top_k=-1",
                "+callbacks.every.mode=max",  # its state key differs from last.ckpt's callback
            ]
        )
    )
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(path.name for path in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    best_epoch = best_logged_epoch(tmp_path / "run")
    best = torch.load(folder / "best.ckpt", weights_only=True)
    assert best["epoch"] == best_epoch
    (same,) = every.glob(f"epoch={best_epoch}-*.ckpt")
    expected = torch.load(same, weights_only=True)["state_dict"]
    assert best["state_dict"].keys() == expected.keys()
    assert all(torch.equal(best["state_dict"][key], expected[key]) for key in expected)
