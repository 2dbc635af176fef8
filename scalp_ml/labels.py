"""The six scalp indicators and the four severity grades: the one list every module imports."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Indicator:
    """One graded scalp condition.

    Attributes:
        name: English name used in code, configs, metric keys and reports.
        korean: The indicator's name in the AI Hub dataset.
        key: The label key of the AI Hub JSON files (``value_1`` .. ``value_6``).
    """

    name: str
    korean: str
    key: str


INDICATORS: tuple[Indicator, ...] = (
    Indicator("microkeratin", "미세각질", "value_1"),
    Indicator("excess_sebum", "피지과다", "value_2"),
    Indicator("interfollicular_erythema", "모낭사이홍반", "value_3"),
    Indicator("follicular_erythema_pustule", "모낭홍반/농포", "value_4"),
    Indicator("dandruff", "비듬", "value_5"),
    Indicator("hair_loss", "탈모", "value_6"),
)
INDICATOR_NAMES: tuple[str, ...] = tuple(indicator.name for indicator in INDICATORS)

GRADES: tuple[str, ...] = ("good", "mild", "moderate", "severe")
GRADES_KOREAN: tuple[str, ...] = ("양호", "경증", "중등도", "중증")

NUM_INDICATORS = len(INDICATORS)
NUM_GRADES = len(GRADES)
