import warnings

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

from scalp_ml.evaluation.bootstrap import (
    DIFFERENCE_KEYS,
    bootstrap_intervals,
    metrics_from_confusions,
    paired_difference,
    session_confusions,
)
from scalp_ml.labels import INDICATOR_NAMES
from tests.sessions import simulate_sessions

LABELS = [0, 1, 2, 3]


def sklearn_kappa(truth: np.ndarray, predicted: np.ndarray) -> float:
    with warnings.catch_warnings():  # scikit-learn warns where kappa is undefined (NaN)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return cohen_kappa_score(truth, predicted, weights="quadratic", labels=LABELS)


def image_sessions(count: int) -> np.ndarray:
    """Every image its own session: the image bootstrap."""
    return np.arange(count).astype(str)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_from_confusions_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grades, predicted = rng.integers(0, 4, (80, 6)), rng.integers(0, 4, (80, 6))
    grades[:, 0] = np.minimum(grades[:, 0], 2)  # grade 3 absent from truth ...
    predicted[:, 0] = np.minimum(predicted[:, 0], 2)  # ... and predictions: F1 counts as 0
    grades[:, 3], predicted[:, 3] = 1, 1  # one grade only: kappa undefined
    sessions = rng.integers(0, 15, 80).astype(str)

    counts = session_confusions(sessions, grades, predicted)
    assert counts.shape == (len(np.unique(sessions)), 6, 4, 4)
    results = metrics_from_confusions(counts.sum(axis=0))

    f1 = [
        f1_score(grades[:, i], predicted[:, i], labels=LABELS, average="macro", zero_division=0)
        for i in range(6)
    ]
    kappa = [sklearn_kappa(grades[:, i], predicted[:, i]) for i in range(6)]
    for index, name in enumerate(INDICATOR_NAMES):
        assert results[f"macro_f1/{name}"] == pytest.approx(f1[index], abs=1e-12)
        assert results[f"qwk/{name}"] == pytest.approx(kappa[index], abs=1e-12, nan_ok=True)
    assert np.isnan(results["qwk/follicular_erythema_pustule"])
    assert results["macro_f1"] == pytest.approx(np.mean(f1), abs=1e-12)
    assert results["qwk"] == pytest.approx(np.nanmean(kappa), abs=1e-12)
    accuracy = accuracy_score(grades.ravel(), predicted.ravel())
    assert results["hamming_acc"] == pytest.approx(accuracy, abs=1e-12)


def test_metrics_are_computed_over_leading_axes() -> None:
    rng = np.random.default_rng(3)
    stacked = rng.integers(0, 9, (2, 3, 6, 4, 4))
    results = metrics_from_confusions(stacked)
    assert results["macro_f1"].shape == (2, 3)
    single = metrics_from_confusions(stacked[1, 2])
    for key, value in single.items():
        assert results[key][1, 2] == pytest.approx(value, nan_ok=True)


def test_session_confusions_count_each_session_separately() -> None:
    grades = np.array([[0] * 6, [3] * 6, [1] * 6])
    predicted = np.array([[1] * 6, [3] * 6, [1] * 6])
    counts = session_confusions(["b", "a", "b"], grades, predicted)
    # Sessions in sorted order: "a" holds the second image, "b" the first and third.
    assert counts[0, :, 3, 3].tolist() == [1] * 6 and counts[0].sum() == 6
    assert counts[1, :, 0, 1].tolist() == [1] * 6 and counts[1, :, 1, 1].tolist() == [1] * 6
    assert counts[1].sum() == 12


@pytest.mark.parametrize(
    ("grades", "message"),
    [(np.zeros((3, 5), dtype=int), "grades has shape"), (np.full((3, 6), 4), "outside 0..3")],
)
def test_session_confusions_reject_bad_grades(grades: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        session_confusions(["a", "b", "c"], grades, np.zeros((3, 6), dtype=int))


def test_same_seed_same_intervals_other_seed_other_intervals() -> None:
    sessions, grades, predicted = simulate_sessions(np.random.default_rng(0), 50)
    first = bootstrap_intervals(sessions, grades, predicted, resamples=200, seed=4)
    again = bootstrap_intervals(sessions, grades, predicted, resamples=200, seed=4)
    other = bootstrap_intervals(sessions, grades, predicted, resamples=200, seed=5)
    assert first == again
    assert first["macro_f1"].estimate == other["macro_f1"].estimate
    assert (first["macro_f1"].low, first["macro_f1"].high) != (
        other["macro_f1"].low,
        other["macro_f1"].high,
    )


def test_session_bootstrap_is_wider_than_image_bootstrap_when_shots_agree() -> None:
    rng = np.random.default_rng(6)
    person = rng.integers(0, 4, (60, 6))
    guess = np.where(rng.random((60, 6)) < 0.6, person, rng.integers(0, 4, (60, 6)))
    grades, predicted = np.repeat(person, 5, axis=0), np.repeat(guess, 5, axis=0)
    sessions = np.repeat(np.arange(60), 5).astype(str)

    by_session = bootstrap_intervals(sessions, grades, predicted)
    by_image = bootstrap_intervals(image_sessions(len(grades)), grades, predicted)
    for key in ("macro_f1", "hamming_acc"):
        assert by_session[key].estimate == by_image[key].estimate
        session_width = by_session[key].high - by_session[key].low
        image_width = by_image[key].high - by_image[key].low
        # Five identical shots carry the information of one: about sqrt(5) times wider.
        assert session_width > 1.7 * image_width


def test_session_intervals_cover_the_population_value() -> None:
    rng = np.random.default_rng(1)
    sessions, grades, predicted = simulate_sessions(rng, 100_000)
    one_session = np.zeros(len(sessions), dtype="U1")
    truth = metrics_from_confusions(session_confusions(one_session, grades, predicted)[0])
    keys = ("macro_f1", "hamming_acc")
    covered = {"session": dict.fromkeys(keys, 0), "image": dict.fromkeys(keys, 0)}
    trials = 200
    for trial in range(trials):
        sessions, grades, predicted = simulate_sessions(rng, int(rng.integers(60, 101)))
        for kind, groups in (("session", sessions), ("image", image_sessions(len(sessions)))):
            intervals = bootstrap_intervals(groups, grades, predicted, resamples=400, seed=trial)
            for key in keys:
                covered[kind][key] += intervals[key].low <= truth[key] <= intervals[key].high
    for key in keys:
        assert covered["session"][key] >= 0.9 * trials
        # Treating correlated shots as independent gives too narrow intervals.
        assert covered["image"][key] < 0.85 * trials


def test_identical_models_differ_by_nothing() -> None:
    sessions, grades, predicted = simulate_sessions(np.random.default_rng(7), 40)
    differences = paired_difference(sessions, grades, predicted, predicted.copy(), resamples=300)
    assert set(differences) == set(DIFFERENCE_KEYS)
    for difference in differences.values():
        assert (difference.difference, difference.low, difference.high) == (0, 0, 0)
        assert difference.p_value == 1


def test_clearly_better_model_has_a_positive_interval_and_small_p_value() -> None:
    rng = np.random.default_rng(8)
    sessions, grades, _ = simulate_sessions(rng, 40)
    majority_grades = [np.bincount(column, minlength=4).argmax() for column in grades.T]
    majority = np.broadcast_to(majority_grades, grades.shape)
    better = np.where(rng.random(grades.shape) < 0.85, grades, (grades + 1) % 4)
    differences = paired_difference(sessions, grades, majority, better, resamples=500, seed=1)
    for key in ("macro_f1", "hamming_acc", *(f"macro_f1/{name}" for name in INDICATOR_NAMES)):
        assert differences[key].difference > 0
        assert differences[key].low > 0
        assert differences[key].p_value < 0.05
    # The difference is B - A: swapping the models flips its sign.
    swapped = paired_difference(sessions, grades, better, majority, resamples=500, seed=1)
    assert swapped["macro_f1"].difference == -differences["macro_f1"].difference
    assert swapped["macro_f1"].high < 0
