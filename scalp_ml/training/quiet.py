"""Known noise of the stack, silenced at its source: each filter matches one exact message.

Nothing else is hidden; a new warning of any library still shows.
"""

from __future__ import annotations

import logging
import warnings

# torch deprecated LeafSpec; Lightning's own _pytree helper still checks for it (not our code).
LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# Metrics are logged once per epoch (on_step=False), so a short epoch loses nothing.
LOGGING_INTERVAL = r"The number of training batches \(\d+\) is smaller than the logging interval"
LIGHTNING_TIP = "💡 Tip:"  # Lightning's advertisement for its cloud logger, once per Trainer


class _DropLightningTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_TIP)


def silence_known_noise() -> None:
    """Installs the filters (idempotent: a filter already installed is not added again)."""
    warnings.filterwarnings("ignore", message=LEAFSPEC)
    warnings.filterwarnings("ignore", message=LOGGING_INTERVAL)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLightningTip) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLightningTip())
