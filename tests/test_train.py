import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scalp_ml.data.splits import file_sha256
from scalp_ml.labels import INDICATOR_NAMES
from tests.conftest import FAST, compose_train


def test_run_writes_report_metrics_and_figures(demo_run: tuple[Path, dict]) -> None:
    run_dir, metrics = demo_run
    for name in (
        "report.md",
        "metrics.json",
        "confusion_val.png",
        "confusion_test.png",
        "learning_curves.png",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test"]["macro_f1"] == pytest.approx(metrics["test/macro_f1"])
    assert saved["test"]["hamming_acc"] == pytest.approx(metrics["test/hamming_acc"])
    per_indicator = [saved["test"][f"macro_f1/{name}"] for name in INDICATOR_NAMES]
    assert saved["test"]["macro_f1"] == pytest.approx(sum(per_indicator) / 6)
    assert sum(map(sum, saved["test"]["confusion/dandruff"])) == saved["context"]["images"]["test"]
    report = (run_dir / "report.md").read_text()
    for name in (*INDICATOR_NAMES, "overall", "Hamming accuracy", saved["context"]["split_sha256"]):
        assert name in report


def test_run_records_config_seed_split_versions_and_commit(demo_run: tuple[Path, dict]) -> None:
    run_dir, _ = demo_run
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["seed"] == 42
    assert info["split_sha256"] == file_sha256(info["split_file"])
    assert info["packages"]["torch"] and info["packages"]["timm"] and info["packages"]["lightning"]
    assert "commit" in info["git"]
    assert "backbone: test_efficientnet" in (run_dir / "config.yaml").read_text()


def test_best_checkpoint_loads_safely_and_rebuilds_the_model(demo_run: tuple[Path, dict]) -> None:
    from scalp_ml.module import ScalpGrader

    run_dir, _ = demo_run
    best = run_dir / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    assert [item["name"] for item in checkpoint["labels"]["indicators"]] == list(INDICATOR_NAMES)
    assert checkpoint["labels"]["grades"] == ["good", "mild", "moderate", "severe"]
    model = ScalpGrader.load_from_checkpoint(best, map_location="cpu", weights_only=True)
    assert model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)).shape == (1, 6, 4)
    assert checkpoint["hyper_parameters"]["backbone"] == "test_efficientnet"
    assert (
        checkpoint["hyper_parameters"]["lr"] == 2e-3
        and checkpoint["hyper_parameters"]["gamma"] == 2
    )
    assert Path(checkpoint["datamodule_hyper_parameters"]["root"]).is_absolute()


@pytest.mark.slow  # the subprocess twin of the in-process demo_run fixture
def test_the_command_line_runs_as_a_user_would(synthetic_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "cli_run"
    overrides = [
        *FAST,
        f"data.root={synthetic_root}",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "scalp_ml.train", *overrides], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "report.md").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_a_bad_weights_path_stops_before_training(synthetic_root: Path, tmp_path: Path) -> None:
    from scalp_ml.train import train

    missing = tmp_path / "nope.safetensors"
    cfg = compose_train(
        [*FAST, f"data.root={synthetic_root}", f"run_dir={tmp_path}", f"model.weights={missing}"]
    )
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        train(cfg)


@pytest.mark.slow
def test_demo_learns_the_synthetic_grades(synthetic_demo_root: Path, tmp_path: Path) -> None:
    from scalp_ml.train import train

    cfg = compose_train(
        ["experiment=demo", f"data.root={synthetic_demo_root}", f"run_dir={tmp_path}"]
    )
    assert train(cfg)["test/macro_f1"] >= 0.60
