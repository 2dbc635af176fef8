"""W&B offline: what a run folder holds, read back from its records and files."""

import json
import logging
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from scalp_ml.labels import GRADES, INDICATOR_NAMES
from scalp_ml.training.loggers import EpochWandbLogger, finish_wandb, wandb_settings
from scalp_ml.training.wandb_media import confusion_charts
from tests.conftest import FAST, compose_train

BLOCK = 32768  # the records file is a LevelDB-style log: 32 KiB blocks of 7-byte-headed chunks


def read_records(path: Path) -> Iterator:
    """The protobuf records of an offline run's ``run-<id>.wandb`` (wandb 0.31 has no reader)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, chunk = 7, b""
    while position + 7 <= len(data):
        left = BLOCK - position % BLOCK
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (length == 0 and kind == 0):  # block padding
            position += left
            continue
        chunk += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or its last chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


class OfflineRun:
    """A finished offline run: its folder and its records, sorted by kind."""

    def __init__(self, run_dir: Path, metrics: dict[str, float]) -> None:
        (self.folder,) = (run_dir / "wandb").glob("offline-run-*")
        self.run_dir, self.metrics = run_dir, metrics
        self.records: dict[str, list] = {}
        for record in read_records(next(self.folder.glob("run-*.wandb"))):
            kind = record.WhichOneof("record_type")
            self.records.setdefault(kind, []).append(getattr(record, kind))

    def history(self) -> list[dict[str, str]]:
        return [
            {_key(item): item.value_json for item in row.item} for row in self.records["history"]
        ]

    def summary(self) -> dict[str, object]:
        found = {}
        for update in self.records["summary"]:
            found |= {_key(item): json.loads(item.value_json) for item in update.update}
        return found


def test_confusion_charts_hold_each_indicators_counts_under_grade_names() -> None:
    counts = torch.arange(16).reshape(4, 4)
    results = {f"confusion/{name}": counts * (i % 2) for i, name in enumerate(INDICATOR_NAMES)}
    charts = confusion_charts(results, "val", "validation, epoch 3")
    assert list(charts) == [f"val/confusion/{name}" for name in INDICATOR_NAMES]
    for i, name in enumerate(INDICATOR_NAMES):
        table = charts[f"val/confusion/{name}"].table
        found = {(true, predicted): n for true, predicted, n in table.data}
        expected = {
            (GRADES[true], GRADES[predicted]): float(counts[true, predicted] * (i % 2))
            for true in range(4)
            for predicted in range(4)
        }
        assert found == expected, name


def test_epoch_rows_define_their_metrics_once(tmp_path: Path) -> None:
    logger = EpochWandbLogger(
        monitor="val/loss", monitor_mode="min", save_dir=str(tmp_path), offline=True
    )
    logger.log_metrics({"val/loss": 0.7, "val/f1/dandruff/0": 0.2, "epoch": 0}, step=3)
    logger.log_metrics({"val/loss": 0.5, "val/f1/dandruff/0": 0.3, "epoch": 1}, step=7)
    logger.log_metrics({"lr": 0.1}, step=8)  # no epoch: not a per-epoch metric
    finish_wandb([logger])
    run = OfflineRun(tmp_path, {})
    defined = [
        metric for metric in run.records["metric"] if metric.name not in ("", "trainer/global_step")
    ]
    assert [metric.name for metric in defined] == ["val/loss", "val/f1/dandruff/0"]
    loss, per_grade = defined
    assert loss.step_metric == per_grade.step_metric == "epoch"
    assert loss.summary.min and not loss.options.hidden and per_grade.options.hidden
    assert run.summary()["val/loss"] == {"min": 0.5}


@pytest.fixture(scope="module")
def offline_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> OfflineRun:
    """A two-epoch tiny run logged to W&B offline (no API key), best checkpoint included."""
    from scalp_ml.train import train

    run_dir = tmp_path_factory.mktemp("wandb_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("WANDB_MODE", raising=False)  # offline because no API key is configured
        patch.delenv("WANDB_API_KEY", raising=False)
        patch.setenv("NETRC", str(run_dir / "no-netrc"))
        patch.setenv("HOME", str(run_dir / "home"))
        overrides = [*FAST, f"data.root={synthetic_root}", f"run_dir={run_dir}", "logger=wandb"]
        flags = ["logger.wandb.tags=[test_tag]", "callbacks.wandb_media.log_best_checkpoint=true"]
        metrics = train(compose_train([*overrides, *flags, "trainer.max_epochs=2"]))
    return OfflineRun(run_dir, metrics)


@pytest.mark.slow  # one shared ~75 s training run
def test_config_is_the_resolved_config_once(offline_run: OfflineRun) -> None:
    updates = [_key(item) for record in offline_run.records["config"] for item in record.update]
    logged = [key for key in updates if not key.startswith("_wandb")]
    # Lightning's module and datamodule hyper-parameters (backbone, lr, ...) are not logged again.
    cfg_keys = OmegaConf.load(offline_run.run_dir / "config.yaml").keys()
    assert sorted(logged) == sorted(cfg_keys)
    tags = [record.tags for record in offline_run.records["run"]]
    assert ["test_tag"] in [list(found) for found in tags]


@pytest.mark.slow  # one shared ~75 s training run
def test_epoch_metrics_are_drawn_per_epoch_and_the_monitored_one_keeps_its_best(
    offline_run: OfflineRun,
) -> None:
    defined = {metric.name: metric for metric in offline_run.records["metric"] if metric.name}
    for key in ["val/macro_f1", "val/loss", "train/loss", "val/macro_f1/dandruff"]:
        assert defined[key].step_metric == "epoch", key
    assert defined["val/macro_f1"].summary.max
    assert not defined["val/macro_f1/dandruff"].options.hidden
    assert defined["val/f1/dandruff/0"].options.hidden  # per-grade scores: no automatic panels
    best = max(float(row["val/macro_f1"]) for row in offline_run.history() if "val/macro_f1" in row)
    assert offline_run.summary()["val/macro_f1"] == {"max": pytest.approx(best)}


@pytest.mark.slow  # one shared ~75 s training run
def test_confusion_matrices_per_indicator_each_epoch_and_at_the_end(
    offline_run: OfflineRun,
) -> None:
    rows = offline_run.history()
    for name in INDICATOR_NAMES:
        epochs = [row["epoch"] for row in rows if f"val/confusion/{name}_table/_type" in row]
        assert epochs == ["0", "1"], name  # at their epoch, not the one before
        assert any(f"final/test/confusion/{name}_table/_type" in row for row in rows), name
    # The final evaluation is no third epoch: its rows carry no epoch and no val/ curve.
    final = [row for row in rows if any(key.startswith("final/") for key in row)]
    assert final and not any("epoch" in row or "val/macro_f1" in row for row in final)
    tables = offline_run.folder.glob("files/media/table/val/confusion/dandruff_table_*.json")
    table = json.loads(min(tables).read_text())
    assert table["columns"] == ["Actual", "Predicted", "nPredictions"]
    assert {row[0] for row in table["data"]} == {"good", "mild", "moderate", "severe"}
    assert not list(offline_run.folder.glob("files/media/images/val/confusion_*.png"))


@pytest.mark.slow  # one shared ~75 s training run
def test_final_results_in_summary_and_table(offline_run: OfflineRun) -> None:
    summary, metrics = offline_run.summary(), offline_run.metrics
    assert summary["final/test/macro_f1"] == pytest.approx(metrics["test/macro_f1"])
    for key in ["final/test/macro_f1_ci_low", "final/test/hamming_acc_ci_high"]:
        assert key in summary
    assert "final/test/macro_f1/dandruff_ci_low" in summary
    assert summary["final/test/collapsed_heads"] >= 0
    assert "final/test/collapsed_indicators" in summary
    (table_file,) = offline_run.folder.glob("files/media/table/final/test/report_*.table.json")
    table = json.loads(table_file.read_text())
    rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    assert set(rows) == {*INDICATOR_NAMES, "overall"}
    assert rows["overall"]["macro_f1"] == pytest.approx(metrics["test/macro_f1"])
    assert rows["dandruff"]["qwk"] == pytest.approx(metrics["test/qwk/dandruff"], nan_ok=True)


@pytest.mark.slow  # one shared ~75 s training run
def test_report_files_are_copied_into_the_run(offline_run: OfflineRun) -> None:
    saved = {entry.path for record in offline_run.records["files"] for entry in record.files}
    for name in ["report.md", "metrics.json", "confusion_test.png", "confusion_val.png"]:
        copy = offline_run.folder / "files" / name
        assert name in saved and copy.is_file() and not copy.is_symlink(), name
        assert copy.read_bytes() == (offline_run.run_dir / name).read_bytes()


@pytest.mark.slow  # one shared ~75 s training run
def test_best_checkpoint_artifact_lies_inside_the_run_folder(offline_run: OfflineRun) -> None:
    (artifact,) = [a for a in offline_run.records["artifact"] if a.type == "model"]
    (entry,) = artifact.manifest.contents
    staged = Path(entry.local_path)
    assert staged.is_relative_to(offline_run.folder) and staged.is_file()
    best = offline_run.run_dir / "checkpoints" / "best.ckpt"  # checkpoints stay in the run
    assert entry.path == best.name and staged.read_bytes() == best.read_bytes()
    assert artifact.name == "model-" + offline_run.folder.name.rsplit("-", 1)[1]


def test_wandb_goes_offline_without_an_api_key_and_groups_sweeps(
    monkeypatch, tmp_path, caplog
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = compose_train(["logger=wandb", f"run_dir={tmp_path}"]).logger.wandb
    caplog.set_level(logging.INFO, logger="scalp_ml.training.loggers")
    assert wandb_settings(spec, "sweep-1") == {"offline": True, "group": "sweep-1"}
    assert "W&B logs offline (no API key configured)" in caplog.text
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_settings(spec, None) == {"offline": False, "group": None}
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_settings(spec, None)["offline"] is True
