import numpy as np
import pytest
from sklearn.metrics import f1_score

from scalp_ml.evaluation.offsets import apply_offsets, fit_offsets, macro_f1


def imbalanced(seed: int, count: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """A head biased toward grade 0: rare grades are ranked right but rarely win the argmax."""
    rng = np.random.default_rng(seed)
    grades = rng.choice(4, size=(count, 6), p=[0.85, 0.08, 0.05, 0.02])
    logits = rng.normal(0, 1, (count, 6, 4))
    logits[np.arange(count)[:, None], np.arange(6), grades] += 1.5  # evidence for the truth
    logits[..., 0] += 2.5  # bias toward the common grade
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return probabilities, grades


def test_macro_f1_is_scikit_learns_over_all_four_grades() -> None:
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 3, 50), rng.integers(0, 4, 50)  # grade 3 never true
    expected = f1_score(truth, predicted, average="macro", labels=[0, 1, 2, 3], zero_division=0)
    assert macro_f1(truth, predicted) == pytest.approx(expected)


def test_offsets_raise_validation_macro_f1_and_generalise() -> None:
    validation, fresh = imbalanced(1), imbalanced(2)
    offsets = fit_offsets(*validation, seed=0)
    assert offsets.shape == (6, 4) and np.all(offsets[:, 0] == 0)  # grade 0: the reference

    def score(probabilities: np.ndarray, grades: np.ndarray) -> float:
        predicted = probabilities.argmax(-1)
        return np.mean([macro_f1(grades[:, i], predicted[:, i]) for i in range(6)])

    assert score(apply_offsets(validation[0], offsets), validation[1]) > score(*validation) + 0.05
    assert score(apply_offsets(fresh[0], offsets), fresh[1]) > score(*fresh) + 0.03


def test_offsets_are_seeded_and_shrink_to_zero_without_gain() -> None:
    probabilities, grades = imbalanced(3)
    assert np.array_equal(
        fit_offsets(probabilities, grades, 5), fit_offsets(probabilities, grades, 5)
    )
    perfect = np.eye(4)[grades] * 0.97 + 0.01  # already right: nothing to gain
    assert np.all(fit_offsets(perfect, grades) == 0)


def test_apply_offsets_is_a_softmax_shift() -> None:
    probabilities, _ = imbalanced(4, 20)
    offsets = np.zeros((6, 4))
    np.testing.assert_allclose(apply_offsets(probabilities, offsets), probabilities, atol=1e-9)
    offsets[2, 3] = 1.0
    shifted = apply_offsets(probabilities, offsets)
    np.testing.assert_allclose(shifted.sum(-1), 1, atol=1e-9)
    ratio = shifted[:, 2, 3] / shifted[:, 2, 0] / (probabilities[:, 2, 3] / probabilities[:, 2, 0])
    np.testing.assert_allclose(ratio, np.e, rtol=1e-6)
