"""Experiment loggers: the CSV log that survives a resume, and W&B online/offline set-up."""

from __future__ import annotations

import csv
import io
import logging
import netrc
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig

from scalp_ml.atomic import atomic_write_text

log = logging.getLogger(__name__)


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, continuing an existing ``metrics.csv`` and writing it atomically.

    Each save rewrites the whole (small) file through a temporary file beside it, so a full disk
    never leaves half a row; rows that could not be written stay pending for the next save.
    """

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._rows = self._read_rows()
        if self._rows:  # new columns are added to the old header
            self.metrics_keys = sorted(set().union(*self._rows))

    def _check_log_dir_exists(self) -> None:
        """Keeps the file: a resumed run appends its epochs to the interrupted run's."""

    def _read_rows(self) -> list[dict[str, str]]:
        if not os.path.isfile(self.metrics_file_path):
            return []
        with open(self.metrics_file_path, newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
        whole = [row for row in rows if None not in row and None not in row.values()]
        if len(whole) < len(rows):
            log.warning(
                "%s: left out %d damaged rows (cut short by an older version on a full disk)",
                self.metrics_file_path,
                len(rows) - len(whole),
            )
        return whole

    def save(self) -> None:
        """Writes the earlier and the pending rows; on a failed write, keeps them pending."""
        if not self.metrics:
            return
        self._record_new_keys()
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows([*self._rows, *self.metrics])
        try:
            atomic_write_text(self.metrics_file_path, text.getvalue())
        except OSError as error:
            log.warning("%s; its %d new rows wait for the next save", error, len(self.metrics))
            return
        self._rows += self.metrics
        self.metrics = []


class ResumableCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` that appends to an existing ``metrics.csv``.

    Lightning's own logger deletes the file when the log folder is reused, so a run resumed in
    its run directory would lose the epochs trained before the interruption.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The CSV writer (created on first use)."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        """Writes the pending rows, so the log holds every epoch that a checkpoint holds."""
        self.save()


class EpochWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` whose metrics are drawn per epoch.

    Each scalar key of a row that carries ``epoch`` (every metric this project logs is per
    epoch) is declared once with ``define_metric``: ``epoch`` as its x-axis, the ``monitor``
    metric's summary as its best value (``max`` or ``min``, after ``monitor_mode``), and the
    per-grade scores (``val/f1/<indicator>/<grade>``, ...) hidden from the automatic panels.

    Args:
        monitor: The metric that checkpointing and early stopping follow (``val/macro_f1``).
        monitor_mode: ``max`` or ``min``: which of its values is the best.
        **kwargs: ``WandbLogger``'s arguments.
    """

    def __init__(
        self, monitor: str | None = None, monitor_mode: str = "max", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._monitor = monitor
        self._monitor_mode = monitor_mode
        self._defined: set[str] = set()

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Declares the row's new per-epoch scalar keys, then logs the row."""
        if "epoch" in metrics:
            for key, value in metrics.items():
                if key not in self._defined and key != "epoch" and isinstance(value, int | float):
                    self._define(key)
        super().log_metrics(metrics, step)

    def _define(self, key: str) -> None:
        summary = self._monitor_mode if key == self._monitor else None
        hidden = key.count("/") >= 3  # <split>/<score>/<indicator>/<grade>
        self.experiment.define_metric(key, step_metric="epoch", summary=summary, hidden=hidden)
        self._defined.add(key)


def wandb_api_key_configured() -> bool:
    """Whether W&B can authenticate: ``WANDB_API_KEY`` or a ``wandb login`` entry in netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host or "") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_settings(spec: DictConfig, sweep_group: str | None) -> dict[str, Any]:
    """``offline`` and ``group`` of a ``WandbLogger`` config, with their defaults filled in.

    ``offline: null`` means offline unless ``WANDB_MODE`` says otherwise or an API key is
    configured; ``group: null`` groups the jobs of one sweep under ``sweep_group``.
    """
    offline = spec.get("offline")
    if offline is None:
        mode = os.environ.get("WANDB_MODE")
        offline = mode in ("offline", "dryrun") if mode else not wandb_api_key_configured()
        if offline:
            log.info(
                "W&B logs offline (%s) into %s/wandb; upload later with `wandb sync`",
                f"WANDB_MODE={mode}" if mode else "no API key configured",
                spec.get("save_dir"),
            )
    return {"offline": offline, "group": spec.get("group") or sweep_group}


def build_loggers(specs: DictConfig | None, sweep_group: str | None = None) -> list[Logger]:
    """Instantiates the ``logger`` config group (W&B with :func:`wandb_settings`)."""
    loggers = []
    for spec in (specs or {}).values():
        is_wandb = issubclass(get_class(spec._target_), WandbLogger)
        loggers.append(instantiate(spec, **(wandb_settings(spec, sweep_group) if is_wandb else {})))
    return loggers


def finish_wandb(loggers: list[Logger]) -> None:
    """Finishes the W&B runs of ``loggers`` and waits until their files are written.

    ``run.finish()`` returns before W&B's background process has flushed an offline run's
    records; ``wandb.teardown()`` waits for it. A sweep's next job then starts its own run.
    """
    started = [
        logger._experiment  # None until the run starts
        for logger in loggers
        if isinstance(logger, WandbLogger) and logger._experiment is not None
    ]
    for run in started:
        run.finish()
    if started:
        import wandb

        wandb.teardown()
