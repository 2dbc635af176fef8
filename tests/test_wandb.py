"""W&B offline: the run folder holds the config, the metrics and the confusion-matrix images."""

import json
import logging
from pathlib import Path

import pytest

from scalp_ml.labels import INDICATOR_NAMES
from scalp_ml.training.loggers import wandb_settings
from tests.conftest import FAST, compose_train


def test_offline_wandb_run_holds_config_metrics_and_media(
    synthetic_root: Path, tmp_path: Path, monkeypatch
) -> None:
    from scalp_ml.train import train

    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline because no API key is configured
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    overrides = [*FAST, f"data.root={synthetic_root}", f"run_dir={tmp_path}", "logger=wandb"]
    flags = ["logger.wandb.tags=[test_tag]", "callbacks.wandb_media.log_best_checkpoint=true"]
    cfg = compose_train([*overrides, *flags, "trainer.max_epochs=2"])
    metrics = train(cfg)

    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    # The run's records (config, history) are protobuf in run-<id>.wandb; wandb 0.31 has no
    # public reader for it, so look for the logged names in its bytes.
    (records,) = run.glob("run-*.wandb")
    raw = records.read_bytes()
    keys = ["val/macro_f1", "test/macro_f1", *(f"val/macro_f1/{n}" for n in INDICATOR_NAMES)]
    # Uncertainty and collapsed heads: per epoch (val/collapsed_heads) and in the summary.
    keys += ["val/collapsed_heads", "test/macro_f1_ci_low", "test/hamming_acc_ci_high"]
    keys += ["test/macro_f1/dandruff_ci_low", "test/collapsed_heads", "test/collapsed_indicators"]
    artifact = "model-" + run.name.rsplit("-", 1)[1]  # the best checkpoint, for `wandb sync`
    for key in [*keys, "test_efficientnet", "test_tag", artifact]:  # metrics, config, tags
        assert key.encode() in raw, key
    media = run / "files" / "media"
    # One confusion image per validation epoch (2); the final evaluation (test/macro_f1 above)
    # is in the run's summary.
    assert len(list((media / "images" / "val").glob("confusion_*.png"))) == 2
    (table_file,) = (media / "table" / "test").glob("report_*.table.json")
    table = json.loads(table_file.read_text())
    rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    assert set(rows) == {*INDICATOR_NAMES, "overall"}
    assert rows["overall"]["macro_f1"] == pytest.approx(metrics["test/macro_f1"])
    assert rows["dandruff"]["qwk"] == pytest.approx(metrics["test/qwk/dandruff"], nan_ok=True)
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()  # checkpoints stay in the run


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
