"""The six grading heads: 4-way softmax (the study's) or CORN ordinal, and their probabilities.

Whatever the head, :func:`grade_probabilities` turns its raw outputs into grade probabilities
``[B, 6, 4]``, the one contract of everything downstream (metrics, prediction, export).
"""

from __future__ import annotations

import torch
from torch import nn

from scalp_ml.labels import NUM_GRADES, NUM_INDICATORS

HEAD_WIDTHS: dict[str, int] = {"softmax": NUM_GRADES, "corn": NUM_GRADES - 1}
"""Outputs per indicator: grade logits (softmax) or K - 1 conditional logits (CORN)."""


def _check_kind(kind: str) -> None:
    if kind not in HEAD_WIDTHS:
        raise ValueError(f"Unknown head '{kind}'; choose one of {', '.join(HEAD_WIDTHS)}")


class GradeHeads(nn.Module):
    """One dropout + linear head per indicator on shared features.

    Train the ``softmax`` head with any grade-logit loss of :mod:`scalp_ml.models.losses`, the
    ``corn`` head with its ``corn`` loss.

    Args:
        kind: ``softmax`` (4 logits per indicator) or ``corn`` (3 logits per indicator).
        features: Width of the backbone features.
        dropout: Dropout before each head.
    """

    def __init__(self, kind: str, features: int, dropout: float = 0.0) -> None:
        super().__init__()
        _check_kind(kind)
        self.kind = kind
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(features, HEAD_WIDTHS[kind]))
            for _ in range(NUM_INDICATORS)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``[B, 6, 4]`` (softmax) or ``[B, 6, 3]`` (corn) of features ``[B, F]``."""
        return torch.stack([head(features) for head in self.heads], dim=1)


def grade_probabilities(kind: str, outputs: torch.Tensor) -> torch.Tensor:
    """Grade probabilities ``[B, 6, 4]`` from the raw outputs of a ``kind`` head.

    Softmax: the softmax of the logits. CORN: the exceedance probabilities
    ``P(y > k) = prod_{j <= k} sigmoid(outputs_j)``, then ``P(y = k) = P(y > k - 1) - P(y > k)``
    with ``P(y > -1) = 1`` and ``P(y > 3) = 0``.
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
    exceed = torch.cumprod(torch.sigmoid(outputs), dim=-1)
    ones = torch.ones_like(exceed[..., :1])
    above_previous = torch.cat([ones, exceed], dim=-1)
    above = torch.cat([exceed, torch.zeros_like(ones)], dim=-1)
    return above_previous - above
