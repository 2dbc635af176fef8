import subprocess
import sys

import pytest

from tests.conftest import compose_config, compose_train


def test_default_config_is_the_study_recipe() -> None:
    cfg = compose_train(["run_dir=/tmp/unused"])
    assert cfg.model.backbone == "efficientnet_b4" and cfg.model.pretrained is True
    assert cfg.data.image_size == 448
    assert list(cfg.data.split.ratios) == [0.7, 0.15, 0.15]
    assert cfg.data.batch_size == 16
    assert set(cfg.data.augment) == {"horizontal_flip", "color_jitter", "affine", "crop"}
    assert cfg.data.augment.crop is None  # trained on the whole letterboxed image
    jitter, affine = cfg.data.augment.color_jitter, cfg.data.augment.affine
    assert (
        jitter.brightness > 0 and jitter.contrast > 0 and jitter.hue > 0 and jitter.saturation > 0
    )
    assert affine.rotate[1] > 0 and affine.scale[0] < 1 < affine.scale[1]
    assert cfg.optimizer.name == "adamw" and cfg.optimizer.lr == 1e-4
    assert "scheduler" not in cfg  # constant learning rate
    assert cfg.loss.gamma == 2.0
    assert cfg.trainer.max_epochs == 30
    assert cfg.monitor.metric == "val/macro_f1" and cfg.monitor.mode == "max"
    stop, best = cfg.callbacks.early_stopping, cfg.callbacks.model_checkpoint
    assert stop.patience == 5 and stop.monitor == "val/macro_f1" and stop.mode == "max"
    assert best.monitor == "val/macro_f1" and best.mode == "max"


def test_model_choices_map_to_timm_names() -> None:
    names = {
        choice: compose_train([f"model={choice}", "run_dir=/tmp/unused"]).model.backbone
        for choice in ("effnet_b4", "effnet_b0", "resnet50", "convnext_tiny", "tiny")
    }
    assert names == {
        "effnet_b4": "efficientnet_b4",
        "effnet_b0": "efficientnet_b0",
        "resnet50": "resnet50",
        "convnext_tiny": "convnext_tiny",
        "tiny": "test_efficientnet",
    }


def test_cfg_job_prints_the_recipe() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scalp_ml.train", "--cfg", "job"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in (
        "backbone: efficientnet_b4",
        "image_size: 448",
        "lr: 0.0001",
        "gamma: 2.0",
        "max_epochs: 30",
        "patience: 5",
    ):
        assert line in result.stdout, line


@pytest.mark.parametrize(
    ("config", "override", "allowed"),
    [
        ("train", "data.split.strategy=sesion", "[image, session, official]"),
        ("train", "data.on_bad_image=ignore", "[error, skip]"),
        ("train", "data.cache=mmap", "[none, memmap]"),
        ("eval", "split=tset", "[train, val, test]"),
        ("predict", "device=tpu", "[auto, cpu, cuda]"),
        ("export", "format=tflite", "[onnx, torchscript, safetensors]"),
    ],
)
def test_a_bad_value_fails_at_composition_naming_the_key_and_the_choices(
    config: str, override: str, allowed: str
) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as error:
        compose_config(config, [override])
    message = f"{error.value} {error.value.__cause__}"
    assert f"Invalid value '{override.split('=')[1]}', expected one of {allowed}" in message
    assert override.split("=")[0] in message


def test_each_command_has_its_own_quick_help() -> None:
    from scalp_ml.cli import help_text

    predict = help_text("predict", [])
    assert "python -m scalp_ml.predict" in predict and "inputs: ???" in predict
    assert "Examples" in predict and "optimizer" not in predict  # not the training groups
    train = help_text("train", ["experiment=demo"])
    assert "model: convnext_tiny, effnet_b0" in train and "backbone: test_efficientnet" in train
    result = subprocess.run(
        [sys.executable, "-m", "scalp_ml.evaluate", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "split: test" in result.stdout


def test_recommended_demo_is_the_demo_plus_the_ablation_winner() -> None:
    """experiment=recommended_demo trains exactly what benchmarks/RESULTS.md measured."""
    winner = [
        "model.head=corn",
        "loss=corn",
        "callbacks=ema",
        "callbacks.ema.decay=0.99",
        "data.image_size=[120,160]",
        "data.sampler=balanced",
        "trainer.max_epochs=48",
    ]
    measured = compose_train(["experiment=demo", *winner, "run_dir=/tmp/unused"])
    recommended = compose_train(["experiment=recommended_demo", "run_dir=/tmp/unused"])
    assert recommended == measured


def test_recommended_keeps_the_study_recipe_but_the_winning_changes() -> None:
    study = compose_train(["run_dir=/tmp/unused"])
    recommended = compose_train(["experiment=recommended", "run_dir=/tmp/unused"])
    assert (recommended.model.head, recommended.loss.name, recommended.data.sampler) == (
        "corn",
        "corn",
        "balanced",
    )
    assert list(recommended.data.image_size) == [480, 640] and "ema" in recommended.callbacks
    for key in ("optimizer", "trainer"):
        assert recommended[key] == study[key], key
    assert recommended.model.backbone == study.model.backbone == "efficientnet_b4"
