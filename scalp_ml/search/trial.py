"""A job's Optuna trial: handed over by the sweeper, pruned by a Lightning callback.

The sweeper sets three environment variables for each job (``hydra.job.env_set``: the storage,
the study and the trial's id); :func:`pruning_callbacks` finds the trial with them, and
:class:`PruneHopelessTrial` reports the monitored metric after each validation epoch and
stops the job with :class:`optuna.TrialPruned` when the study's pruner says so.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import lightning as L
from lightning.pytorch.callbacks import Callback

from scalp_ml.extras import require

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

STORAGE_ENV = "SCALP_OPTUNA_STORAGE"
STUDY_ENV = "SCALP_OPTUNA_STUDY"
TRIAL_ENV = "SCALP_OPTUNA_TRIAL_ID"


def trial_overrides(storage: str, study_name: str, trial_id: int) -> list[str]:
    """Hydra overrides that set the trial's environment variables for its job only."""
    env = {STORAGE_ENV: storage, STUDY_ENV: study_name, TRIAL_ENV: str(trial_id)}
    return [f"++hydra.job.env_set.{key}='{value}'" for key, value in env.items()]


def pruning_callbacks(metric: str) -> list[Callback]:
    """The pruning callback of the job's trial; none outside an Optuna search."""
    if TRIAL_ENV not in os.environ:
        return []
    optuna = require("optuna", "search", "An Optuna trial's pruning callback")
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    pruner = instantiate(HydraConfig.get().sweeper.pruner) or optuna.pruners.NopPruner()
    study = optuna.load_study(
        study_name=os.environ[STUDY_ENV], storage=os.environ[STORAGE_ENV], pruner=pruner
    )
    return [PruneHopelessTrial(optuna.Trial(study, int(os.environ[TRIAL_ENV])), metric)]


class PruneHopelessTrial(Callback):
    """Reports ``metric`` to the trial after each validation epoch; stops a hopeless trial.

    Args:
        trial: The job's running trial.
        metric: The logged metric the study optimises (``val/macro_f1``).
    """

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reports the epoch's value; raises :class:`optuna.TrialPruned` to stop the fit."""
        import optuna

        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            log.info("Trial %d pruned at epoch %d", self.trial.number, epoch)
            raise optuna.TrialPruned(
                f"{self.metric}={float(value):.4f} at epoch {epoch}: pruned by the study's pruner"
            )
