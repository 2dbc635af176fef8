"""Faults and hostile input (issue "Nothing lost, nothing leaked, nothing hung"): each case a
user hit, reproduced, and the clear outcome it now has."""

import json
import shutil
from pathlib import Path

import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException

from scalp_ml.data.splits import load_or_create_split
from tests.conftest import FAST, compose_train
from tests.test_splits import RATIOS, session_manifest


@pytest.fixture
def split_file(tmp_path: Path) -> tuple[Path, object]:
    manifest = session_manifest(300, seed=3)
    path = tmp_path / "split.json"
    load_or_create_split(manifest, path, RATIOS, 0, "session")
    return path, manifest


def test_a_hand_edited_split_that_leaks_test_images_into_train_is_refused(split_file) -> None:
    path, manifest = split_file
    record = json.loads(path.read_text())
    leaked = record["splits"]["test"][0]
    record["splits"]["train"].append(leaked)  # counts left alone: the count check catches it
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"split\.json: train lists \d+ images but records"):
        load_or_create_split(manifest, path, RATIOS, 0, "session")
    record["counts"]["train"] += 1  # counts edited too: the leak itself is named
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=f"{leaked} is in both train and test"):
        load_or_create_split(manifest, path, RATIOS, 0, "session")


def test_a_split_file_that_drops_an_image_is_refused(split_file) -> None:
    path, manifest = split_file
    record = json.loads(path.read_text())
    dropped = record["splits"]["val"].pop()
    record["counts"]["val"] -= 1
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=f"image {dropped} is in no split"):
        load_or_create_split(manifest, path, RATIOS, 0, "session")


def test_a_truncated_split_file_names_itself_and_the_way_out(split_file) -> None:
    path, manifest = split_file
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match=r"split\.json is not valid JSON.*Delete it"):
        load_or_create_split(manifest, path, RATIOS, 0, "session")


def test_folds_that_hold_a_test_image_are_refused(tmp_path: Path) -> None:
    manifest = session_manifest(300, seed=3)
    path = tmp_path / "folds.json"
    load_or_create_split(manifest, path, RATIOS, 0, "session", folds=3)
    record = json.loads(path.read_text())
    record["folds_images"][0].append(record["splits"]["test"][0])
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="folds do not share out"):
        load_or_create_split(manifest, path, RATIOS, 0, "session", folds=3, fold=1)


def test_an_upper_case_onnx_suffix_is_read_as_onnx(onnx_file: Path, tmp_path: Path) -> None:
    from scalp_ml.inference.predictors import OnnxPredictor, load_predictor

    upper = tmp_path / "GOOD.ONNX"
    shutil.copy(onnx_file, upper)
    assert isinstance(load_predictor(upper), OnnxPredictor)


def test_zero_epochs_is_refused_before_any_work(tmp_path: Path) -> None:
    from scalp_ml.train import train

    cfg = compose_train(
        [*FAST, "data.root=/nonexistent", f"run_dir={tmp_path}", "trainer.max_epochs=0"]
    )
    with pytest.raises(ValueError, match=r"trainer\.max_epochs=0"):
        train(cfg)
    assert not any(tmp_path.iterdir())


def test_decision_offsets_with_folds_are_refused_before_any_work(tmp_path: Path) -> None:
    from scalp_ml.train import train

    overrides = [*FAST, "data.root=/nonexistent", f"run_dir={tmp_path}", "data.split.folds=3"]
    with pytest.raises(ValueError, match=r"decision_offsets=true with data\.split\.folds"):
        train(compose_train([*overrides, "decision_offsets=true"]))
    assert not any(tmp_path.iterdir())


def test_sigterm_during_the_final_evaluation_exits_143_not_0(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scalp_ml.training.job as job
    from scalp_ml.train import train

    def terminated(*args: object, **kwargs: object) -> None:
        raise SIGTERMException  # what Lightning raises when SIGTERM arrives mid-loop

    monkeypatch.setattr(job, "evaluate_splits", terminated)
    overrides = [*FAST, f"data.root={synthetic_root}", f"run_dir={tmp_path}"]
    cfg = compose_train([*overrides, "trainer.max_epochs=1", "+trainer.limit_train_batches=1"])
    with pytest.raises(SystemExit) as stopped:
        train(cfg)
    assert stopped.value.code == 143
    assert not (tmp_path / "metrics.json").exists()


def evaluate_with(ckpt: Path, out_dir: Path, *extra: str) -> dict:
    from scalp_ml.evaluation.command import evaluate
    from tests.conftest import compose_config

    return evaluate(compose_config("eval", [f"ckpt_path={ckpt}", f"out_dir={out_dir}", *extra]))


def test_evaluate_never_writes_to_a_path_stored_in_the_checkpoint(
    best_checkpoint: Path, tmp_path: Path
) -> None:
    import torch

    thesis = tmp_path / "thesis.txt"
    thesis.write_text("four years of work")
    checkpoint = torch.load(best_checkpoint, weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["manifest_file"] = str(thesis)
    checkpoint["datamodule_hyper_parameters"]["cache"] = "memmap"  # would build a cache there
    checkpoint["datamodule_hyper_parameters"]["cache_dir"] = str(tmp_path / "their_cache")
    forged = tmp_path / "forged.ckpt"
    torch.save(checkpoint, forged)
    evaluate_with(forged, tmp_path / "eval")
    assert thesis.read_text() == "four years of work"
    assert not (tmp_path / "their_cache").exists()


def test_evaluating_on_changed_data_is_refused_as_a_leak_unless_a_split_file_is_given(
    best_checkpoint: Path, tmp_path: Path
) -> None:
    from scalp_ml.data.synthetic import generate

    other = generate(tmp_path / "other", n_images=60, seed=11, workers=2)
    with pytest.raises(ValueError, match=r"test split here .* is not the one .* \(a leak\)"):
        evaluate_with(best_checkpoint, tmp_path / "eval", f"data_root={other}")
    made = tmp_path / "eval" / "split.json"  # the new split went to the command's own folder
    assert made.is_file() and not (other / ".scalp_ml" / "splits").exists()
    metrics = evaluate_with(
        best_checkpoint, tmp_path / "eval2", f"data_root={other}", f"split_file={made}"
    )
    assert "test/macro_f1" in metrics


def test_resuming_on_another_split_is_refused(synthetic_root: Path, demo_run) -> None:
    from scalp_ml.data.datamodule import ScalpDataModule
    from scalp_ml.training.job import data_settings

    cfg = compose_train([*FAST, f"data.root={synthetic_root}"])
    datamodule = ScalpDataModule(**data_settings(cfg.data), seed=0)
    state = datamodule.state_dict()
    datamodule.load_state_dict(state)  # the same split: accepted
    state["images_sha256"]["val"] = "0" * 64
    with pytest.raises(ValueError, match=r"val split here .* resumed checkpoint"):
        datamodule.load_state_dict(state)


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    import torch

    from scalp_ml.training.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    last = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, last)
    before = last.read_bytes()

    def full(_: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left to write .*last\.ckpt .* bytes free"):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(3)}, last)
    assert last.read_bytes() == before  # still the whole previous checkpoint
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]  # no temporary left
    monkeypatch.undo()
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_training_saves_its_checkpoints_atomically(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scalp_ml.train import train
    from scalp_ml.training.checkpoint_io import AtomicCheckpointIO

    saved = []
    original = AtomicCheckpointIO.save_checkpoint

    def spy(self, checkpoint, path, storage_options=None) -> None:
        saved.append(Path(path).name)
        original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", spy)
    overrides = [*FAST, f"data.root={synthetic_root}", f"run_dir={tmp_path}"]
    train(compose_train([*overrides, "trainer.max_epochs=1", "+trainer.limit_train_batches=1"]))
    assert "last.ckpt" in saved and "best.ckpt" in saved


def test_a_new_run_into_an_earlier_runs_directory_is_refused_unless_told(
    synthetic_root: Path, tmp_path: Path
) -> None:
    from scalp_ml.train import train

    overrides = [*FAST, f"data.root={synthetic_root}", f"run_dir={tmp_path}"]
    short = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1"]
    train(compose_train([*overrides, *short]))
    first = (tmp_path / "run_info.json").read_text()
    one_run = len((tmp_path / "metrics.csv").read_text().splitlines())
    with pytest.raises(FileExistsError, match=r"already holds a run .* overwrite=true"):
        train(compose_train([*overrides, *short]))
    assert (tmp_path / "run_info.json").read_text() == first  # nothing of it was touched
    train(compose_train([*overrides, *short, "overwrite=true"]))
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == one_run  # not mixed
    assert (tmp_path / "run_info.json").read_text() != first


def test_an_empty_data_root_is_refused_instead_of_indexing_the_working_directory() -> None:
    from scalp_ml.training.job import data_settings

    with pytest.raises(ValueError, match=r"data\.root is empty"):
        data_settings(compose_train([*FAST, "data.root=''"]).data)


def test_device_cuda_without_a_gpu_blames_the_device_not_the_checkpoint(
    best_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from scalp_ml.inference.predictors import load_predictor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device=cuda: torch sees no CUDA GPU"):
        load_predictor(best_checkpoint, device="cuda")


def test_a_run_shows_none_of_the_stacks_known_noise(
    synthetic_root: Path, tmp_path: Path, recwarn: pytest.WarningsRecorder, caplog
) -> None:
    from scalp_ml.train import train

    overrides = [*FAST, f"data.root={synthetic_root}", f"run_dir={tmp_path}"]
    train(compose_train([*overrides, "trainer.max_epochs=1", "+trainer.limit_train_batches=1"]))
    shown = [str(w.message) for w in recwarn]
    assert not [m for m in shown if "LeafSpec" in m or "logging interval" in m], shown
    assert not [r for r in caplog.records if "Tip:" in r.getMessage()]


@pytest.mark.parametrize("size", ["0", "[64,0]", "[64,64,64]"])
def test_an_impossible_image_size_names_its_setting(size: str) -> None:
    from scalp_ml.data.datamodule import ScalpDataModule

    cfg = compose_train([*FAST, "data.root=/nonexistent", f"data.image_size={size}"])
    with pytest.raises(ValueError, match=r"^data\.image_size=.*expected a positive side"):
        ScalpDataModule(**cfg.data)
