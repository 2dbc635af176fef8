import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalp_ml.data.splits import (
    SPLITS,
    default_split_path,
    grade_indicators,
    load_or_create_split,
    stratified_split,
)
from scalp_ml.data.synthetic import SHOTS, plan_sessions, sample_session_grades
from scalp_ml.labels import INDICATOR_NAMES

RATIOS = (0.7, 0.15, 0.15)


def fake_manifest(n_images: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grades = np.concatenate([sample_session_grades(5, rng) for _ in range(n_images // 5 + 1)])[
        :n_images
    ]
    manifest = pd.DataFrame(grades, columns=list(INDICATOR_NAMES))
    manifest.insert(0, "name", [f"img{index:05d}.jpg" for index in range(n_images)])
    return manifest


@pytest.mark.parametrize("n_images", [601, 2000])
def test_sizes_are_70_15_15_and_every_frequent_grade_reaches_every_split(n_images: int) -> None:
    manifest = fake_manifest(n_images)
    grades = manifest[list(INDICATOR_NAMES)].to_numpy()
    assignment = stratified_split(grades, RATIOS, seed=42)
    for index, ratio in enumerate(RATIOS):
        assert abs((assignment == index).sum() - ratio * n_images) <= 1
    pairs = grade_indicators(grades)
    for column in np.flatnonzero(pairs.sum(axis=0) >= 20):
        for index in range(3):
            assert pairs[assignment == index, column].sum() > 0, (column, SPLITS[index])


def test_split_file_is_disjoint_complete_and_identical_for_the_same_seed(tmp_path: Path) -> None:
    manifest = fake_manifest(500)
    first = load_or_create_split(manifest, tmp_path / "a.json", RATIOS, seed=1)
    load_or_create_split(manifest, tmp_path / "b.json", RATIOS, seed=1)
    load_or_create_split(manifest, tmp_path / "c.json", RATIOS, seed=2)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_bytes() != (tmp_path / "c.json").read_bytes()
    members = [set(first[split]) for split in SPLITS]
    assert not (members[0] & members[1] or members[0] & members[2] or members[1] & members[2])
    assert set().union(*members) == set(manifest["name"])
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["counts"] == {split: len(first[split]) for split in SPLITS}
    assert record["strategy"] == "image" and record["seed"] == 1


def test_a_saved_split_is_reused_and_refused_for_other_images(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    manifest = fake_manifest(300)
    first = load_or_create_split(manifest, path, RATIOS, seed=0)
    assert (
        load_or_create_split(manifest.sample(frac=1, random_state=3), path, RATIOS, seed=0) == first
    )
    with pytest.raises(ValueError, match=r"split\.json does not fit"):
        load_or_create_split(manifest.iloc[:-1], path, RATIOS, seed=0)


def test_ratios_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="summing to 1"):
        stratified_split(np.zeros((10, 6), dtype=int), (0.7, 0.2, 0.2), seed=0)


def session_manifest(n_images: int, seed: int, validation_fraction: float = 0.2) -> pd.DataFrame:
    """Labels of a synthetic download as the generator plans them, without rendering images."""
    rows = []
    for plan in plan_sessions(n_images, seed, validation_fraction):
        grades = sample_session_grades(plan.n_shots, np.random.default_rng(plan.seed))
        session = f"{plan.site}_{plan.device}_{plan.timestamp_ms}"
        for (shot, region), shot_grades in zip(SHOTS, grades, strict=False):
            rows.append(
                {"name": f"{session}_{shot}_{region}.jpg", "session": session}
                | {"subset": plan.subset}
                | dict(zip(INDICATOR_NAMES, shot_grades.tolist(), strict=True))
            )
    return pd.DataFrame(rows)


def shares(manifest: pd.DataFrame, splits: dict[str, list[str]]) -> pd.DataFrame:
    """Per (indicator, grade) pair with >= 40 images: the share of its images in each split."""
    pairs = pd.DataFrame(
        grade_indicators(manifest[list(INDICATOR_NAMES)].to_numpy()), index=manifest["name"]
    )
    totals = pairs.sum()
    frequent = totals[totals >= 40].index
    counts = {split: pairs.loc[names, frequent].sum() for split, names in splits.items()}
    return pd.DataFrame(counts) / totals[frequent].to_numpy()[:, None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_session_split_shares_no_session_or_image_and_keeps_every_pair_within_5_points(
    tmp_path: Path, seed: int
) -> None:
    manifest = session_manifest(2000, seed)
    assert len(manifest) == 2000 and manifest["session"].nunique() >= 400
    splits = load_or_create_split(manifest, tmp_path / "s.json", RATIOS, seed, "session")
    members = [set(splits[split]) for split in SPLITS]
    assert sum(map(len, members)) == 2000 and set().union(*members) == set(manifest["name"])
    session_of = manifest.set_index("name")["session"]
    sessions = [set(session_of[list(names)]) for names in members]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not members[a] & members[b]
            assert not sessions[a] & sessions[b], (SPLITS[a], SPLITS[b])
    table = shares(manifest, splits)
    assert len(table) >= 18  # most of the 24 pairs are frequent enough to be judged
    deviation = (table - np.array(RATIOS)).abs()
    assert deviation.max().max() <= 0.05, deviation.max()
    for members_of_split, ratio in zip(members, RATIOS, strict=True):
        assert abs(len(members_of_split) / 2000 - ratio) <= 0.02


def test_the_split_file_records_strategy_seed_images_and_sessions(tmp_path: Path) -> None:
    manifest = session_manifest(400, seed=4)
    path = tmp_path / "split.json"
    splits = load_or_create_split(manifest, path, RATIOS, 9, "session")
    record = json.loads(path.read_text())
    assert (record["strategy"], record["seed"], record["ratios"]) == ("session", 9, list(RATIOS))
    assert record["counts"] == {split: len(splits[split]) for split in SPLITS}
    session_of = manifest.set_index("name")["session"]
    assert record["sessions"] == {split: session_of[splits[split]].nunique() for split in SPLITS}
    with pytest.raises(ValueError, match=r"it records .*'strategy': 'session'.* needs .*'image'"):
        load_or_create_split(manifest, path, RATIOS, 9, "image")


def test_official_split_trains_on_training_and_halves_validation_by_session(
    tmp_path: Path,
) -> None:
    manifest = session_manifest(1000, seed=5, validation_fraction=0.3)
    splits = load_or_create_split(manifest, tmp_path / "o.json", RATIOS, 1, "official")
    subset = manifest.set_index("name")["subset"]
    assert set(splits["train"]) == set(subset[subset == "Training"].index)
    validation = set(subset[subset == "Validation"].index)
    assert set(splits["val"]) | set(splits["test"]) == validation
    assert abs(len(splits["val"]) - len(splits["test"])) <= 0.1 * len(validation)
    session_of = manifest.set_index("name")["session"]
    assert not set(session_of[splits["val"]]) & set(session_of[splits["test"]])
    assert default_split_path("/data", RATIOS, 1, "official").name == "official-seed1.json"


def test_official_split_needs_training_and_validation_folders(tmp_path: Path) -> None:
    manifest = session_manifest(50, seed=6)
    manifest["image"] = manifest["name"]
    manifest.loc[3, "subset"] = ""
    with pytest.raises(ValueError, match=f"1 are in neither, e.g. {manifest.loc[3, 'name']}"):
        load_or_create_split(manifest, tmp_path / "o.json", RATIOS, 1, "official")


def test_an_unknown_strategy_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.split\.strategy must be one of .*got 'person'"):
        load_or_create_split(session_manifest(50, 0), tmp_path / "x.json", RATIOS, 1, "person")


def test_the_image_strategy_puts_shots_of_one_person_in_several_splits(tmp_path: Path) -> None:
    manifest = session_manifest(2000, seed=0)
    splits = load_or_create_split(manifest, tmp_path / "i.json", RATIOS, 0, "image")
    session_of = manifest.set_index("name")["session"]
    assert len(set(session_of[splits["train"]]) & set(session_of[splits["test"]])) > 100


@pytest.mark.parametrize(("strategy", "seed"), [("session", 0), ("session", 1), ("image", 2)])
def test_five_folds_keep_test_share_no_session_and_keep_every_pair_within_2_points(
    tmp_path: Path, strategy: str, seed: int
) -> None:
    manifest = session_manifest(5000, seed)
    plain = load_or_create_split(manifest, tmp_path / "plain.json", RATIOS, seed, strategy)
    path = tmp_path / "folds.json"
    folds = [load_or_create_split(manifest, path, RATIOS, seed, strategy, 5, f) for f in range(5)]
    assert all(fold["test"] == plain["test"] for fold in folds)  # the test split is untouched
    validating = [set(fold["val"]) for fold in folds]
    rest = set(manifest["name"]) - set(plain["test"])
    assert set().union(*validating) == rest and sum(map(len, validating)) == len(rest)
    for fold, members in zip(folds, validating, strict=True):
        assert set(fold["train"]) == rest - members  # the other k-1 folds train
    session_of = manifest.set_index("name")["session"]
    if strategy == "session":
        sessions = [set(session_of[list(members)]) for members in validating]
        test_sessions = set(session_of[plain["test"]])
        for a, first in enumerate(sessions):
            assert not first & test_sessions
            assert not any(first & second for second in sessions[a + 1 :])
    pairs = pd.DataFrame(
        grade_indicators(manifest[list(INDICATOR_NAMES)].to_numpy()), index=manifest["name"]
    ).drop(index=plain["test"])
    frequent = pairs.columns[pairs.sum() >= 50]
    assert len(frequent) >= 20
    overall = pairs[frequent].mean()
    for members in validating:
        share = pairs.loc[sorted(members), frequent].mean()  # the pair's share of the fold
        assert (share - overall).abs().max() <= 0.02
        assert abs(len(members) / len(rest) - 0.2) <= 0.01
    record = json.loads(path.read_text())
    assert record["folds"] == 5 and record["folds_counts"] == [len(m) for m in validating]


def test_folds_are_checked_and_a_split_file_refuses_other_folds(tmp_path: Path) -> None:
    manifest = session_manifest(300, seed=5)
    path = tmp_path / "split.json"
    with pytest.raises(ValueError, match=r"data\.split\.fold=3: choose a fold from 0 to 2"):
        load_or_create_split(manifest, path, RATIOS, 0, "session", folds=3, fold=3)
    with pytest.raises(ValueError, match=r"data\.split\.folds=1"):
        load_or_create_split(manifest, path, RATIOS, 0, "session", folds=1)
    load_or_create_split(manifest, path, RATIOS, 0, "session", folds=3, fold=0)
    with pytest.raises(ValueError, match="does not fit"):
        load_or_create_split(manifest, path, RATIOS, 0, "session", folds=4, fold=0)
    assert (
        default_split_path("r", RATIOS, 42, "session", 5).name
        == "session-70-15-15-seed42-5fold.json"
    )
