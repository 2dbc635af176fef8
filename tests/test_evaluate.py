import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, precision_recall_fscore_support

from scalp_ml.data.aihub.index import load_manifest
from scalp_ml.evaluate import evaluate
from scalp_ml.labels import INDICATOR_NAMES
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def evaluation(
    best_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("evaluation")
    cfg = compose_config(
        "eval", [f"ckpt_path={best_checkpoint}", f"out_dir={out_dir}", "num_workers=0"]
    )
    return out_dir, evaluate(cfg)


def test_evaluation_writes_report_figures_and_metrics(evaluation: tuple[Path, dict]) -> None:
    out_dir, _ = evaluation
    for name in (
        "report.md",
        "metrics.json",
        "predictions.csv",
        "confusion_test.png",
        "learning_curves.png",
    ):
        assert (out_dir / name).stat().st_size > 0, name
    report = (out_dir / "report.md").read_text()
    context = json.loads((out_dir / "metrics.json").read_text())["context"]
    split = json.loads(Path(context["split_file"]).read_text())
    assert context["split_strategy"] == "session" == split["strategy"]
    assert (
        context["images"] == {"test": split["counts"]["test"]}
        and 30 <= split["counts"]["test"] <= 42
    )
    for text in (
        "best-epoch",
        "split_sha256",
        "(study)",
        "(majority)",
        "QWK",
        "within one",
        "0.311",
    ):
        assert text in report, text


def test_numbers_equal_sklearn_and_direct_formulas(evaluation: tuple[Path, dict]) -> None:
    out_dir, returned = evaluation
    metrics = json.loads((out_dir / "metrics.json").read_text())["test"]
    table = pd.read_csv(out_dir / "predictions.csv")
    truth = table[[f"{n}_true" for n in INDICATOR_NAMES]].to_numpy()
    predicted = table[[f"{n}_predicted" for n in INDICATOR_NAMES]].to_numpy()
    macro = []
    for index, name in enumerate(INDICATOR_NAMES):
        t, p = truth[:, index], predicted[:, index]
        macro.append(f1_score(t, p, average="macro", labels=[0, 1, 2, 3], zero_division=0))
        assert metrics[f"macro_f1/{name}"] == pytest.approx(macro[-1], abs=1e-6)
        precision, recall, f1, support = precision_recall_fscore_support(
            t, p, labels=[0, 1, 2, 3], zero_division=0
        )
        for grade in range(4):
            assert metrics[f"precision/{name}/{grade}"] == pytest.approx(precision[grade], abs=1e-6)
            assert metrics[f"recall/{name}/{grade}"] == pytest.approx(recall[grade], abs=1e-6)
            assert metrics[f"f1/{name}/{grade}"] == pytest.approx(f1[grade], abs=1e-6)
            assert metrics[f"support/{name}/{grade}"] == support[grade]
        qwk = cohen_kappa_score(t, p, labels=[0, 1, 2, 3], weights="quadratic")
        if np.isnan(qwk):
            assert np.isnan(metrics[f"qwk/{name}"])
        else:
            assert metrics[f"qwk/{name}"] == pytest.approx(qwk, abs=1e-6)
        assert metrics[f"mae/{name}"] == pytest.approx(np.abs(t - p).mean(), abs=1e-6)
        assert metrics[f"within_one/{name}"] == pytest.approx((np.abs(t - p) <= 1).mean(), abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx(np.mean(macro), abs=1e-6)
    assert metrics["hamming_acc"] == pytest.approx((truth == predicted).mean(), abs=1e-6)
    assert metrics["exact_match"] == pytest.approx(
        (truth == predicted).all(axis=1).mean(), abs=1e-6
    )
    assert returned["test/macro_f1"] == pytest.approx(metrics["macro_f1"])


def test_majority_baseline_uses_the_training_split(
    evaluation: tuple[Path, dict], synthetic_root: Path
) -> None:
    out_dir, _ = evaluation
    document = json.loads((out_dir / "metrics.json").read_text())
    split = json.loads(Path(document["context"]["split_file"]).read_text())["splits"]
    manifest = load_manifest(synthetic_root).set_index("name")
    train = manifest.loc[split["train"], list(INDICATOR_NAMES)].to_numpy()
    test = manifest.loc[split["test"], list(INDICATOR_NAMES)].to_numpy()
    majority = [np.bincount(column, minlength=4).argmax() for column in train.T]
    baseline = document["majority_baseline"]["test"]
    for index, name in enumerate(INDICATOR_NAMES):
        expected = f1_score(
            test[:, index],
            np.full(len(test), majority[index]),
            average="macro",
            labels=[0, 1, 2, 3],
            zero_division=0,
        )
        assert baseline[f"macro_f1/{name}"] == pytest.approx(expected, abs=1e-6)
    assert baseline["hamming_acc"] == pytest.approx((test == np.array(majority)).mean(), abs=1e-6)
