"""Focal loss over the six softmax heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Multi-class focal loss, ``-(1 - p_t)^gamma * log(p_t)``, averaged over images and heads.

    With ``gamma = 0`` it is the cross-entropy.

    Args:
        gamma: Focusing parameter; the study uses 2.0.
    """

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, grades: torch.Tensor) -> torch.Tensor:
        """Mean loss of ``logits [B, L, K]`` against integer ``grades [B, L]``."""
        log_p = F.log_softmax(logits.float(), dim=-1)
        log_p_true = log_p.gather(-1, grades.unsqueeze(-1)).squeeze(-1)
        return (-((1 - log_p_true.exp()) ** self.gamma) * log_p_true).mean()
