"""A search space written in Hydra's override grammar, as Optuna distributions.

``choice(a, b)`` becomes categorical, ``range(start, stop, step)`` of integers an integer
distribution (``stop`` excluded, as in Hydra), ``interval(low, high)`` a float one and
``tag(log, interval(...))`` its log-scale version. Overrides that
are no sweep (``data.root=...``, ``~callbacks.progress_bar``) go to every trial as written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)


@dataclass(frozen=True)
class SearchSpace:
    """The swept keys' distributions and the overrides every trial gets as they are."""

    distributions: dict[str, BaseDistribution]
    fixed: tuple[str, ...]

    def digest(self) -> str:
        """Eight hex digits of the distributions: a changed space gives another digest."""
        space = {key: distribution_to_json(d) for key, d in sorted(self.distributions.items())}
        return hashlib.sha256(json.dumps(space).encode()).hexdigest()[:8]

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's overrides: the fixed ones, then its sampled ``params``."""
        return [*self.fixed, *(f"{key}={value}" for key, value in params.items())]


def parse_space(overrides: Sequence[str]) -> SearchSpace:
    """Splits ``overrides`` into distributions and fixed overrides; a later key wins.

    Raises:
        ValueError: A sweep Optuna cannot sample (a glob, a float ``range``).
    """
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            distributions[key] = to_distribution(override)
        else:
            fixed[key] = str(override.input_line)  # as written: ~key, +key=value, ...
    return SearchSpace(distributions, tuple(fixed.values()))


def to_distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override (see the module's docstring)."""
    sweep = override.value()
    if isinstance(sweep, IntervalSweep):  # Hydra makes both ends floats
        return FloatDistribution(sweep.start, sweep.end, log="log" in sweep.tags)
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if isinstance(sweep, RangeSweep):
        if not values or not all(isinstance(value, int) for value in values):
            raise ValueError(
                f"{override.input_line}: Optuna samples integer ranges only; use "
                "interval(low, high) or choice(...) for floats"
            )
        return IntDistribution(min(values), max(values), step=abs(int(sweep.step)))
    if override.is_choice_sweep():
        return CategoricalDistribution(values)
    raise ValueError(f"{override.input_line}: not a sweep Optuna can sample")
