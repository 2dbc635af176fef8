"""Training order: the study's shuffling, or images drawn more often the rarer their grades.

Both samplers draw epoch e from ``seed + e`` alone (:class:`EpochSampler`): a resumed run draws
what the uninterrupted one drew, and a run stopped mid-epoch skips the images it already
trained on. ``data.sampler=shuffle`` is :class:`ShuffledSampler`; ``data.sampler=balanced`` is
:class:`BalancedSampler` over the weights of :func:`rarity_weights`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
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


class EpochSampler(DistributedSampler, ABC):
    """Draws each epoch from ``seed + epoch``; a draw can be resumed part-way.

    Every rank makes the same draw (:meth:`draw`, ``total_size`` indices) and keeps its own
    interleaved share ``draw[rank::num_replicas]``. Being a ``DistributedSampler``, Lightning
    neither replaces nor wraps it under DDP, and calls :meth:`set_epoch` each epoch.

    With ``augment_seeds`` each index comes with a seed for that sample's augmentation, drawn
    after the indices from the same generator: ``(index, seed)``. An image's augmentation then
    depends on the seed, the epoch and its place in the draw only, not on which loader process
    prepares it or what it prepared before, so a resumed epoch repeats it exactly.

    Args:
        size: Number of images.
        num_replicas: Number of processes; default the process group's size, or 1 without one.
        rank: This process's rank; default the process group's, or 0 without one.
        seed: Base seed, the same on every rank.
        augment_seeds: Yield ``(index, augmentation seed)`` pairs instead of indices.
    """

    def __init__(
        self,
        size: int,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
        augment_seeds: bool = False,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, seed=seed)
        self.augment_seeds = augment_seeds
        self.resume_at: tuple[int, int] | None = None

    @abstractmethod
    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """The epoch's ``total_size`` indices for all ranks, from ``generator``."""

    def resume(self, epoch: int, done: int) -> None:
        """Skips the first ``done`` samples of this rank's share when it draws ``epoch``."""
        self.resume_at = (epoch, done)

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        share = slice(self.rank, None, self.num_replicas)
        indices = self.draw(generator)[share].tolist()
        if self.augment_seeds:
            seeds = torch.randint(2**31, (self.total_size,), generator=generator)[share]
            indices = list(zip(indices, seeds.tolist(), strict=True))
        epoch, done = self.resume_at or (None, 0)
        return iter(indices[done:] if epoch == self.epoch else indices)


class ShuffledSampler(EpochSampler):
    """Every image once per epoch in a random order (padded to equal shares under DDP).

    With one process its order is ``torch.randperm`` of a generator seeded ``seed + epoch``:
    the order of a ``RandomSampler`` with that generator.
    """

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """A permutation of the images, its start repeated to fill ``total_size``."""
        order = torch.randperm(len(self.dataset), generator=generator)
        repeats = math.ceil(self.total_size / len(order))
        return order.repeat(repeats)[: self.total_size]


class BalancedSampler(EpochSampler):
    """Draws ``num_samples`` image indices per epoch with replacement, proportionally to weights.

    The draw is rounded up to a multiple of the number of replicas so that all shares are
    equally long (see :class:`EpochSampler` for the epochs, the shares and the resume).

    Args:
        weights: Non-negative weight per image ``[N]``, e.g. :func:`rarity_weights`.
        num_samples: Draws per epoch over all ranks; default ``N``.
        num_replicas: Number of processes; default the process group's size, or 1 without one.
        rank: This process's rank; default the process group's, or 0 without one.
        seed: Base seed, the same on every rank.
        augment_seeds: Yield ``(index, augmentation seed)`` pairs instead of indices.

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
        augment_seeds: bool = False,
    ) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if not (torch.isfinite(self.weights).all() and (self.weights >= 0).all()):
            raise ValueError("sampler weights must be finite and >= 0")
        if self.weights.sum() <= 0:
            raise ValueError("sampler weights must not all be zero")
        super().__init__(len(self.weights), num_replicas, rank, seed, augment_seeds)
        draws = len(self.weights) if num_samples is None else num_samples
        if draws < 1:
            raise ValueError(f"sampler num_samples must be >= 1, got {draws}")
        self.num_samples = math.ceil(draws / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """``total_size`` indices drawn with replacement, proportionally to the weights."""
        return torch.multinomial(
            self.weights, self.total_size, replacement=True, generator=generator
        )
