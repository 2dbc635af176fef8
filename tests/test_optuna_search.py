"""Optuna search from Hydra: the search space, the study's name, pruning, failed trials."""

from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from scalp_ml.search.space import parse_space
from scalp_ml.search.sweeper import OptunaSearch
from scalp_ml.search.trial import PruneHopelessTrial
from tests.conftest import CONF_DIR, FAST, compose_train, run_train


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    """The training config's ``hydra`` node, as a multirun composes it."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("train", overrides, return_hydra_config=True).hydra


def test_sweep_overrides_become_optuna_distributions() -> None:
    space = parse_space(
        [
            "optimizer.lr=tag(log, interval(1e-5, 1e-3))",
            "model=choice(tiny, tiny_resnet)",
            "data.batch_size=range(8, 33, 8)",
            "data.root=/data",
            "~callbacks.progress_bar",
            "model=choice(tiny)",  # the command line after the config's params: it wins
        ]
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-5, 1e-3, log=True),
        "data.batch_size": IntDistribution(8, 32, step=8),
        "model": CategoricalDistribution(["tiny"]),
    }
    assert space.fixed == ("data.root=/data", "~callbacks.progress_bar")
    assert space.overrides({"model": "tiny"}) == [*space.fixed, "model=tiny"]
    with pytest.raises(ValueError, match="integer ranges only"):
        parse_space(["loss.gamma=range(0.0, 1.0, 0.5)"])


def test_a_changed_space_gets_another_study_name() -> None:
    wide = ["optimizer.lr=interval(1e-5, 1e-3)", "model=choice(tiny, tiny_resnet)"]
    assert parse_space(wide).digest() == parse_space(wide[::-1]).digest()
    assert parse_space([*wide, "data.root=/elsewhere"]).digest() == parse_space(wide).digest()
    narrowed = [wide[0], "model=choice(tiny)"]  # the old sweeper died on this space
    assert parse_space(narrowed).digest() != parse_space(wide).digest()


def test_the_callback_reports_each_epoch_and_prunes_a_trial_below_the_median() -> None:
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    good = study.ask()
    good.report(0.9, step=0)
    study.tell(good, 0.9)
    callback = PruneHopelessTrial(study.ask(), "val/macro_f1")
    trainer = SimpleNamespace(sanity_checking=True, current_epoch=0, callback_metrics={})
    callback.on_validation_end(trainer, None)  # the sanity check reports nothing
    trainer.sanity_checking, trainer.callback_metrics = False, {"val/macro_f1": 0.2}
    with pytest.raises(optuna.TrialPruned, match=r"val/macro_f1=0\.2000 at epoch 0"):
        callback.on_validation_end(trainer, None)
    assert study.trials[1].intermediate_values == {0: 0.2}


def test_an_interrupted_batch_leaves_no_running_trial(tmp_path: Path) -> None:
    class Interrupted:
        def launch(self, jobs, initial_job_idx):
            raise KeyboardInterrupt

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    search = OptunaSearch(config, Interrupted(), "test", storage, "maximize", n_trials=4, n_jobs=2)
    with pytest.raises(KeyboardInterrupt):
        search.run(["model=choice(tiny, tiny_resnet)"])
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [trial.state for trial in trials] == [TrialState.FAIL, TrialState.FAIL]


@pytest.mark.parametrize("search", ["optuna", "optuna_demo"])
def test_the_searches_store_their_study_in_the_sweep_dir(search: str) -> None:
    sweeper = compose_with_hydra([f"hparams_search={search}", "hydra.sweep.dir=/sweeps/a"]).sweeper
    assert sweeper._target_.startswith("hydra_plugins.scalp_optuna_sweeper.")
    assert sweeper.storage == "sqlite:////sweeps/a/optuna.db" and sweeper.direction == "maximize"
    assert sweeper.pruner._target_ == "optuna.pruners.MedianPruner"


def test_the_demo_search_needs_no_pretrained_weights() -> None:
    params = compose_with_hydra(["hparams_search=optuna_demo"]).sweeper.params
    models = parse_space([f"model={params.model}"]).distributions["model"]
    for model in models.choices:
        cfg = compose_train(["hparams_search=optuna_demo", f"model={model}"])
        assert not cfg.model.pretrained and cfg.trainer.accelerator == "cpu"


@pytest.mark.slow  # 20-60 s on 2 cores (4 training jobs)
def test_a_search_records_failed_and_pruned_trials_and_goes_on(
    synthetic_root: Path, tmp_path: Path
) -> None:
    sweep_dir, name = tmp_path / "search", "scalp_ml_test"
    space = ["optimizer.lr=choice(-1.0,1e-3,2e-3)", "trainer.max_epochs=choice(1,2)"]
    sweep_dir.mkdir()  # the default storage: optuna.db in the sweep directory
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    study = optuna.create_study(
        study_name=f"{name}-{parse_space(space).digest()}", storage=storage, direction="maximize"
    )
    # AdamW refuses a negative rate (FAIL); the 2-epoch trial is pruned at its second epoch.
    for lr, epochs in ((1e-3, 1), (-1.0, 1), (1e-3, 2), (2e-3, 1)):
        study.enqueue_trial({"optimizer.lr": lr, "trainer.max_epochs": epochs})
    result = run_train(
        "-m",
        "hparams_search=optuna",
        *FAST,
        "+trainer.limit_train_batches=2",
        f"data.root={synthetic_root}",
        f"hydra.sweep.dir={sweep_dir}",
        f"hydra.sweeper.study_name={name}",
        "hydra.sweeper.n_trials=4",
        "~hydra.sweeper.params",  # the space: the command line's
        *space,
        # Prunes any trial from its second epoch on: every value is below 1.01.
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "~hydra.sweeper.pruner.n_startup_trials",
        "+hydra.sweeper.pruner.lower=1.01",
        "hydra.sweeper.pruner.n_warmup_steps=1",
    )
    output = result.stdout + result.stderr
    assert "\x1b[" not in output and "alembic" not in output  # no colour codes, no migrations
    assert "Using an existing study" in output  # Optuna's own lines, through Hydra's logger
    trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
    complete, fail, pruned = TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED
    assert [trial.state for trial in trials] == [complete, fail, pruned, complete]
    assert list(trials[2].intermediate_values) == [0, 1]  # reported each epoch, then pruned
    summary = pd.read_csv(sweep_dir / "sweep_summary.csv").sort_values("job")
    assert list(summary["status"]) == ["finished", "failed", "pruned", "finished"]
    table = pd.read_csv(sweep_dir / "optuna_trials.csv")
    assert list(table["state"]) == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"]
    assert [Path(run_dir).name for run_dir in table["user_attrs_run_dir"]] == ["0", "1", "2", "3"]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best = max((trials[0], trials[3]), key=lambda trial: trial.value)
    assert results["best_trial"] == best.number and results["best_value"] == best.value
    finished = summary[summary["status"] == "finished"]  # each value: the run's best val score
    assert sorted(finished["val/macro_f1"]) == pytest.approx(
        sorted([trials[0].value, trials[3].value])
    )
