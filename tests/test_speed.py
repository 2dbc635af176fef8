"""Speed switches: mixed precision, channels-last, torch.compile, accumulation, clipping."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from scalp_ml.module import ScalpGrader
from scalp_ml.training.job import apply_speed_switches, build_module
from tests.conftest import FAST, compose_train


def tiny_grader() -> ScalpGrader:
    return build_module(compose_train(["model=tiny"]))


def test_channels_last_and_compile_keep_the_checkpoint_layout() -> None:
    model = tiny_grader()
    keys = list(model.state_dict())
    apply_speed_switches(model, OmegaConf.create({"channels_last": True, "compile": True}))
    convolutions = [p for p in model.parameters() if p.ndim == 4]
    assert convolutions and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in convolutions
    )
    assert list(model.state_dict()) == keys  # compiled in place: checkpoints load as before


@pytest.mark.slow  # a training run with bf16 autocast on CPU (~8 s)
def test_mixed_precision_accumulation_and_clipping_run(synthetic_root: Path, tmp_path: Path):
    from scalp_ml.train import train

    switches = [
        "trainer.precision=bf16-mixed",
        "trainer.accumulate_grad_batches=2",
        "trainer.gradient_clip_val=1.0",
        "speed.channels_last=true",
        "trainer.max_epochs=1",
    ]
    cfg = compose_train([*FAST, *switches, f"data.root={synthetic_root}", f"run_dir={tmp_path}"])
    assert 0.0 <= train(cfg)["val/macro_f1"] <= 1.0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3  # 5 batches of 32 (of 168 images), a step every 2
