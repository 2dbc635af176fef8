"""Progress that reads well in a terminal and in a cluster's log file.

In a terminal, a rich progress bar. Outside one (SLURM logs, ``nohup``, pipes) a bar would print
nothing until it ends, or a line per redraw; there a log line every :data:`EVERY_SECONDS` says
how far the work is, and one more when it is done. Imports neither torch nor Lightning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import rich
from rich.progress import track

log = logging.getLogger(__name__)

T = TypeVar("T")
EVERY_SECONDS = 30.0  # between two progress lines outside a terminal


def in_terminal() -> bool:
    """Whether output goes to a terminal (rich's judgement: ``TTY_COMPATIBLE`` etc. apply)."""
    return rich.get_console().is_terminal


def progress(
    items: Iterable[T], description: str, total: int | None = None, transient: bool = False
) -> Iterator[T]:
    """``items``, with a progress bar in a terminal and progress lines outside one.

    Args:
        items: What to go through.
        description: What is being done, e.g. "Decoding 2,000 images once".
        total: How many items there are; default ``len(items)``.
        transient: Remove the bar once done (terminal only).
    """
    if in_terminal():
        yield from track(items, description=description, total=total, transient=transient)
        return
    total = len(items) if total is None else total  # type: ignore[arg-type]
    start = last = time.monotonic()
    done = 0
    for done, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= EVERY_SECONDS and done < total:
            log.info("%s: %d/%d (%.0f%%)", description, done, total, 100 * done / max(total, 1))
            last = now
    log.info("%s: %d/%d done in %.1f s", description, done, total, time.monotonic() - start)
