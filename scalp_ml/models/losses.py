"""Losses of the six grading heads, and the imbalance-aware variants chosen by name.

Every loss takes head outputs ``[B, 6, W]`` (cast to float) and integer grades ``[B, 6]`` and
returns one scalar, the mean over images and heads. ``W`` is 4 grade logits for the softmax
head and 3 conditional logits for the CORN head (:mod:`scalp_ml.models.heads`).

Grade counts ``[6, 4]`` of the training split set the priors and class weights. A grade with no
training image is handled explicitly: its prior is computed as if it had one image (a finite
log-prior), and its class-balanced weight is 0 (it is never a training target).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from coral_pytorch.losses import corn_loss
from torch import nn

from scalp_ml.labels import INDICATOR_NAMES, NUM_GRADES, NUM_INDICATORS

LOSS_NAMES = ("focal", "ce", "logit_adjusted", "balanced_softmax", "class_balanced_focal", "corn")
COUNTED_LOSSES = ("logit_adjusted", "balanced_softmax", "class_balanced_focal")
"""The losses whose priors or class weights come from the training split's grade counts."""


def _check_outputs(outputs: torch.Tensor, grades: torch.Tensor, width: int) -> None:
    if grades.ndim != 2 or outputs.shape != (*grades.shape, width):
        raise ValueError(
            f"expected outputs [B, L, {width}] and grades [B, L], got {list(outputs.shape)} and "
            f"{list(grades.shape)}; the softmax head ({NUM_GRADES} outputs) goes with every loss "
            f"but 'corn', the CORN head ({NUM_GRADES - 1} outputs) with 'corn' only"
        )


def _focal_terms(logits: torch.Tensor, grades: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per image and head ``-(1 - p_t)^gamma * log(p_t)``, shape ``[B, 6]``."""
    _check_outputs(logits, grades, NUM_GRADES)
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_p_true = log_p.gather(-1, grades.unsqueeze(-1)).squeeze(-1)
    return -((1 - log_p_true.exp()) ** gamma) * log_p_true


def _checked_counts(grade_counts: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Grade counts as a float64 tensor ``[6, 4]``, refusing negative or empty rows."""
    counts = torch.as_tensor(grade_counts, dtype=torch.float64)
    if counts.shape != (NUM_INDICATORS, NUM_GRADES):
        raise ValueError(
            f"grade_counts must be [{NUM_INDICATORS}, {NUM_GRADES}] (indicator, grade), "
            f"got {list(counts.shape)}"
        )
    if (counts < 0).any() or not torch.isfinite(counts).all():
        raise ValueError(f"grade_counts must be finite and >= 0, got {counts.tolist()}")
    empty = [name for name, row in zip(INDICATOR_NAMES, counts, strict=True) if row.sum() == 0]
    if empty:
        raise ValueError(f"grade_counts are all zero for {empty}: no training images?")
    return counts


def grade_priors(grade_counts: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-indicator grade frequencies ``[6, 4]``, each row summing to 1.

    Counts are floored at 1 first, so a grade absent from training has a small positive prior
    and a finite log-prior.
    """
    counts = _checked_counts(grade_counts).clamp(min=1)
    return (counts / counts.sum(dim=1, keepdim=True)).float()


def class_balanced_weights(grade_counts: np.ndarray | torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights ``(1 - beta) / (1 - beta ** n)`` of Cui et al. (2019), ``[6, 4]``.

    Each indicator's weights are scaled to sum to the number of grades (4). A grade with no
    training image gets weight 0; ``beta = 0`` weighs all grades that have images equally.

    Raises:
        ValueError: ``beta`` outside ``[0, 1)``, or invalid counts.
    """
    if not 0 <= beta < 1:
        raise ValueError(f"class-balanced beta must be in [0, 1), got {beta}")
    counts = _checked_counts(grade_counts)
    present = counts > 0
    effective = torch.where(present, 1 - beta**counts, torch.ones_like(counts))
    weights = torch.where(present, (1 - beta) / effective, torch.zeros_like(counts))
    return (weights * NUM_GRADES / weights.sum(dim=1, keepdim=True)).float()


class GradeLoss(nn.Module):
    """Base of every loss here: it knows the training epoch, for epoch schedules such as DRW.

    The training loop calls ``loss.set_epoch(epoch)`` at the start of every training epoch
    (also after a resume); losses without a schedule ignore it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the current training epoch (0-based)."""
        self.epoch = epoch


class FocalLoss(GradeLoss):
    """Multi-class focal loss, ``-(1 - p_t)^gamma * log(p_t)``, averaged over images and heads.

    With ``gamma = 0`` it is the cross-entropy. With ``class_weights`` each (image, head) term
    is multiplied by the weight of its true grade before the mean (class-balanced focal loss);
    with ``drw_epoch`` too, the weights apply only from that epoch on (deferred re-weighting,
    Cao et al. 2019), told through :meth:`~GradeLoss.set_epoch`.

    Args:
        gamma: Focusing parameter; the study uses 2.0.
        class_weights: Per indicator and grade weights ``[6, 4]``, saved in the state dict.
        drw_epoch: First epoch (0-based) that uses ``class_weights``; ``None``: all epochs.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        class_weights: torch.Tensor | None = None,
        drw_epoch: int | None = None,
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
        if drw_epoch is not None and (class_weights is None or drw_epoch < 0):
            raise ValueError(
                f"drw_epoch={drw_epoch} needs class weights and must be >= 0 "
                "(deferred re-weighting goes with loss 'class_balanced_focal')"
            )
        self.gamma = gamma
        self.first_weighted_epoch = drw_epoch or 0
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, grades: torch.Tensor) -> torch.Tensor:
        """Mean loss of ``logits [B, 6, 4]`` against integer ``grades [B, 6]``."""
        terms = _focal_terms(logits, grades, self.gamma)
        if self.class_weights is not None and self.epoch >= self.first_weighted_epoch:
            heads = torch.arange(NUM_INDICATORS, device=grades.device)
            terms = terms * self.class_weights[heads, grades]
        return terms.mean()


class LogitAdjustedLoss(GradeLoss):
    """Cross-entropy on ``logits + tau * log(prior)`` (Menon et al., ICLR 2021).

    With ``tau = 1`` it is the balanced softmax loss (Ren et al., NeurIPS 2020). The priors are
    a buffer, saved in the state dict; predict with the raw logits.

    Args:
        priors: Per-indicator grade priors ``[6, 4]``, e.g. :func:`grade_priors`.
        tau: Scale of the adjustment.
    """

    def __init__(self, priors: torch.Tensor, tau: float = 1.0) -> None:
        super().__init__()
        if priors.shape != (NUM_INDICATORS, NUM_GRADES) or not (priors > 0).all():
            raise ValueError(f"priors must be [6, 4] and > 0, got {priors.tolist()}")
        self.tau = tau
        self.priors: torch.Tensor
        self.register_buffer("priors", priors.float())

    def forward(self, logits: torch.Tensor, grades: torch.Tensor) -> torch.Tensor:
        """Mean loss of ``logits [B, 6, 4]`` against integer ``grades [B, 6]``."""
        shifted = logits.float() + self.tau * self.priors.log()
        return _focal_terms(shifted, grades, gamma=0.0).mean()


class CornLoss(GradeLoss):
    """CORN loss of the ordinal head (Shi et al. 2023), the mean of its value over the six heads.

    Per head it is ``coral_pytorch.losses.corn_loss``: the binary cross-entropy of the three
    conditional tasks P(y > k | y > k - 1), averaged over all (image, task) pairs that enter a
    task (an image of grade g enters tasks 0..min(g, 2)), not over images.
    """

    def forward(self, outputs: torch.Tensor, grades: torch.Tensor) -> torch.Tensor:
        """Mean loss of CORN outputs ``[B, 6, 3]`` against integer ``grades [B, 6]``."""
        _check_outputs(outputs, grades, NUM_GRADES - 1)
        outputs = outputs.float()
        per_head = [
            corn_loss(outputs[:, head], grades[:, head], num_classes=NUM_GRADES)
            for head in range(NUM_INDICATORS)
        ]
        return torch.stack(per_head).mean()


def check_head(loss: str, head: str) -> None:
    """Refuses a head kind that the loss cannot train.

    Raises:
        ValueError: Naming ``model.head`` and ``loss``: the ``corn`` head trains with the
            ``corn`` loss only, the ``softmax`` head with every other loss.
    """
    if (head == "corn") != (loss == "corn"):
        raise ValueError(
            f"model.head={head} does not fit loss={loss}: the corn head trains with loss=corn "
            "only, the softmax head with any other loss (set both, e.g. model.head=corn "
            "loss=corn)"
        )


def build_loss(
    name: str,
    grade_counts: np.ndarray | torch.Tensor | None = None,
    gamma: float = 2.0,
    tau: float = 1.0,
    beta: float = 0.999,
    drw_epoch: int | None = None,
) -> GradeLoss:
    """The loss called ``name``, set up from the training split's grade counts.

    Names: ``focal`` (the study's, uses ``gamma``), ``ce``, ``logit_adjusted`` (uses ``tau``),
    ``balanced_softmax``, ``class_balanced_focal`` (uses ``gamma``, ``beta`` and optionally
    ``drw_epoch``), ``corn`` (for the CORN head). Parameters a loss does not use are ignored,
    except ``drw_epoch``, which only ``class_balanced_focal`` accepts.

    Args:
        name: One of :data:`LOSS_NAMES`.
        grade_counts: Images per indicator and grade ``[6, 4]`` in the training split; needed
            by the losses of :data:`COUNTED_LOSSES`, checked whenever given.
        gamma: Focal focusing parameter.
        tau: Logit adjustment scale.
        beta: Class-balanced ``beta`` in ``[0, 1)``.
        drw_epoch: Deferred re-weighting: first epoch with class weights; the caller must then
            call ``loss.set_epoch(epoch)`` at the start of every training epoch.

    Raises:
        ValueError: Unknown name, missing or invalid counts, invalid parameters.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"Unknown loss '{name}'; choose one of {', '.join(LOSS_NAMES)}")
    if drw_epoch is not None and name != "class_balanced_focal":
        raise ValueError(f"drw_epoch applies to loss 'class_balanced_focal' only, not '{name}'")
    if grade_counts is None and name in COUNTED_LOSSES:
        raise ValueError(f"loss '{name}' needs the training split's grade counts [6, 4]")
    counts = None if grade_counts is None else _checked_counts(grade_counts)
    if name == "focal":
        return FocalLoss(gamma)
    if name == "ce":
        return FocalLoss(gamma=0.0)
    if name == "corn":
        return CornLoss()
    if name == "logit_adjusted":
        return LogitAdjustedLoss(grade_priors(counts), tau)
    if name == "balanced_softmax":
        return LogitAdjustedLoss(grade_priors(counts), tau=1.0)
    return FocalLoss(gamma, class_balanced_weights(counts, beta), drw_epoch)
