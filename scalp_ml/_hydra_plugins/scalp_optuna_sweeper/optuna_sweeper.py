"""Hydra finds this sweeper by scanning ``hydra_plugins``; the work is in :mod:`scalp_ml.search`.

Optuna is imported only when a search starts, never when Hydra scans its plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Runs an Optuna study, one trial per Hydra job (see :mod:`scalp_ml.search.sweeper`).

    Args:
        **settings: ``hydra.sweeper`` without ``_target_`` (sampler and pruner instantiated).
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        """Creates the launcher the trials' jobs run on."""
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: Sequence[str]) -> Any:
        """Runs the search with the command line's overrides; returns the Optuna study."""
        from scalp_ml.search.sweeper import OptunaSearch

        search = OptunaSearch(config=self.config, launcher=self.launcher, **self.settings)
        return search.run(arguments)
