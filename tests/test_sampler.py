import numpy as np
import pytest
import torch

from scalp_ml.data.sampler import (
    BalancedSampler,
    EpochSampler,
    ShuffledSampler,
    grade_counts,
    rarity_weights,
)

# Six images, six indicators. Grade frequencies per indicator, by column:
# 0: grade 0 x4, grade 1 x2 | 1: grade 2 x5, grade 3 x1 | 2: all grade 0
# 3: grade 0 x3, grade 1 x3 | 4: grade 1 x1, grade 0 x5 | 5: all grade 0
GRADES = np.array(
    [
        [0, 2, 0, 0, 1, 0],
        [0, 2, 0, 0, 0, 0],
        [0, 3, 0, 1, 0, 0],
        [0, 2, 0, 1, 0, 0],
        [1, 2, 0, 1, 0, 0],
        [1, 2, 0, 0, 0, 0],
    ]
)
# Frequency of each image's rarest grade: 1/6, 1/2, 1/6, 1/2, 1/3, 1/3.
MAX_RARITY = np.array([6.0, 2.0, 6.0, 2.0, 3.0, 3.0])

# chi-square with 9 degrees of freedom: P(statistic > 27.88) = 0.001.
CHI2_9_DOF_999 = 27.88


def test_grade_counts_count_each_indicators_grades() -> None:
    expected = [[4, 2, 0, 0], [0, 0, 5, 1], [6, 0, 0, 0], [3, 3, 0, 0], [5, 1, 0, 0], [6, 0, 0, 0]]
    np.testing.assert_array_equal(grade_counts(GRADES), expected)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_rarity_weights_follow_the_formula(alpha: float) -> None:
    np.testing.assert_allclose(rarity_weights(GRADES, alpha), MAX_RARITY**alpha)


def test_alpha_zero_weighs_every_image_equally() -> None:
    np.testing.assert_array_equal(rarity_weights(GRADES, 0.0), np.ones(6))


def test_rarity_weights_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="alpha"):
        rarity_weights(GRADES, -1.0)
    with pytest.raises(ValueError, match=r"\[N > 0, 6\]"):
        rarity_weights(GRADES[:, :5], 0.5)
    with pytest.raises(ValueError, match=r"in 0\.\.3"):
        rarity_weights(GRADES + 1, 0.5)


def test_draws_follow_the_weights() -> None:
    weights = np.arange(1.0, 11.0)
    sampler = BalancedSampler(weights, num_samples=20_000, seed=3)
    observed = np.bincount(list(sampler), minlength=10)
    expected = 20_000 * weights / weights.sum()
    assert ((observed - expected) ** 2 / expected).sum() < CHI2_9_DOF_999
    assert len(sampler) == 20_000


def test_zero_weight_images_are_never_drawn() -> None:
    sampler = BalancedSampler([0.0, 1.0, 0.0, 3.0], num_samples=500)
    assert set(sampler) == {1, 3}


def test_an_epoch_is_reproducible_and_epochs_differ() -> None:
    weights = rarity_weights(GRADES, 0.5)
    first = BalancedSampler(weights, num_samples=200, seed=7)
    first.set_epoch(4)
    resumed = BalancedSampler(weights, num_samples=200, seed=7)  # a new run, resumed at epoch 4
    resumed.set_epoch(4)
    assert list(first) == list(resumed)
    assert list(first) == list(first)
    resumed.set_epoch(5)
    assert list(resumed) != list(first)
    assert list(BalancedSampler(weights, num_samples=200, seed=8)) != list(first)


@pytest.mark.parametrize("num_samples", [200, 201])
def test_ranks_share_one_draw_between_them(num_samples: int) -> None:
    weights = np.linspace(0.1, 2.0, 50)
    ranks = [BalancedSampler(weights, num_samples, num_replicas=2, rank=r, seed=1) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(2)
    shares = [list(sampler) for sampler in ranks]
    assert len(shares[0]) == len(shares[1]) == len(ranks[0]) == 100 + num_samples % 2
    # Interleaved positions rank 0, rank 1, rank 0, ... rebuild the single-process draw.
    single = BalancedSampler(weights, num_samples=len(shares[0]) * 2, seed=1)
    single.set_epoch(2)
    interleaved = [index for pair in zip(*shares, strict=True) for index in pair]
    assert interleaved == list(single)


def test_without_a_process_group_it_is_one_replica_of_rank_zero() -> None:
    sampler = BalancedSampler(np.ones(5))
    assert isinstance(sampler, torch.utils.data.DistributedSampler)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (1, 0, 5)


def test_in_a_process_group_it_takes_the_group_size_and_rank(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 2)
    sampler = BalancedSampler(np.ones(10))
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (3, 2, 4)


def test_bad_weights_and_ranks_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        BalancedSampler([1.0, -1.0])
    with pytest.raises(ValueError, match="all be zero"):
        BalancedSampler([0.0, 0.0])
    with pytest.raises(ValueError, match="num_samples"):
        BalancedSampler([1.0], num_samples=0)
    with pytest.raises(ValueError, match="rank"):
        BalancedSampler([1.0], num_replicas=2, rank=2)


@pytest.mark.parametrize("balanced", [False, True])
def test_a_resumed_epoch_yields_the_rest_of_the_draw_with_the_same_augmentation_seeds(
    balanced: bool,
) -> None:
    def sampler() -> EpochSampler:
        if balanced:
            return BalancedSampler(np.arange(1, 41), seed=5, augment_seeds=True)
        return ShuffledSampler(40, seed=5, augment_seeds=True)

    whole = sampler()
    whole.set_epoch(3)
    draw = list(whole)
    assert all(isinstance(index, int) and isinstance(seed, int) for index, seed in draw)
    assert len({seed for _, seed in draw}) == 40  # one seed per place in the draw
    resumed = sampler()
    resumed.resume(3, 16)
    resumed.set_epoch(3)
    assert list(resumed) == draw[16:]
    resumed.set_epoch(4)  # the next epoch is whole again
    whole.set_epoch(4)
    assert list(resumed) == list(whole) != draw


def test_the_shuffled_order_is_a_seeded_random_samplers_and_shares_it_under_ddp() -> None:
    single = ShuffledSampler(10, seed=2)
    single.set_epoch(1)
    reference = torch.utils.data.RandomSampler(
        range(10), generator=torch.Generator().manual_seed(2 + 1)
    )
    assert list(single) == list(reference)
    ranks = [ShuffledSampler(10, num_replicas=3, rank=rank, seed=2) for rank in range(3)]
    shares = [list(rank) for rank in ranks]
    assert [len(share) for share in shares] == [4, 4, 4]  # padded to equal shares
    assert set().union(*shares) == set(range(10))
