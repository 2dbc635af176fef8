"""Full and read-only disks, made for real with a small tmpfs (issue "Nothing lost, nothing
leaked, nothing hung"): the previous file stays whole, the message names the file and the
setting that moves it, and the log keeps every row."""

import errno
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.data.splits import load_or_create_split
from scalp_ml.data.synthetic import generate
from tests.conftest import Disks, compose_train
from tests.test_splits import RATIOS, session_manifest


def fill(disk: Path) -> Path:
    """Writes one file until ``disk`` has no byte left; returns it (delete it to free the disk)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as file:
        try:
            while True:
                file.write(bytes(4096))
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


def test_a_full_disk_keeps_the_previous_checkpoint_whole(disks: Disks) -> None:
    from scalp_ml.training.checkpoint_io import AtomicCheckpointIO

    disk = disks.small("checkpoints", "512k")
    last = disk / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(1000)}, last)
    filler = fill(disk)
    with pytest.raises(OSError, match=r"No space left to write .*last\.ckpt \(\d[\d,]* bytes;"):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(1000)}, last)
    filler.unlink()
    assert sorted(p.name for p in disk.iterdir()) == ["last.ckpt"]  # no temporary left behind
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_metrics_csv_survives_a_full_disk_and_keeps_every_row(
    disks: Disks, caplog: pytest.LogCaptureFixture
) -> None:
    from scalp_ml.training.loggers import ResumableCSVLogger

    disk = disks.small("run", "256k")
    logger = ResumableCSVLogger(save_dir=disk, name="", version="")
    logger.log_metrics({"train/loss": 1.0, "epoch": 0}, step=0)
    logger.save()
    filler = fill(disk)
    logger.log_metrics({"train/loss": 0.5, "epoch": 1, "val/macro_f1": 0.3}, step=1)
    with caplog.at_level(logging.WARNING):
        logger.save()
    assert "metrics.csv" in caplog.text and "1 new rows wait for the next save" in caplog.text
    assert pd.read_csv(disk / "metrics.csv")["epoch"].tolist() == [0]  # whole, not cut short
    filler.unlink()
    logger.log_metrics({"train/loss": 0.25, "epoch": 2}, step=2)
    logger.save()
    resumed = ResumableCSVLogger(save_dir=disk, name="", version="")  # as `ckpt_path=last` does
    resumed.log_metrics({"train/loss": 0.125, "epoch": 3}, step=3)
    resumed.save()
    log = pd.read_csv(disk / "metrics.csv")
    assert log["epoch"].tolist() == [0, 1, 2, 3]
    assert log["val/macro_f1"].tolist()[1] == 0.3


def test_a_split_file_on_a_full_disk_is_named(disks: Disks) -> None:
    disk = disks.small("splits", "64k")
    fill(disk)
    path = disk / "split.json"
    with pytest.raises(OSError, match=r"No space left to write .*split\.json"):
        load_or_create_split(session_manifest(300, seed=3), path, RATIOS, 0, "session")
    assert not path.exists()


def test_a_read_only_data_root_names_the_settings_that_move_each_file(
    disks: Disks, tmp_path: Path
) -> None:
    source = generate(tmp_path / "source", n_images=20, seed=5, workers=1)
    root = disks.small("root", "16m")
    shutil.copytree(source, root, dirs_exist_ok=True)
    disks.read_only(root)
    elsewhere = tmp_path / "elsewhere"
    settings = [
        f"data.root={root}",
        "data.image_size=32",
        "data.num_workers=0",
        f"data.manifest_file={elsewhere / 'manifest.csv'}",
        "run_dir=/unused",
    ]

    def set_up(*more: str) -> ScalpDataModule:
        datamodule = ScalpDataModule(**compose_train([*settings, *more]).data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        return datamodule

    with pytest.raises(OSError, match=rf"Cannot write the split file {root}/.*data\.split\.file="):
        set_up("data.cache=none")
    settings.append(f"data.split.file={elsewhere / 'split.json'}")
    with pytest.raises(OSError, match=r"decoded-image cache .*Point data\.cache_dir to"):
        set_up("data.cache=memmap")
    datamodule = set_up("data.cache=memmap", f"data.cache_dir={elsewhere / 'cache'}")
    assert sum(len(dataset) for dataset in datamodule.datasets.values()) == 20


def test_a_cache_whose_record_did_not_fit_is_rebuilt_in_its_own_space(
    disks: Disks, tmp_path: Path
) -> None:
    from scalp_ml.data.cache import CacheFiles, open_cache
    from tests.test_cache import write_images

    root, paths = tmp_path / "data", write_images(tmp_path / "data", 20)
    disk = disks.small("cache", "2m")
    size = (160, 160)  # 20 images: 1.5 MB of the disk's 2 MB
    open_cache(root, paths, size, disk, workers=1)
    files = CacheFiles.at(disk, size)
    files.sidecar.unlink()  # as when the disk filled up before the record was written
    fill(disk)
    (disk / "filler").unlink()
    (disk / "filler").write_bytes(bytes(200_000))  # room for less than a second cache
    decoded = open_cache(root, paths, size, disk, workers=1)
    assert len(decoded) == 20 and files.sidecar.is_file()
