"""DDP on CPU (2 gloo processes): synchronised metrics equal a single-process evaluation."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from timm.layers import BatchNormAct2d, SyncBatchNormAct, convert_sync_batchnorm

from scalp_ml.models.network import GradingNetwork
from scalp_ml.training.distributed import TimmSyncBatchNorm, evaluation_sampler
from tests.conftest import FAST, compose_config

# 37 validation and 35 test images: odd, so PyTorch's DistributedSampler would pad each split
# with a repeated image to share it evenly between 2 ranks. (The per-image strategy gives exact
# sizes; the session strategy keeps sessions whole.)
ODD_SPLIT = ["data.split.strategy=image", "data.split.ratios=[0.7,0.155,0.145]"]


@pytest.mark.slow  # two gloo training processes end to end (~20 s)
def test_ddp_validation_equals_a_single_process_evaluation(synthetic_root: Path, tmp_path: Path):
    from scalp_ml.evaluation.command import evaluate

    run_dir = tmp_path / "ddp"
    overrides = [
        *FAST,
        f"data.root={synthetic_root}",
        *ODD_SPLIT,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.benchmark=false",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "scalp_ml.train", *overrides], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr

    log = pd.read_csv(run_dir / "metrics.csv")
    logged = log.loc[(log["epoch"] == 0) & log["val/macro_f1"].notna(), "val/macro_f1"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    split = json.loads(Path(saved["context"]["split_file"]).read_text())
    assert split["counts"]["val"] == 37 and split["counts"]["test"] == 35
    for stage in ("val", "test"):  # every image counted once across the two ranks
        assert sum(map(sum, saved[stage]["confusion/dandruff"])) == split["counts"][stage]

    single = evaluate(
        compose_config(
            "eval",
            [
                f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                "split=val",
                f"out_dir={tmp_path / 'eval'}",
                "device=cpu",
                "num_workers=0",
            ],
        )
    )
    assert logged.item() == pytest.approx(single["val/macro_f1"], abs=1e-6)
    assert saved["val"]["macro_f1"] == pytest.approx(single["val/macro_f1"], abs=1e-6)


def test_sync_batchnorm_keeps_timm_activations_and_reverts() -> None:
    torch.manual_seed(0)
    model = GradingNetwork("test_efficientnet").eval()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    expected = model(images)
    fused = sum(isinstance(m, BatchNormAct2d) for m in model.modules())
    synchronised = convert_sync_batchnorm(model)
    assert sum(isinstance(m, SyncBatchNormAct) for m in synchronised.modules()) == fused > 0
    reverted = TimmSyncBatchNorm().revert(synchronised)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in reverted.modules())
    assert sum(isinstance(m, BatchNormAct2d) for m in reverted.modules()) == fused
    torch.testing.assert_close(reverted(images), expected)
    cpu_model = GradingNetwork("test_efficientnet")
    assert TimmSyncBatchNorm().apply(cpu_model) is cpu_model  # SyncBatchNorm is GPU-only


def test_single_process_evaluation_uses_the_default_sampler() -> None:
    assert evaluation_sampler(list(range(5))) is None
