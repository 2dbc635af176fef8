"""Known noise of the stack, silenced at its source: each filter matches one exact message.

Nothing else is hidden; a new warning of any library still shows.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# torch deprecated LeafSpec; Lightning's own _pytree helper still checks for it (not our code).
LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# Metrics are logged once per epoch (on_step=False), so a short epoch loses nothing.
LOGGING_INTERVAL = r"The number of training batches \(\d+\) is smaller than the logging interval"
# Lightning cannot see that the training samplers skip what a stopped epoch trained (exact).
MID_EPOCH_RESUME = r"You're resuming from a checkpoint that ended before the epoch ended"
LIGHTNING_TIP = "💡 Tip:"  # Lightning's advertisement for its cloud logger, once per Trainer
# The ONNX exporter's graph optimiser reports each pass at INFO ("Removed 119 unused nodes").
ONNX_OPTIMISER_LOGGERS = ("onnx_ir", "onnxscript")


class _DropLightningTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_TIP)


def silence_known_noise() -> None:
    """Installs the filters (idempotent: a filter already installed is not added again).

    Also routes Lightning's messages through the root logger's handlers alone: Lightning adds
    console handlers of its own, so under Hydra (console and ``<command>.log``) each of its
    lines printed twice, or never reached the log file.
    """
    _route_lightning_through_root()
    warnings.filterwarnings("ignore", message=LEAFSPEC)
    warnings.filterwarnings("ignore", message=LOGGING_INTERVAL)
    warnings.filterwarnings("ignore", message=MID_EPOCH_RESUME)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLightningTip) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLightningTip())


def _route_lightning_through_root() -> None:
    if not logging.getLogger().handlers:  # not under Hydra: Lightning's handlers are the output
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
        logger.propagate = True


@contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Raises the named loggers to WARNING for the block, then restores their levels."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
