"""Hydra multiruns as a user starts them: grid sweeps, in subprocesses (Optuna: elsewhere)."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scalp_ml.training.distributed import refuse_distributed_multirun
from tests.conftest import FAST, compose_train, run_train

# One short epoch per job: the sweep machinery is under test, not the model.
ONE_SHORT_EPOCH = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2"]


@pytest.mark.slow  # a subprocess multirun of training jobs (~15 s)
def test_grid_sweep_writes_a_run_per_job_and_a_summary(synthetic_root: Path, tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    run_train(
        "-m",
        *FAST,
        *ONE_SHORT_EPOCH,
        f"data.root={synthetic_root}",
        f"hydra.sweep.dir={sweep_dir}",
        "model=tiny,tiny_resnet",
        "optimizer.lr=1e-3",
    )
    summary = pd.read_csv(sweep_dir / "sweep_summary.csv")
    assert len(summary) == 2 and set(summary["status"]) == {"finished"}
    jobs = {(model, "0.001") for model in ("tiny", "tiny_resnet")}
    assert {
        (o.split("model=")[1].split()[0], o.split("optimizer.lr=")[1].split()[0])
        for o in summary["overrides"]
    } == jobs
    assert summary["split_sha256"].nunique() == 1  # every job on the same split file
    for _, row in summary.iterrows():
        run_dir = Path(row["run_dir"])
        assert run_dir.parent == sweep_dir and (run_dir / "checkpoints" / "last.ckpt").is_file()
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert row["val/macro_f1"] == pytest.approx(metrics["val"]["macro_f1"])
        assert row["test/macro_f1"] == pytest.approx(metrics["test"]["macro_f1"])
        assert Path(row["checkpoint"]).parent == run_dir / "checkpoints"
    backbones = {
        yaml.safe_load((Path(d) / "config.yaml").read_text())["model"]["backbone"]
        for d in summary["run_dir"]
    }
    assert backbones == {"test_efficientnet", "test_resnet"}


@pytest.mark.slow
def test_a_failed_job_keeps_the_other_rows_with_a_column_per_swept_parameter(
    synthetic_root: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_train(
        "-m",
        *FAST,
        *ONE_SHORT_EPOCH,
        f"data.root={synthetic_root}",
        f"hydra.sweep.dir={sweep_dir}",
        "optimizer.lr=-1.0,1e-3",  # the first job fails (AdamW refuses a negative rate)
        check=False,
    )
    assert result.returncode != 0  # Hydra reports the failed job
    summary = pd.read_csv(sweep_dir / "sweep_summary.csv")
    assert list(summary["optimizer.lr"]) == [0.001, -1.0]  # finished first, then the failure
    assert list(summary["status"]) == ["finished", "failed"]
    assert "Invalid learning rate" in summary["error"].iloc[1]
    assert summary["val/macro_f1"].notna().tolist() == [True, False]
    assert "data.root" not in summary.columns  # the same in every job: no column


def test_a_multirun_refuses_distributed_training() -> None:
    with pytest.raises(ValueError, match="--multirun cannot be combined"):
        refuse_distributed_multirun(compose_train(["trainer=ddp"]).trainer)
    refuse_distributed_multirun(compose_train([]).trainer)  # one device: fine


def test_the_slurm_launcher_runs_one_gpu_per_job() -> None:
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", ["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1, 1)
    assert cfg.hydra.callbacks.sweep_summary._target_ == "scalp_ml.training.sweep.SweepSummary"
