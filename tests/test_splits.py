import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalp_ml.data.splits import SPLITS, grade_indicators, load_or_create_split, stratified_split
from scalp_ml.data.synthetic import sample_session_grades
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
