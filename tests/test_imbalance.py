"""The imbalance options wired into training: losses, the CORN head and the balanced sampler."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.data.sampler import BalancedSampler, ShuffledSampler, rarity_weights
from scalp_ml.data.splits import default_split_path
from scalp_ml.inference.checkpoint import load_checkpoint
from scalp_ml.inference.export import export
from scalp_ml.inference.predictors import OnnxPredictor
from scalp_ml.labels import INDICATOR_NAMES
from scalp_ml.models.losses import class_balanced_weights, grade_priors
from scalp_ml.module import ScalpGrader
from tests.conftest import FAST, compose_train

# Short training runs covering every option: one epoch of two batches (DRW: two epochs,
# weighted from the second). The balanced sampler rides along with logit adjustment.
RUNS = {
    "logit_adjusted": ["loss=logit_adjusted", "data.sampler=balanced"],
    "drw": ["loss=class_balanced_focal_drw", "loss.drw_epoch=1", "trainer.max_epochs=2"],
    "corn": ["model.head=corn", "loss=corn"],
}
SHORT = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+callbacks.probe._target_=tests.test_imbalance.Probe",
]


class Probe(L.Callback):
    """Records, per training epoch, the epoch the loss was told and the train loader's sampler."""

    seen: ClassVar[list[tuple[int, int, str]]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sampler = type(trainer.train_dataloader.sampler).__name__
        Probe.seen.append((trainer.current_epoch, pl_module.loss.epoch, sampler))


@pytest.fixture(scope="module")
def trained(
    synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], dict[str, Any]]:
    """Trains the run called ``name`` of ``RUNS`` once: its directory, metrics and probe."""
    from scalp_ml.train import train

    runs: dict[str, dict[str, Any]] = {}

    def run(name: str) -> dict[str, Any]:
        if name not in runs:
            run_dir = tmp_path_factory.mktemp(name)
            overrides = [*FAST, f"data.root={synthetic_root}", f"run_dir={run_dir}", *SHORT]
            Probe.seen = []
            metrics = train(compose_train([*overrides, *RUNS[name]]))
            best = run_dir / "checkpoints" / "best.ckpt"
            runs[name] = {"dir": run_dir, "metrics": metrics, "best": best, "seen": Probe.seen}
        return runs[name]

    return run


def split_grade_counts(root: Path) -> np.ndarray:
    """Training images per indicator and grade, read from the saved split and the index."""
    split_file = default_split_path(root, (0.7, 0.15, 0.15), 42, "session")
    train = json.loads(split_file.read_text())["splits"]["train"]
    manifest = pd.read_csv(root / ".scalp_ml" / "index" / "manifest.csv")
    rows = manifest[manifest["name"].isin(train)]
    return np.array(
        [[(rows[name] == grade).sum() for grade in range(4)] for name in INDICATOR_NAMES]
    )


@pytest.mark.parametrize("name", list(RUNS))
def test_each_option_trains_validates_and_evaluates_alike(
    trained: Callable[[str], dict[str, Any]], name: str
) -> None:
    run = trained(name)
    loaded = load_checkpoint(run["best"])
    assert loaded.model.hparams.head == ("corn" if name == "corn" else "softmax")
    log = pd.read_csv(run["dir"] / "metrics.csv")
    validated = log.loc[log["val/macro_f1"].notna()]
    # The best epoch's validation score, accumulated in validation_step, equals the final
    # evaluation of its checkpoint through predict (grade probabilities, argmax).
    best_epoch = torch.load(run["best"], weights_only=True)["epoch"]
    logged = validated.loc[validated["epoch"] == best_epoch, "val/macro_f1"].iloc[0]
    assert logged == pytest.approx(run["metrics"]["val/macro_f1"], abs=1e-6)
    assert np.isfinite(validated["val/loss"]).all()


def test_priors_and_class_weights_of_the_training_split_are_in_the_checkpoint(
    trained: Callable[[str], dict[str, Any]], synthetic_root: Path
) -> None:
    counts = split_grade_counts(synthetic_root)
    adjusted = torch.load(trained("logit_adjusted")["best"], weights_only=True)
    assert adjusted["hyper_parameters"]["grade_counts"] == counts.tolist()
    torch.testing.assert_close(adjusted["state_dict"]["loss.priors"], grade_priors(counts))
    balanced = torch.load(trained("drw")["best"], weights_only=True)
    weights = class_balanced_weights(counts, 0.999)
    torch.testing.assert_close(balanced["state_dict"]["loss.class_weights"], weights)
    assert load_checkpoint(trained("drw")["best"]).model.loss.first_weighted_epoch == 1


def test_the_loss_is_told_each_epoch(trained: Callable[[str], dict[str, Any]]) -> None:
    assert [(epoch, told) for epoch, told, _ in trained("drw")["seen"]] == [(0, 0), (1, 1)]


def test_data_sampler_balanced_trains_on_the_balanced_sampler(
    trained: Callable[[str], dict[str, Any]],
) -> None:
    assert [sampler for *_, sampler in trained("logit_adjusted")["seen"]] == ["BalancedSampler"]
    assert [sampler for *_, sampler in trained("corn")["seen"]] == ["ShuffledSampler"]


def test_a_corn_checkpoint_exports_to_onnx_with_its_probabilities(
    trained: Callable[[str], dict[str, Any]], tmp_path: Path
) -> None:
    best = trained("corn")["best"]
    path = export(best, "onnx", tmp_path / "corn.onnx")
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        expected = load_checkpoint(best).model.deployable()(images).numpy()
    exported = OnnxPredictor(path)(images.numpy())
    assert exported.shape == (5, 6, 4)
    np.testing.assert_allclose(exported, expected, atol=1e-6)
    np.testing.assert_allclose(exported.sum(axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(("head", "loss"), [("corn", "focal"), ("softmax", "corn")])
def test_a_head_the_loss_cannot_train_stops_before_the_data_is_read(
    tmp_path: Path, head: str, loss: str
) -> None:
    from scalp_ml.train import train

    root = tmp_path / "data"  # does not exist: reading it would fail differently
    cfg = compose_train(
        [*FAST, f"data.root={root}", f"run_dir={tmp_path}", f"model.head={head}", f"loss={loss}"]
    )
    with pytest.raises(ValueError, match=rf"model\.head={head} does not fit loss={loss}"):
        train(cfg)


def test_a_loss_with_priors_fitted_without_counts_says_what_is_missing() -> None:
    module = ScalpGrader("test_efficientnet", loss="logit_adjusted")
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    batches = DataLoader([{"image": images[0], "grades": torch.zeros(6, dtype=torch.long)}] * 2)
    trainer = L.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="loss=logit_adjusted needs the training split's grade"):
        trainer.fit(module, train_dataloaders=batches)


def test_the_datamodule_counts_grades_and_draws_balanced_epochs_reproducibly(
    synthetic_root: Path,
) -> None:
    overrides = [f"data.root={synthetic_root}", "data.num_workers=0", "run_dir=/tmp/unused"]
    settings = compose_train([*overrides, "data.sampler=balanced", "data.sampler_alpha=1.0"]).data

    def loader(seed: int) -> DataLoader:
        datamodule = ScalpDataModule(**settings, seed=seed)
        datamodule.prepare_data()
        datamodule.setup("fit")
        return datamodule.train_dataloader()

    datamodule = ScalpDataModule(**settings, seed=5)
    counts = datamodule.train_grade_counts()
    assert counts == split_grade_counts(synthetic_root).tolist()
    sampler = loader(5).sampler
    assert isinstance(sampler, BalancedSampler) and sampler.seed == 5
    grades = datamodule.datasets["train"].grades
    np.testing.assert_allclose(sampler.weights.numpy(), rarity_weights(grades, 1.0))
    assert len(sampler) == len(grades)
    draws = {}
    for seed, epoch in [(5, 3), (5, 3), (5, 4), (6, 3)]:
        fresh = loader(seed).sampler
        fresh.set_epoch(epoch)  # what Lightning does at every epoch start, also after a resume
        draws.setdefault((seed, epoch), []).append(list(fresh))
    assert draws[(5, 3)][0] == draws[(5, 3)][1]
    assert draws[(5, 3)][0] != draws[(5, 4)][0] and draws[(5, 3)][0] != draws[(6, 3)][0]
    shuffled = ScalpDataModule(**{**settings, "sampler": "shuffle"}, seed=5)
    shuffled.setup("fit")
    assert isinstance(shuffled.train_dataloader().sampler, ShuffledSampler)
