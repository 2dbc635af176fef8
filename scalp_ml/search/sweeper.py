"""The Optuna search loop behind ``hydra/sweeper=optuna`` (``hydra_plugins.scalp_optuna_sweeper``).

Ask and tell: each batch of ``n_jobs`` trials is sampled from the study, launched as Hydra jobs
(one trial per job, any launcher) and told its outcome: COMPLETE with the job's returned
metric, PRUNED when the job's :class:`~scalp_ml.search.trial.PruneHopelessTrial` stopped it,
FAIL when it raised; a failed trial never stops the study, and an interrupted batch is told
FAIL, never left RUNNING. The study's name is ``<study_name>-<digest of the search space>``:
a changed space starts its own study in the same storage. After each batch the study's
trials go to ``<sweep dir>/optuna_trials.csv``; at the end the best trial to
``optimization_results.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from scalp_ml.atomic import atomic_write_text
from scalp_ml.search.space import SearchSpace, parse_space
from scalp_ml.search.trial import trial_overrides

log = logging.getLogger(__name__)

TRIALS_FILE = "optuna_trials.csv"
RESULTS_FILE = "optimization_results.yaml"


@dataclass
class OptunaSearch:
    """One ``-m hparams_search=...`` run: the sweeper's settings and Hydra's launcher.

    Args:
        config: The composed config (with ``hydra``), for the sweep directory.
        launcher: Launches a batch of jobs.
        study_name: The study's name, before the search space's digest.
        storage: An Optuna storage URL (``sqlite:///<file>``, ``postgresql://...``).
        direction: ``maximize`` or ``minimize``.
        n_trials: Trials this run adds to the study.
        n_jobs: Trials launched together (one batch).
        sampler: The study's sampler (``None``: Optuna's default, TPE).
        pruner: The study's pruner (``None``: no pruning).
        params: The search space, ``key: <override value>`` (the command line's sweeps win).
    """

    config: DictConfig
    launcher: Launcher
    study_name: str
    storage: str
    direction: str
    n_trials: int
    n_jobs: int = 1
    sampler: optuna.samplers.BaseSampler | None = None
    pruner: optuna.pruners.BasePruner | None = None
    params: DictConfig | None = None

    def run(self, arguments: Sequence[str]) -> optuna.Study:
        """Runs ``n_trials`` trials with the command line's ``arguments``; returns the study.

        Raises:
            RuntimeError: No trial of the study has completed (every one failed or was pruned).
        """
        _log_through_hydra()
        params = [f"{key}={value}" for key, value in (self.params or {}).items()]
        space = parse_space([*params, *arguments])
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)  # the default SQLite file lives there
        study = optuna.create_study(
            study_name=f"{self.study_name}-{space.digest()}",
            storage=self.storage,
            sampler=self.sampler,
            pruner=self.pruner or optuna.pruners.NopPruner(),
            direction=self.direction,
            load_if_exists=True,
        )
        log.info("Study %s in %s: %s", study.study_name, self.storage, sorted(space.distributions))
        for first in range(0, self.n_trials, self.n_jobs):
            batch = [
                study.ask(space.distributions)
                for _ in range(min(self.n_jobs, self.n_trials - first))
            ]
            for trial, job in zip(batch, self._launch(study, batch, space, first), strict=True):
                tell(study, trial, job)
            atomic_write_text(sweep_dir / TRIALS_FILE, study.trials_dataframe().to_csv(index=False))
        return self._report(study, sweep_dir)

    def _launch(
        self, study: optuna.Study, batch: list[optuna.Trial], space: SearchSpace, first: int
    ) -> Sequence[JobReturn]:
        """Launches one job per trial; an interrupted launch tells the whole batch FAIL."""
        jobs = [
            [
                *space.overrides(trial.params),
                *trial_overrides(self.storage, study.study_name, trial._trial_id),
            ]
            for trial in batch
        ]
        try:
            return self.launcher.launch(jobs, initial_job_idx=first)
        except BaseException:
            for trial in batch:
                study.tell(trial, state=TrialState.FAIL)
            raise

    def _report(self, study: optuna.Study, sweep_dir: Path) -> optuna.Study:
        """Writes the best trial's parameters and value; refuses a study with none completed."""
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise RuntimeError(
                f"No trial of study {study.study_name} completed: see each trial's error in "
                f"{sweep_dir / 'sweep_summary.csv'} and the jobs' logs"
            )
        best = study.best_trial
        results = {
            "name": "optuna",
            "study_name": study.study_name,
            "storage": self.storage,
            "best_trial": best.number,
            "best_params": best.params,
            "best_value": best.value,
            "best_run_dir": best.user_attrs.get("run_dir"),
        }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
        log.info("Best trial %d: value %s, parameters %s", best.number, best.value, best.params)
        return study


def _log_through_hydra() -> None:
    """Optuna's lines through Hydra's handlers (no colour codes in log files), no alembic.

    Optuna's own handler colours its lines, escape codes and all, also in a log file; the
    storage's schema migration (alembic) reports each step at INFO.
    """
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    logging.getLogger("alembic").setLevel(logging.WARNING)


def tell(study: optuna.Study, trial: optuna.Trial, job: JobReturn) -> None:
    """Tells the study a job's outcome: COMPLETE with its metric, PRUNED or FAIL."""
    if job.hydra_cfg is not None:  # the job's run directory, for the trials table
        trial.set_user_attr("run_dir", job.hydra_cfg.hydra.runtime.output_dir)
    try:
        value = job.return_value  # re-raises the job's exception
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    except Exception as error:  # any exception a job can raise
        log.warning("Trial %d failed: %s: %s", trial.number, type(error).__name__, error)
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, value)
