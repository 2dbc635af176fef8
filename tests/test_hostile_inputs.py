"""Hostile or mistaken inputs: each stops with a message naming the file or key, and what to do."""

import json
import os
import random
import re
import signal
from pathlib import Path

import lightning as L
import pytest
import torch

from scalp_ml.inference.checkpoint import CheckpointError
from tests.conftest import FAST, compose_config, compose_train
from tests.test_checkpoint import Payload


def train_overrides(synthetic_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """One tiny epoch of two batches on the shared synthetic data."""
    return [
        *FAST,
        f"data.root={synthetic_root}",
        f"run_dir={run_dir}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        *extra,
    ]


def test_resuming_from_a_malicious_checkpoint_never_runs_it_and_names_the_file(
    best_checkpoint: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    from scalp_ml.train import train

    marker = tmp_path / "code_ran"
    checkpoint = torch.load(best_checkpoint, weights_only=True)
    checkpoint["optimizer_states"] = [Payload(marker)]
    evil = tmp_path / "evil.ckpt"
    torch.save(checkpoint, evil)
    cfg = compose_train(train_overrides(synthetic_root, tmp_path / "run", f"ckpt_path={evil}"))
    with pytest.raises(CheckpointError, match=re.escape(str(evil))) as error:
        train(cfg)
    assert "refused without running any of its code" in str(error.value)
    assert "posix.system" in str(error.value)  # what it would have called
    assert "weights_only" not in str(error.value)  # never torch's advice to load it unsafely
    assert not marker.exists()


@pytest.mark.parametrize(
    ("backbone", "problem"),
    [
        (
            "test_resnet",
            r"its weights do not match its recorded model settings \(backbone="
            r"test_resnet, head=softmax\); first mismatch: net\.backbone\.\S+ is missing",
        ),
        (
            "no_such_net",
            r"its recorded model settings \(hyper_parameters\) build no model: "
            r"Unknown timm backbone 'no_such_net'",
        ),
    ],
)
def test_a_checkpoint_whose_weights_do_not_fit_its_settings_names_the_file_and_weight(
    best_checkpoint: Path, tmp_path: Path, backbone: str, problem: str
) -> None:
    from scalp_ml.inference.predictors import load_predictor

    checkpoint = torch.load(best_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["backbone"] = backbone  # another model's settings
    forged = tmp_path / "forged.ckpt"
    torch.save(checkpoint, forged)
    with pytest.raises(CheckpointError, match=re.escape(f"{forged}: ") + problem):
        load_predictor(forged, "cpu")


def run_command(command: str, checkpoint: Path, tmp_path: Path, synthetic_root: Path) -> None:
    """``evaluate``, ``predict``, ``export`` or ``train ckpt_path=`` on ``checkpoint``."""
    if command == "evaluate":
        from scalp_ml.evaluation.command import evaluate

        evaluate(compose_config("eval", [f"ckpt_path={checkpoint}", f"out_dir={tmp_path}"]))
    elif command == "predict":
        from scalp_ml.inference.prediction import predict

        predict(str(checkpoint), str(synthetic_root), tmp_path / "predict", device="cpu")
    elif command == "export":
        from scalp_ml.inference.export import export

        export(checkpoint, "onnx", tmp_path / "model.onnx")
    else:
        from scalp_ml.train import train

        overrides = train_overrides(synthetic_root, tmp_path / "run", f"ckpt_path={checkpoint}")
        train(compose_train(overrides))


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "train"])
def test_random_bytes_are_no_checkpoint_and_unsafe_loading_is_never_advised(
    command: str, tmp_path: Path, synthetic_root: Path
) -> None:
    junk = tmp_path / "random.ckpt"
    junk.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError) as error:
        run_command(command, junk, tmp_path, synthetic_root)
    message = str(error.value)
    assert message.startswith(f"{junk} is not a PyTorch checkpoint, or it is corrupt or truncated")
    assert "weights_only" not in message and "safe_globals" not in message


def test_whatever_the_random_bytes_the_error_is_the_same(tmp_path: Path) -> None:
    from scalp_ml.inference.checkpoint import load_checkpoint

    junk = tmp_path / "random.ckpt"
    for seed in range(300):  # about one in ten breaks torch's unpickler with a raw KeyError etc.
        junk.write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(CheckpointError, match=re.escape(f"{junk} is not a PyTorch checkpoint")):
            load_checkpoint(junk)


def test_a_truncated_checkpoint_is_named_as_corrupt_or_truncated(
    best_checkpoint: Path, tmp_path: Path
) -> None:
    from scalp_ml.inference.checkpoint import load_checkpoint

    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(best_checkpoint.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=re.escape(f"{cut} is not a PyTorch checkpoint")):
        load_checkpoint(cut)


def with_metadata(onnx_file: Path, target: Path, edit) -> Path:
    """A copy of ``onnx_file`` whose scalp_ml metadata (JSON text) is ``edit(metadata)``."""
    import onnx

    from scalp_ml.inference.predictors import ONNX_METADATA_KEY

    proto = onnx.load(onnx_file)
    (entry,) = [item for item in proto.metadata_props if item.key == ONNX_METADATA_KEY]
    entry.value = edit(json.loads(entry.value))
    onnx.save(proto, target)
    return target


def without(key: str):
    return lambda metadata: json.dumps({k: v for k, v in metadata.items() if k != key})


def replaced(key: str, value: object):
    return lambda metadata: json.dumps(metadata | {key: value})


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (lambda m: json.dumps(m | {"indicators": m["indicators"][:5]}), "indicators", "lists"),
        (without("data"), "data", "is missing"),
        (without("image_size"), "image_size", "is missing"),
        (replaced("image_size", "garbage"), "image_size", "is 'garbage', not a side"),
        (replaced("image_size", [32, 32]), "image_size", "is [32, 32], but the model takes 64x64"),
        (replaced("grades", ["good", "bad"]), "grades", "lists ['good', 'bad']"),
        (replaced("images_sha256", ["test"]), "images_sha256", "is not a JSON object"),
    ],
)
def test_faked_onnx_metadata_names_the_file_and_the_key(
    onnx_file: Path, tmp_path: Path, synthetic_root: Path, edit, key: str, problem: str
) -> None:
    from scalp_ml.inference.prediction import predict
    from scalp_ml.inference.predictors import OnnxMetadataError

    faked = with_metadata(onnx_file, tmp_path / "faked.onnx", edit)
    with pytest.raises(OnnxMetadataError) as error:
        predict(str(faked), str(synthetic_root), tmp_path / "out")
    assert str(error.value).startswith(f"{faked}: metadata key '{key}' {problem}")
    assert "python -m scalp_ml.export" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_onnx_metadata_that_is_not_json_names_the_file(onnx_file: Path, tmp_path: Path) -> None:
    from scalp_ml.inference.predictors import OnnxMetadataError, load_predictor

    faked = with_metadata(onnx_file, tmp_path / "faked.onnx", lambda metadata: "{not json")
    with pytest.raises(OnnxMetadataError, match=re.escape(f"{faked}: its 'scalp_ml' metadata")):
        load_predictor(faked)


def test_a_glob_through_a_folder_with_brackets_in_its_name_matches_it_literally(
    tmp_path: Path,
) -> None:
    from scalp_ml.inference.prediction import find_images

    visit = tmp_path / "photos" / "[2024] visit"
    visit.mkdir(parents=True)
    (visit / "a.jpg").write_bytes(b"")
    (tmp_path / "photos" / "2 visit").mkdir()  # what [2024] means as a character class
    (tmp_path / "photos" / "2 visit" / "b.jpg").write_bytes(b"")
    assert find_images(str(visit / "*.jpg")) == [visit / "a.jpg"]
    missing = str(tmp_path / "photos" / "[2024] trip" / "*.jpg")
    with pytest.raises(FileNotFoundError, match=re.escape(f"'{missing}'")) as error:
        find_images(missing)
    assert "[[] is a '['" in str(error.value)


class SigintInSecondEpoch(L.Callback):
    """Ctrl-C after the first epoch's validation wrote last.ckpt."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_exits_130_with_the_resume_hint(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from scalp_ml.train import train
    from scalp_ml.training.job import interrupted_hint

    sender = f"+callbacks.sigint._target_={SigintInSecondEpoch.__module__}.SigintInSecondEpoch"
    overrides = train_overrides(synthetic_root, tmp_path, "trainer.max_epochs=2", sender)
    handler = signal.getsignal(signal.SIGINT)
    # Ctrl-C as in a terminal, also when the suite runs where it is ignored (nohup, a "&" job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as stopped:
            train(compose_train(overrides))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C on its way out
    assert stopped.value.code == 128 + signal.SIGINT
    assert f"ckpt_path=last hydra.run.dir={tmp_path}" in caplog.text
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "metrics.json").exists()
    assert "no checkpoint was saved yet" in interrupted_hint(tmp_path / "elsewhere")
