import hashlib
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from scalp_ml.data.aihub.pairing import IMAGE_NAME
from scalp_ml.data.synthetic import (
    GRADE_PROBABILITIES,
    MARKER,
    SHOTS,
    Lesions,
    generate,
    render_scalp,
    sample_person,
    sample_session_grades,
)


def test_files_follow_the_aihub_layout_and_naming(synthetic_root: Path) -> None:
    images = sorted(synthetic_root.rglob("*.jpg"))
    labels = sorted(
        path
        for path in synthetic_root.rglob("*.json")
        if not any(part.startswith(".") for part in path.relative_to(synthetic_root).parts)
    )
    assert len({p.name for p in images}) == 240
    assert {p.stem for p in images} == {p.stem for p in labels}
    for path in images:
        assert IMAGE_NAME.match(path.stem), path.name
        subset, kind, folder = path.relative_to(synthetic_root).parts[:3]
        assert subset in {"Training", "Validation"} and kind == "01.원천데이터"
        assert folder.startswith("[원천]")
    label = json.loads(labels[0].read_text(encoding="utf-8"))
    assert label["image_file_name"] == f"{labels[0].stem}.jpg"
    assert {f"value_{k}" for k in range(1, 7)} <= label.keys()
    assert all(label[f"value_{k}"] in {"0", "1", "2", "3"} for k in range(1, 7))
    height, width = cv2.imread(str(images[0])).shape[:2]
    assert (width, height) == (640, 480)


def test_sessions_hold_up_to_five_shots_in_capture_order(synthetic_root: Path) -> None:
    shots = defaultdict(set)
    for path in synthetic_root.rglob("*.jpg"):
        site, device, timestamp, shot, region = path.stem.split("_")
        shots[(site, device, timestamp)].add((shot, region))
    assert len(shots) >= 240 / 5
    for session in shots.values():
        assert session == set(SHOTS[: len(session)])


def test_grades_follow_the_study_table_1_and_images_show_several_conditions() -> None:
    rng = np.random.default_rng(0)
    grades = np.concatenate([sample_session_grades(5, rng) for _ in range(20000)])
    frequencies = (grades[:, :, None] == np.arange(4)).mean(axis=0)
    np.testing.assert_allclose(frequencies, GRADE_PROBABILITIES, atol=0.012)
    conditions = (grades > 0).sum(axis=1)
    assert 0.6 < (conditions >= 2).mean() < 0.95


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", n_images=6, seed=3, workers=1)
    second = generate(tmp_path / "b", n_images=6, seed=3, workers=1)
    other = generate(tmp_path / "c", n_images=6, seed=4, workers=1)

    def contents(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    assert contents(first) == contents(second)
    assert contents(first) != contents(other)


def test_default_lesions_render_the_images_of_before_the_lesion_options() -> None:
    rng = np.random.default_rng(0)
    image = render_scalp([3, 2, 3, 2, 3, 1], sample_person(rng), rng)
    digest = hashlib.sha256(image.tobytes()).hexdigest()  # taken before the options existed
    assert digest == "2c10f5ace7290ad827e7f946ae7b2413b4c27d47134aee2ea3e858b29ae08809"


def test_complete_dataset_is_reused_and_foreign_folder_refused(tmp_path: Path) -> None:
    root = generate(tmp_path / "data", n_images=3, seed=0, workers=1)
    image = next(root.rglob("*.jpg"))
    stamp = image.stat().st_mtime_ns
    generate(root, n_images=3, seed=0, workers=1)
    assert image.stat().st_mtime_ns == stamp
    foreign = tmp_path / "real_download"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    with pytest.raises(FileExistsError, match="real_download"):
        generate(foreign, n_images=3)
    assert (foreign / "keep.txt").exists()


def test_other_lesion_options_regenerate_the_dataset(tmp_path: Path) -> None:
    def images(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.jpg")}

    root = generate(tmp_path / "data", n_images=2, seed=0, workers=1)
    standard = images(root)
    generate(root, n_images=2, seed=0, workers=1, lesion_scale=0.6, lesion_contrast=0.5)
    hard = images(root)
    assert hard.keys() == standard.keys() and hard != standard
    marker = json.loads((root / MARKER).read_text())
    assert (marker["lesion_scale"], marker["lesion_contrast"]) == (0.6, 0.5)


def test_lesion_options_out_of_range_are_refused() -> None:
    for scale, contrast in ((0.0, 1.0), (1.0, 1.5), (1.0, -0.1)):
        with pytest.raises(ValueError, match="lesion scale"):
            Lesions(scale, contrast)


STANDARD = Lesions()
HARD = Lesions(scale=0.6, contrast=0.5)


def _render(grades: list[int], seed: int, lesions: Lesions = STANDARD) -> np.ndarray:
    rng = np.random.default_rng(seed)
    person = sample_person(rng)
    return render_scalp(grades, person, rng, lesions).astype(float)


def _render_mean(grades: list[int], measure, lesions: Lesions = STANDARD) -> float:
    return float(np.mean([measure(_render(grades, seed, lesions)) for seed in range(3)]))


BASE = [0, 1, 1, 0, 0, 0]
CUES = {
    # indicator index: a measure that must rise with the grade
    0: lambda im: ((np.ptp(im, axis=2) < 22) & (im.min(axis=2) > 140)).mean(),  # grey scale
    1: lambda im: im.mean(),  # oily sheen brightens
    2: lambda im: (im[..., 0] - im[..., 1]).mean(),  # redness between follicles
    3: lambda im: ((im[..., 0] > 150) & (im[..., 1] < 80)).mean(),  # red follicle rings
    4: lambda im: (im.min(axis=2) > 215).mean(),  # white flakes
    5: lambda im: -(im.mean(axis=2) < 70).mean(),  # fewer dark hair pixels
}


@pytest.mark.parametrize("indicator", sorted(CUES))
def test_each_indicator_has_a_visual_cue_that_grows_with_its_grade(indicator: int) -> None:
    strengths = []
    for grade in (0, 1, 3):
        grades = list(BASE)
        grades[indicator] = grade
        strengths.append(_render_mean(grades, CUES[indicator]))
    assert strengths[0] < strengths[1] < strengths[2], strengths


def _evidence(grades: list[int]) -> tuple[float, float]:
    """Mean pixel change the cues make, standard and hard, against the scene without any cue."""
    scene = _render(grades, 0, Lesions(contrast=0.0))
    standard, hard = (
        np.abs(_render(grades, 0, lesions) - scene).mean() for lesions in (STANDARD, HARD)
    )
    return float(standard), float(hard)


# Hair loss is left out: its grade changes which follicles bear hair, so the scene (see below).
# Lesion areas shrink by about scale² = 0.36 on top of the contrast; the sheen has no size.
@pytest.mark.parametrize(
    ("indicator", "shrink"), [(0, 0.5), (1, 1.0), (2, 0.5), (3, 0.5), (4, 0.5)]
)
def test_smaller_fainter_lesions_weaken_each_cue_but_keep_it_growing(
    indicator: int, shrink: float
) -> None:
    grades = np.zeros((3, 6), int)
    grades[:, indicator] = (1, 2, 3)
    standard, hard = np.array([_evidence(list(row)) for row in grades]).T
    assert 0 < hard[0] < hard[1] < hard[2], hard
    # Measured hard / standard: 0.14 to 0.22, the sheen 0.50 (1.02: rounding to uint8).
    assert (hard <= 1.02 * HARD.contrast * shrink * standard).all(), (hard, standard)


def test_fainter_hair_loss_leaves_more_hair() -> None:
    severe = [0, 0, 0, 0, 0, 3]
    none, hard, standard = (
        _render_mean(grades, CUES[5], lesions)
        for grades, lesions in (([0] * 6, STANDARD), (severe, HARD), (severe, STANDARD))
    )
    assert none < hard < standard, (none, hard, standard)
