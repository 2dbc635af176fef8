import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import cohen_kappa_score, f1_score, precision_recall_fscore_support

from scalp_ml.compare import compare, load_predictions
from scalp_ml.data.aihub.index import load_manifest
from scalp_ml.evaluation.command import evaluate
from scalp_ml.labels import GRADES, INDICATOR_NAMES
from tests.conftest import compose_config


def run_evaluate(checkpoint: Path, out_dir: Path, *overrides: str) -> dict[str, float]:
    overrides = (f"ckpt_path={checkpoint}", f"out_dir={out_dir}", "num_workers=0", *overrides)
    return evaluate(compose_config("eval", list(overrides)))


@pytest.fixture(scope="module")
def evaluation(
    best_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("evaluation")
    return out_dir, run_evaluate(best_checkpoint, out_dir)


def test_evaluation_writes_report_figures_and_metrics(evaluation: tuple[Path, dict]) -> None:
    out_dir, _ = evaluation
    for name in (
        "report.md",
        "metrics.json",
        "predictions_test.csv",
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
        "best.ckpt",
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
    table = pd.read_csv(out_dir / "predictions_test.csv")
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


def test_predictions_hold_the_probabilities_and_sessions(evaluation: tuple[Path, dict]) -> None:
    out_dir, _ = evaluation
    table = pd.read_csv(out_dir / "predictions_test.csv")
    for name in INDICATOR_NAMES:
        probabilities = table[[f"{name}_p_{grade}" for grade in GRADES]].to_numpy()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
        assert (probabilities.argmax(axis=1) == table[f"{name}_predicted"]).all()
    document = json.loads((out_dir / "metrics.json").read_text())
    assert document["context"]["sessions"]["test"] == table["session"].nunique()


def test_compare_takes_an_evaluation_and_a_training_run(
    evaluation: tuple[Path, dict], demo_run: tuple[Path, dict]
) -> None:
    out_dir, _ = evaluation
    document = json.loads((out_dir / "metrics.json").read_text())
    assert set(document["intervals"]) == set(document["collapsed"]) == {"test"}
    assert document["context"]["bootstrap"]["unit"] == "session"
    # The run graded its test split with the same best checkpoint: nothing differs.
    run, evaluated = (load_predictions(path, "test") for path in (demo_run[0], out_dir))
    result = compare(run, evaluated, 100, 0)
    assert result["images"] == document["context"]["images"]["test"]
    assert all(numbers["difference"] in (0, None) for numbers in result["metrics"].values())
    assert result["metrics"]["macro_f1"]["p_value"] == 1


def test_the_onnx_export_scores_like_its_checkpoint(
    evaluation: tuple[Path, dict], onnx_file: Path, tmp_path: Path
) -> None:
    out_dir, from_checkpoint = evaluation
    from_onnx = run_evaluate(onnx_file, tmp_path)
    for key, value in from_checkpoint.items():
        assert from_onnx[key] == pytest.approx(value, abs=1e-9, nan_ok=True), key
    ours, theirs = (pd.read_csv(d / "predictions_test.csv") for d in (out_dir, tmp_path))
    probabilities = [c for c in ours.columns if "_p_" in c]
    np.testing.assert_allclose(theirs[probabilities], ours[probabilities], atol=1e-6)


def test_the_training_split_is_scored_without_augmentation(
    best_checkpoint: Path, tmp_path: Path
) -> None:
    first = run_evaluate(best_checkpoint, tmp_path / "a", "split=train")
    second = run_evaluate(best_checkpoint, tmp_path / "b", "split=train")
    assert first == second and "train/macro_f1" in first


def test_a_relative_data_root_that_is_not_here_names_the_override(
    best_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = torch.load(best_checkpoint, weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["root"] = "data/moved_away"
    moved = tmp_path / "moved.ckpt"
    torch.save(checkpoint, moved)
    with pytest.raises(FileNotFoundError, match=r"data/moved_away .*relative to .*data_root="):
        run_evaluate(moved, tmp_path)


@pytest.mark.parametrize(
    ("config", "folder"),
    [
        ("eval", "outputs/eval/"),
        ("predict", "outputs/predict/"),
        ("data_report", "outputs/data_report/"),
    ],
)
def test_commands_write_into_their_own_output_folders(config: str, folder: str) -> None:
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            config,
            overrides=["+ckpt_path=x"] if config == "data_report" else [],
            return_hydra_config=True,
        )
    assert cfg.hydra.run.dir.startswith(folder)
