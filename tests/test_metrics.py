import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from scalp_ml.evaluation.metrics import GradingMetrics
from scalp_ml.labels import INDICATOR_NAMES


def sklearn_macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    return f1_score(truth, predicted, average="macro", labels=[0, 1, 2, 3], zero_division=0)


def random_batches(seed: int, sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for size in sizes:
        logits = torch.randn(size, 6, 4, generator=generator)
        grades = torch.randint(0, 4, (size, 6), generator=generator)
        batches.append((logits, grades))
    return batches


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_and_hamming_match_sklearn_over_several_batches(seed: int) -> None:
    batches = random_batches(seed, [7, 16, 3, 30])
    # Grade 3 of the first indicator is absent from targets and predictions alike; the
    # study's formula (and scikit-learn with labels=[0..3]) counts its F1 as 0.
    for logits, grades in batches:
        grades[:, 0] = grades[:, 0].clamp(max=2)
        logits[:, 0, 3] = -1e9
    metrics = GradingMetrics()
    for logits, grades in batches:
        metrics.update(logits, grades)
    results = metrics.compute()

    truth = torch.cat([grades for _, grades in batches]).numpy()
    predicted = torch.cat([logits.argmax(-1) for logits, _ in batches]).numpy()
    expected = [sklearn_macro_f1(truth[:, i], predicted[:, i]) for i in range(6)]
    for index, name in enumerate(INDICATOR_NAMES):
        assert results[f"macro_f1/{name}"].item() == pytest.approx(expected[index], abs=1e-6)
        per_grade = f1_score(
            truth[:, index], predicted[:, index], labels=[0, 1, 2, 3], average=None, zero_division=0
        )
        for grade in range(4):
            assert results[f"f1/{name}/{grade}"].item() == pytest.approx(per_grade[grade], abs=1e-6)
    assert results["f1/microkeratin/3"].item() == 0.0
    assert results["macro_f1"].item() == pytest.approx(np.mean(expected), abs=1e-6)
    assert results["hamming_acc"].item() == pytest.approx((truth == predicted).mean(), abs=1e-6)


def test_confusion_matrices_count_true_rows_and_predicted_columns() -> None:
    metrics = GradingMetrics()
    grades = torch.tensor([[0, 1, 2, 3, 0, 1], [3, 3, 3, 3, 3, 3]])
    predicted = torch.tensor([[0, 2, 2, 3, 1, 1], [3, 0, 3, 3, 3, 3]])
    metrics.update(predicted, grades)
    confusion = metrics.compute()["confusion/excess_sebum"]
    assert confusion[1, 2] == 1 and confusion[3, 0] == 1 and confusion.sum() == 2


def test_reset_forgets_earlier_batches() -> None:
    metrics = GradingMetrics()
    (logits, grades), (other_logits, other_grades) = random_batches(5, [20, 20])
    metrics.update(logits, grades)
    metrics.reset()
    metrics.update(other_logits, other_grades)
    fresh = GradingMetrics()
    fresh.update(other_logits, other_grades)
    assert metrics.compute()["macro_f1"] == fresh.compute()["macro_f1"]


def test_per_grade_and_ordinal_metrics_match_sklearn_and_direct_formulas() -> None:
    from sklearn.metrics import (
        cohen_kappa_score,
        mean_absolute_error,
        precision_recall_fscore_support,
    )

    batches = random_batches(11, [25, 40, 9])
    metrics = GradingMetrics()
    for logits, grades in batches:
        metrics.update(logits, grades)
    results = metrics.compute()
    truth = torch.cat([grades for _, grades in batches]).numpy()
    predicted = torch.cat([logits.argmax(-1) for logits, _ in batches]).numpy()
    for index, name in enumerate(INDICATOR_NAMES):
        t, p = truth[:, index], predicted[:, index]
        precision, recall, _, support = precision_recall_fscore_support(
            t, p, labels=[0, 1, 2, 3], zero_division=0
        )
        for grade in range(4):
            assert results[f"precision/{name}/{grade}"].item() == pytest.approx(
                precision[grade], abs=1e-6
            )
            assert results[f"recall/{name}/{grade}"].item() == pytest.approx(
                recall[grade], abs=1e-6
            )
            assert results[f"support/{name}/{grade}"].item() == support[grade]
        qwk = cohen_kappa_score(t, p, labels=[0, 1, 2, 3], weights="quadratic")
        assert results[f"qwk/{name}"].item() == pytest.approx(qwk, abs=1e-6)
        assert results[f"mae/{name}"].item() == pytest.approx(mean_absolute_error(t, p), abs=1e-6)
        assert results[f"within_one/{name}"].item() == pytest.approx(
            (abs(t - p) <= 1).mean(), abs=1e-6
        )
    assert results["exact_match"].item() == pytest.approx(
        (truth == predicted).all(axis=1).mean(), abs=1e-6
    )
    assert results["mae"].item() == pytest.approx(abs(truth - predicted).mean(), abs=1e-6)


def test_majority_baseline_predicts_each_indicators_most_frequent_training_grade() -> None:
    from scalp_ml.evaluation.metrics import majority_baseline, majority_grades

    train = torch.tensor([[0, 1, 2, 0, 3, 0], [0, 1, 2, 0, 3, 1], [1, 2, 2, 0, 0, 1]])
    assert majority_grades(train).tolist() == [0, 1, 2, 0, 3, 1]
    evaluation = torch.tensor([[0, 1, 1, 0, 3, 1], [2, 1, 2, 0, 0, 0]])
    results = majority_baseline(train, evaluation)
    expected = (evaluation == torch.tensor([0, 1, 2, 0, 3, 1])).float()
    assert results["hamming_acc"].item() == pytest.approx(expected.mean().item())
    assert results["exact_match"].item() == 0.0
    assert results["macro_f1/excess_sebum"].item() == pytest.approx(0.25)  # F1 1 for grade 1 only
