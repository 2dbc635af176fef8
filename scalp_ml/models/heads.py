"""The six grading heads: 4-way softmax (the study's) or CORN ordinal, and their probabilities.

Whatever the head, :func:`grade_probabilities` turns its raw outputs into grade probabilities
``[B, 6, 4]``, the one contract of everything downstream (metrics, prediction, export).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scalp_ml.labels import NUM_GRADES, NUM_INDICATORS

HEAD_WIDTHS: dict[str, int] = {"softmax": NUM_GRADES, "corn": NUM_GRADES - 1}
"""Outputs per indicator: grade logits (softmax) or K - 1 conditional logits (CORN)."""


def _check_kind(kind: str) -> None:
    if kind not in HEAD_WIDTHS:
        raise ValueError(f"Unknown head '{kind}'; choose one of {', '.join(HEAD_WIDTHS)}")


class GradeHeads(nn.ModuleList):
    """One dropout + linear head per indicator on shared features: ``heads[l]`` is indicator l's.

    Train the ``softmax`` head with any grade-logit loss of :mod:`scalp_ml.models.losses`, the
    ``corn`` head with its ``corn`` loss. Being the list of heads itself, it keeps the
    state-dict keys of the networks written before head kinds existed (``heads.0.1.weight``).

    Args:
        kind: ``softmax`` (4 logits per indicator) or ``corn`` (3 logits per indicator).
        features: Width of the backbone features.
        dropout: Dropout before each head.
    """

    def __init__(self, kind: str, features: int, dropout: float = 0.0) -> None:
        _check_kind(kind)
        super().__init__(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(features, HEAD_WIDTHS[kind]))
            for _ in range(NUM_INDICATORS)
        )
        self.kind = kind

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``[B, 6, 4]`` (softmax) or ``[B, 6, 3]`` (corn) of features ``[B, F]``."""
        return torch.stack([head(features) for head in self], dim=1)


def grade_probabilities(kind: str, outputs: torch.Tensor) -> torch.Tensor:
    """Grade probabilities ``[B, 6, 4]`` from the raw outputs of a ``kind`` head.

    Softmax: the softmax of the logits. CORN: the exceedance probabilities
    ``P(y > k) = prod_{j <= k} sigmoid(outputs_j)``, then ``P(y = k) = P(y > k - 1) - P(y > k)``
    with ``P(y > -1) = 1`` and ``P(y > 3) = 0``. The product is taken as the exponential of a
    cumulative sum of log-sigmoids, which ONNX can express (it has no cumulative product).
    """
    _check_kind(kind)
    if outputs.shape[-1] != HEAD_WIDTHS[kind]:
        raise ValueError(
            f"a '{kind}' head has {HEAD_WIDTHS[kind]} outputs per indicator, "
            f"got outputs of shape {list(outputs.shape)}"
        )
    outputs = outputs.float()
    if kind == "softmax":
        return outputs.softmax(dim=-1)
    exceed = torch.cumsum(F.logsigmoid(outputs), dim=-1).exp()
    ones = torch.ones_like(exceed[..., :1])
    above_previous = torch.cat([ones, exceed], dim=-1)
    above = torch.cat([exceed, torch.zeros_like(ones)], dim=-1)
    return above_previous - above
