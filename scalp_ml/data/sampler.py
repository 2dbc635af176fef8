"""Balanced training sampler: images drawn with replacement, more often the rarer their grades.

``data.sampler=balanced`` replaces the shuffled training order by :class:`BalancedSampler`
over the weights of :func:`rarity_weights`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from scalp_ml.labels import NUM_GRADES, NUM_INDICATORS


def grade_counts(grades: np.ndarray) -> np.ndarray:
    """Images per indicator and grade ``[6, 4]`` of integer grades ``[N, 6]`` (in 0..3)."""
    return np.stack([np.bincount(column, minlength=NUM_GRADES) for column in np.asarray(grades).T])


def rarity_weights(grades: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Sampling weight of each image from the rarity of its grades.

    The weight of image i is ``max_l (1 / f_l(g_il)) ** alpha``, where ``f_l(k)`` is the
    frequency of grade k of indicator l among these images: an image counts as rare as its
    rarest grade. ``alpha = 0`` weighs all images equally, ``alpha = 1`` fully by rarity.

    Args:
        grades: Integer grades ``[N, 6]`` of the training images.
        alpha: Strength of the re-balancing, >= 0.

    Returns:
        Weights ``[N]`` (float64, not normalised).

    Raises:
        ValueError: Negative ``alpha``, an empty table, or grades outside 0..3.
    """
    if alpha < 0:
        raise ValueError(f"sampler alpha must be >= 0, got {alpha}")
    grades = np.asarray(grades)
    if grades.ndim != 2 or grades.shape[1] != NUM_INDICATORS or len(grades) == 0:
        raise ValueError(f"grades must be [N > 0, {NUM_INDICATORS}], got {list(grades.shape)}")
    if grades.min() < 0 or grades.max() >= NUM_GRADES:
        raise ValueError(
            f"grades must be in 0..{NUM_GRADES - 1}, got {grades.min()}..{grades.max()}"
        )
    frequency = grade_counts(grades) / len(grades)
    rarity = 1 / frequency[np.arange(NUM_INDICATORS), grades]
    return rarity.max(axis=1) ** alpha


class BalancedSampler(DistributedSampler):
    """Draws ``num_samples`` image indices per epoch with replacement, proportionally to weights.

    Every rank makes the same draw, from a generator seeded with ``seed + epoch``, and keeps its
    own interleaved share ``draw[rank::num_replicas]``; the draw is rounded up to a multiple of
    the number of replicas so that all shares are equally long. Being a ``DistributedSampler``,
    Lightning neither replaces nor wraps it under DDP, and calls :meth:`set_epoch` each epoch:
    epochs differ, and a resumed run draws exactly what the uninterrupted one drew.

    Args:
        weights: Non-negative weight per image ``[N]``, e.g. :func:`rarity_weights`.
        num_samples: Draws per epoch over all ranks; default ``N``.
        num_replicas: Number of processes; default the process group's size, or 1 without one.
        rank: This process's rank; default the process group's, or 0 without one.
        seed: Base seed, the same on every rank.

    Raises:
        ValueError: Weights not finite and >= 0 with a positive sum, ``num_samples < 1``, or a
            rank outside ``0..num_replicas - 1``.
    """

    def __init__(
        self,
        weights: np.ndarray | torch.Tensor,
        num_samples: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        self.weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if not (torch.isfinite(self.weights).all() and (self.weights >= 0).all()):
            raise ValueError("sampler weights must be finite and >= 0")
        if self.weights.sum() <= 0:
            raise ValueError("sampler weights must not all be zero")
        super().__init__(self.weights, num_replicas=num_replicas, rank=rank, seed=seed)
        draws = len(self.weights) if num_samples is None else num_samples
        if draws < 1:
            raise ValueError(f"sampler num_samples must be >= 1, got {draws}")
        self.num_samples = math.ceil(draws / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(
            self.weights, self.total_size, replacement=True, generator=generator
        )
        return iter(draw[self.rank :: self.num_replicas].tolist())
