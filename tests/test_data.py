from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.data.images import letterbox
from scalp_ml.data.transforms import augmentation
from tests.conftest import compose_train


@pytest.mark.parametrize(
    ("size", "inner", "padding"),
    [
        ((448, 448), (336, 448), (56, 0)),
        ((384, 512), (384, 512), (0, 0)),
        ((480, 448), (336, 448), (72, 0)),
    ],
)
def test_letterbox_keeps_the_aspect_ratio_and_pads_black(
    size: tuple[int, int], inner: tuple[int, int], padding: tuple[int, int]
) -> None:
    image = np.full((480, 640, 3), 255, dtype=np.uint8)
    boxed = letterbox(image, *size)
    assert boxed.shape == (*size, 3) and boxed.dtype == np.uint8
    top, left = padding
    assert np.all(boxed[:top] == 0) and np.all(boxed[size[0] - top :] == 0)
    assert np.all(boxed[top : top + inner[0], left : left + inner[1]] == 255)
    assert letterbox(image, 480, 640) is not image and np.array_equal(
        letterbox(image, 480, 640), image
    )


def test_training_augmentation_changes_images_and_is_seeded() -> None:
    augment = compose_train(["run_dir=/tmp/unused"]).data.augment
    rng = np.random.default_rng(0)
    image = letterbox(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), 64, 64)
    training = augmentation(augment, seed=3)
    outputs = [training(image=image)["image"] for _ in range(4)]
    assert all(output.shape == image.shape and output.dtype == np.uint8 for output in outputs)
    assert any(not np.array_equal(outputs[0], other) for other in outputs[1:])
    again = augmentation(augment, seed=3)
    assert all(np.array_equal(again(image=image)["image"], output) for output in outputs)


def test_datamodule_batches_and_saves_its_split_beside_the_data(synthetic_root: Path) -> None:
    cfg = compose_train(
        [
            f"data.root={synthetic_root}",
            "data.image_size=64",
            "data.num_workers=0",
            "run_dir=/tmp/unused",
        ]
    )
    datamodule = ScalpDataModule(**cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert (
        datamodule.split_file.is_file() and datamodule.split_file.parent.parent.name == ".scalp_ml"
    )
    sizes = {split: len(dataset) for split, dataset in datamodule.datasets.items()}
    assert sum(sizes.values()) == 240 and abs(sizes["train"] - 168) <= 6
    sessions = [
        set(datamodule.manifest.set_index("name").loc[datamodule.datasets[split].names, "session"])
        for split in ("train", "val", "test")
    ]
    assert not (sessions[0] & sessions[1] or sessions[0] & sessions[2] or sessions[1] & sessions[2])
    assert datamodule.split_file.name == "session-70-15-15-seed42.json"
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["image"].shape == (16, 3, 64, 64) and batch["image"].dtype == torch.uint8
    assert batch["grades"].shape == (16, 6) and batch["grades"].dtype == torch.long
    assert len(batch["name"]) == len(batch["session"]) == 16
    training = next(iter(datamodule.train_dataloader()))
    assert training["image"].dtype == torch.uint8 and len(training["name"]) == 16


def test_zip_download_gives_the_batches_of_the_extracted_one(tmp_path: Path) -> None:
    from scalp_ml.data.synthetic import generate

    batches = []
    for archives in (False, True):
        root = generate(tmp_path / str(archives), n_images=24, seed=8, workers=1, archives=archives)
        cfg = compose_train(
            [f"data.root={root}", "data.image_size=32", "data.num_workers=0", "run_dir=/unused"]
        )
        datamodule = ScalpDataModule(**cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        batches.append(next(iter(datamodule.val_dataloader())))
    assert "::" in datamodule.datasets["val"].locations[0]
    assert batches[0]["name"] == batches[1]["name"]
    assert torch.equal(batches[0]["image"], batches[1]["image"])
    assert torch.equal(batches[0]["grades"], batches[1]["grades"])


@pytest.mark.timeout(120)
def test_loader_processes_start_after_the_parent_used_opencv(synthetic_root: Path) -> None:
    # A forked loader process that reconfigures OpenCV's threads after its parent used them
    # deadlocks; the parent's own decoding (num_workers=0, predict, notebooks) comes first here.
    cfg = compose_train(
        [f"data.root={synthetic_root}", "data.image_size=64", "run_dir=/tmp/unused"]
    )
    datamodule = ScalpDataModule(**{**cfg.data, "num_workers": 0})
    datamodule.setup("fit")
    cv2.resize(np.zeros((2000, 2000, 3), np.uint8), (500, 500), interpolation=cv2.INTER_AREA)
    next(iter(datamodule.val_dataloader()))
    datamodule.num_workers = 2
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["image"].shape == (16, 3, 64, 64)
