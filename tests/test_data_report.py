import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalp_ml.data.aihub.index import load_manifest
from scalp_ml.data.report import grade_table, leakage, write_data_report
from scalp_ml.labels import INDICATOR_NAMES
from tests.conftest import compose_config


def data_config(root: Path, *overrides: str) -> dict:
    cfg = compose_config("data_report", [f"data.root={root}", "out_dir=/unused", *overrides])
    return dict(cfg.data)


@pytest.fixture
def download(synthetic_root: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic download with one unreadable image and one stray label."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "download", ignore=_hidden))
    victim = sorted(root.rglob("*.jpg"))[0]
    for copy in root.rglob(victim.name):
        copy.write_bytes(b"")
    (root / "Training" / "stray.json").write_text(json.dumps({"value_1": 0}))
    return root


def _hidden(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name.startswith(".")]


def test_report_tables_leakage_and_problems_match_the_data(download: Path, tmp_path: Path) -> None:
    data = data_config(
        download, "data.on_bad_image=skip", "data.on_bad_label=skip", "data.split.strategy=image"
    )
    out = tmp_path / "report"
    report = write_data_report(out, data, show_progress=False).read_text()
    assert (out / "grades.png").stat().st_size > 10_000
    problems = pd.read_csv(out / "problems.csv", keep_default_na=False)
    assert sorted(problems["kind"]) == ["unusable image", "unusable label"]
    assert "zero-byte file" in problems["problem"].tolist()
    assert "Training/stray.json" in report and "zero-byte file" in report
    manifest = load_manifest(download, on_bad_image="skip", on_bad_label="skip")
    assert f"### Table 1: all ({len(manifest)} images)" in report and len(manifest) == 239
    counts = manifest["dandruff"].value_counts()
    expected_row = " | ".join(
        f"{counts.get(grade, 0)} ({100 * counts.get(grade, 0) / 239:.1f} %)" for grade in range(4)
    )
    assert f"| dandruff | {expected_row} |" in report
    split = json.loads(next((download / ".scalp_ml" / "splits").glob("image-*.json")).read_text())
    session_of = manifest.set_index("name")["session"]
    shared = set(session_of[split["splits"]["train"]]) & set(session_of[split["splits"]["test"]])
    assert len(shared) > 0  # per-image splits put shots of one person in train and test
    assert f"| train / test | 0 | {len(shared)} |" in report
    assert "### Cross-split leakage: **LEAK**" in report


def test_the_session_split_report_shows_no_leak(synthetic_root: Path, tmp_path: Path) -> None:
    report = write_data_report(
        tmp_path, data_config(synthetic_root), show_progress=False
    ).read_text()
    assert "### Cross-split leakage: none" in report
    assert "Strategy `session`" in report


def test_a_refused_download_still_gets_its_report(download: Path, tmp_path: Path) -> None:
    report = write_data_report(tmp_path, data_config(download), show_progress=False).read_text()
    assert "## Refused by the data policies" in report
    assert "1 unusable label files (data.on_bad_label=error" in report
    assert not (tmp_path / "grades.png").exists()


def test_grade_table_and_leakage_against_direct_counts() -> None:
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame(rng.integers(0, 4, (50, 6)), columns=list(INDICATOR_NAMES))
    manifest["name"] = [f"{i}.jpg" for i in range(50)]
    manifest["session"] = [f"s{i // 5}" for i in range(50)]
    table = grade_table(manifest)
    assert table.loc["hair_loss", 2] == (manifest["hair_loss"] == 2).sum()
    assert table.sum(axis=1).eq(50).all()
    splits = {"train": ["0.jpg", "1.jpg"], "val": ["2.jpg", "5.jpg"], "test": ["1.jpg"]}
    rows = leakage(manifest, splits).set_index("splits")
    assert rows.loc["train / val"].tolist() == [0, 1]  # 0-2 share session s0
    assert rows.loc["train / test"].tolist() == [1, 1]
    assert rows.loc["val / test"].tolist() == [0, 1]
