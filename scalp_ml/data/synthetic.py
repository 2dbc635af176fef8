"""Look-alike AI Hub scalp data: 640x480 JPEGs whose visual evidence follows six grades.

The layout, file names and JSON labels copy the real download, so the same reader serves
both. Grades follow the study's Table 1 frequencies; each indicator has its own visual cue
whose strength rises with the grade (specks, sheen, redness, pustules, flakes, hair density).

Run: ``python -m scalp_ml.data.synthetic out_dir=data/synthetic n_images=2000``; add
``archives=true`` to get the download as it comes: one zip archive per condition folder, member
names in CP949 without the zip's UTF-8 flag, as Korean Windows tools write them. Add
``lesion_scale=0.6 lesion_contrast=0.5`` for a harder set with smaller, fainter lesions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import hydra
import numpy as np
from omegaconf import DictConfig

from scalp_ml.atomic import atomic_write_text
from scalp_ml.cli import CONF_DIR, run_command
from scalp_ml.labels import GRADES_KOREAN, INDICATORS, NUM_INDICATORS
from scalp_ml.progress import progress
from scalp_ml.reference import GRADE_COUNTS
from scalp_ml.workers import WorkerPool

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 640, 480
GRADE_PROBABILITIES = GRADE_COUNTS / GRADE_COUNTS.sum(axis=1, keepdims=True)  # Table 1
SHOTS = (("2", "TH"), ("3", "TH"), ("4", "LH"), ("5", "RH"), ("6", "BH"))
KEEP_PERSON_GRADE = 0.7  # chance that a shot shows its person's grade rather than a fresh draw
MARKER = ".synthetic.json"
GENERATOR_VERSION = 3  # bump when the rendering changes, so old datasets are regenerated
IN_PROGRESS = ".synthetic-in-progress"
SUBSETS = ("Training", "Validation")

# Visual strength of each cue per grade 0..3.
SPECKS = (0, 250, 550, 1000)  # microkeratin: clusters of small greyish specks
SHEEN = (0.0, 0.22, 0.42, 0.65)  # excess sebum: oily highlight opacity
REDNESS = ((0.0, 0.0), (0.3, 0.35), (0.55, 0.5), (0.8, 0.68))  # erythema: (coverage, strength)
PUSTULES = (0, 4, 10, 20)  # follicular erythema / pustules: red rings with yellow centres
FLAKES = (0, 6, 14, 28)  # dandruff: large white flakes
HAIRED_FOLLICLES = (0.95, 0.68, 0.42, 0.18)  # hair loss: share of follicles that bear hair


@dataclass(frozen=True)
class Lesions:
    """How visible the evidence of every grade is; the defaults render the standard set.

    Attributes:
        scale: Size multiplier of specks, pustules, flakes and red blotches (> 0).
        contrast: Moves each cue from its grade's strength towards grade 0 (no evidence):
            the opacity of specks, sheen, redness, pustules and flakes against the skin, and
            the hair lost, are multiplied by it (0 to 1).
    """

    scale: float = 1.0
    contrast: float = 1.0

    def __post_init__(self) -> None:
        if self.scale <= 0 or not 0 <= self.contrast <= 1:
            raise ValueError(f"need lesion scale > 0 and 0 <= contrast <= 1, got {self}")


@dataclass(frozen=True)
class Person:
    """What stays the same across one capture session's shots."""

    skin: np.ndarray
    hair_color: np.ndarray
    hair_width: int
    hair_flow: float


def sample_person(rng: np.random.Generator) -> Person:
    """Draws one person's skin tone, hair colour, hair width and combing direction."""
    skin = np.array([0.86, 0.70, 0.62]) + rng.normal(0, 0.035, 3)
    hair_color = np.array([0.10, 0.08, 0.07]) + rng.uniform(0, 0.18) * np.array([1, 0.8, 0.6])
    return Person(skin, hair_color, int(rng.integers(2, 5)), float(rng.uniform(0, 2 * np.pi)))


def sample_session_grades(n_shots: int, rng: np.random.Generator) -> np.ndarray:
    """Grades of one session's shots, shape ``[n_shots, 6]``.

    Each shot keeps the person's grade of an indicator with probability ``KEEP_PERSON_GRADE``
    and otherwise draws afresh, so every marginal stays the study's Table 1 distribution.
    """
    person = _draw_grades(rng, 1)
    fresh = _draw_grades(rng, n_shots)
    keep = rng.random((n_shots, NUM_INDICATORS)) < KEEP_PERSON_GRADE
    return np.where(keep, person, fresh)


def _draw_grades(rng: np.random.Generator, n: int) -> np.ndarray:
    cumulative = GRADE_PROBABILITIES.cumsum(axis=1)
    draws = rng.random((n, NUM_INDICATORS, 1))
    return (draws > cumulative[None, :, :-1]).sum(axis=2)


def render_scalp(
    grades: Sequence[int],
    person: Person,
    rng: np.random.Generator,
    lesions: Lesions = Lesions(),
) -> np.ndarray:
    """Renders one 640x480 RGB scalp close-up (uint8) showing the six ``grades``.

    ``lesions`` changes sizes and opacities, not the random draws, so one seed shows the same
    scene at every lesion setting unless hair loss is graded above 0 (its hair differs).
    """
    microkeratin, sebum, erythema, pustule, dandruff, hair_loss = (int(g) for g in grades)
    scale, contrast = lesions.scale, lesions.contrast
    image = person.skin * (1 + 0.10 * _smooth_noise(rng, 24)[..., None] - 0.05)
    image += rng.normal(0, 0.025, (HEIGHT, WIDTH, 1))
    coverage, strength = REDNESS[erythema]
    if coverage:
        # A higher threshold of the same noise leaves smaller islands of redness.
        blotches = np.clip((_smooth_noise(rng, 48) - (1 - coverage * scale)) * 4, 0, 1)
        _blend(image, blotches * (strength * contrast), (0.86, 0.22, 0.24))
    follicles = _follicle_positions(rng)
    # Exact at contrast 1, where the hair drawn is the table's.
    haired = HAIRED_FOLLICLES[0] * (1 - contrast) + HAIRED_FOLLICLES[hair_loss] * contrast
    _draw_follicles(image, follicles, rng, haired, person)
    _draw_pustules(image, follicles, rng, PUSTULES[pustule], lesions)
    if SHEEN[sebum]:
        sheen = np.clip((_smooth_noise(rng, 40) - 0.35) * 2.5, 0, 1)
        _blend(image, sheen * (SHEEN[sebum] * contrast), (1.0, 0.96, 0.78))
    _draw_specks(image, rng, SPECKS[microkeratin], lesions)
    _draw_flakes(image, rng, FLAKES[dandruff], lesions)
    return _light_and_quantise(image, rng)


def _smooth_noise(rng: np.random.Generator, cell: int) -> np.ndarray:
    """Low-frequency noise in [0, 1] of the image's size, with blobs about ``cell`` px wide."""
    coarse = rng.random((HEIGHT // cell + 3, WIDTH // cell + 3)).astype(np.float32)
    big = cv2.resize(coarse, (WIDTH + 3 * cell, HEIGHT + 3 * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[cell : cell + HEIGHT, cell : cell + WIDTH], 0, 1)


def _blend(image: np.ndarray, alpha: np.ndarray, color: Sequence[float]) -> None:
    """Blends ``color`` into ``image`` in place with a per-pixel opacity map."""
    alpha = alpha[..., None]
    image *= 1 - alpha
    image += alpha * np.asarray(color, dtype=np.float32)


def _follicle_positions(rng: np.random.Generator, spacing: int = 52) -> np.ndarray:
    ys, xs = np.mgrid[spacing // 2 : HEIGHT : spacing, spacing // 2 : WIDTH : spacing]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)
    return grid + rng.uniform(-spacing / 3, spacing / 3, grid.shape)


def _draw_follicles(
    image: np.ndarray,
    follicles: np.ndarray,
    rng: np.random.Generator,
    haired_share: float,
    person: Person,
) -> None:
    hair = np.zeros((HEIGHT, WIDTH), np.float32)
    dots = np.zeros_like(hair)
    for x, y in follicles:
        cv2.circle(dots, (int(x), int(y)), 3, 1.0, -1)
        if rng.random() > haired_share:
            continue
        for _ in range(int(rng.integers(1, 3))):
            angle = person.hair_flow + rng.normal(0, 0.35)
            length = rng.uniform(110, 300)
            bend = rng.normal(0, 0.4)
            t = np.linspace(0, 1, 12)[:, None]
            direction = np.stack([np.cos(angle + bend * t[:, 0]), np.sin(angle + bend * t[:, 0])])
            points = np.array([x, y]) + length * t * direction.T
            cv2.polylines(hair, [points.astype(np.int32)], False, 1.0, person.hair_width)
    _blend(image, dots * 0.35, (0.45, 0.32, 0.28))
    _blend(image, hair * 0.92, person.hair_color)


def _pixels(length: float, scale: float) -> int:
    """A length in whole pixels after scaling, at least one."""
    return max(1, round(length * scale))


def _draw_pustules(
    image: np.ndarray,
    follicles: np.ndarray,
    rng: np.random.Generator,
    count: int,
    lesions: Lesions,
) -> None:
    if not count:
        return
    scale, contrast = lesions.scale, lesions.contrast
    halo = np.zeros((HEIGHT, WIDTH), np.float32)
    ring = np.zeros_like(halo)
    core = np.zeros_like(halo)
    for index in rng.choice(len(follicles), size=min(count, len(follicles)), replace=False):
        centre = tuple(int(v) for v in follicles[index])
        radius = int(rng.integers(12, 18))
        cv2.circle(halo, centre, _pixels(radius + 6, scale), 1.0, -1)
        cv2.circle(ring, centre, _pixels(radius, scale), 1.0, _pixels(5, scale))
        cv2.circle(core, centre, _pixels(int(rng.integers(5, 9)), scale), 1.0, -1)
    _blend(image, cv2.GaussianBlur(halo, (0, 0), 4 * scale) * (0.45 * contrast), (0.9, 0.3, 0.3))
    _blend(image, ring * (0.85 * contrast), (0.78, 0.12, 0.14))
    _blend(image, core * (0.95 * contrast), (0.98, 0.93, 0.62))


def _draw_specks(image: np.ndarray, rng: np.random.Generator, count: int, lesions: Lesions) -> None:
    """Fine greyish scale in clusters of about 25 specks: dull grey patches when downscaled."""
    specks = np.zeros((HEIGHT, WIDTH), np.float32)
    centres = rng.uniform((0, 0), (WIDTH, HEIGHT), (max(count // 25, 1), 2))
    points = centres[rng.integers(len(centres), size=count)] + rng.normal(0, 11, (count, 2))
    for x, y in points.astype(int):
        radius = _pixels(int(rng.integers(2, 5)), lesions.scale)
        cv2.circle(specks, (int(x), int(y)), radius, 1.0, -1)
    _blend(image, np.minimum(specks, 1) * (0.8 * lesions.contrast), (0.8, 0.8, 0.79))


def _draw_flakes(image: np.ndarray, rng: np.random.Generator, count: int, lesions: Lesions) -> None:
    flakes = np.zeros((HEIGHT, WIDTH), np.float32)
    for _ in range(count):
        centre = rng.uniform((0, 0), (WIDTH, HEIGHT))
        size = rng.uniform(12, 32) * lesions.scale
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        radii = size * rng.uniform(0.5, 1.0, 7)
        polygon = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        cv2.fillPoly(flakes, [polygon.astype(np.int32)], 1.0)
    _blend(image, flakes * (0.92 * lesions.contrast), (0.98, 0.97, 0.92))


def _light_and_quantise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Adds microscope vignetting, exposure, white balance, sensor noise and blur."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    radius = np.hypot(xs - WIDTH / 2, ys - HEIGHT / 2) / np.hypot(WIDTH / 2, HEIGHT / 2)
    vignette = 1 - rng.uniform(0.15, 0.4) * radius**2
    gains = rng.uniform(0.88, 1.12) * (1 + rng.normal(0, 0.025, 3))
    image = image * vignette[..., None].astype(np.float32) * gains.astype(np.float32)
    image += rng.normal(0, 0.012, image.shape).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.0))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


@dataclass(frozen=True)
class SessionPlan:
    """One capture session to render: who, where, when, and how many shots."""

    site: str
    device: str
    timestamp_ms: int
    n_shots: int
    subset: str
    seed: np.random.SeedSequence


def plan_sessions(
    n_images: int, seed: int, validation_fraction: float, max_shots: int = len(SHOTS)
) -> list[SessionPlan]:
    """Splits ``n_images`` into capture sessions of up to ``max_shots`` shots of one person."""
    rng = np.random.default_rng(seed)
    sites = [f"{number:04d}" for number in rng.choice(10_000, size=24, replace=False)]
    letters = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"))
    devices = ["".join(rng.choice(letters, size=15)) for _ in range(40)]
    timestamp = 1_606_386_139_601
    plans: list[SessionPlan] = []
    remaining = n_images
    seeds = iter(np.random.SeedSequence(seed).spawn(n_images))
    while remaining > 0:
        shots = max_shots if rng.random() < 0.75 else int(rng.integers(2, max_shots + 1))
        shots = min(shots, remaining)
        device = int(rng.integers(len(devices)))
        subset = "Validation" if rng.random() < validation_fraction else "Training"
        timestamp += int(rng.integers(60_000, 3_600_000))
        plans.append(
            SessionPlan(
                sites[device % len(sites)],
                devices[device],
                timestamp,
                shots,
                subset,
                next(seeds),
            )
        )
        remaining -= shots
    return plans


def condition_folder(indicator_index: int, grade: int) -> str:
    """The AI Hub folder name of one (indicator, grade), e.g. ``미세각질_1.경증``."""
    korean = INDICATORS[indicator_index].korean.replace("/", "")
    return f"{korean}_{grade}.{GRADES_KOREAN[grade]}"


def write_session(
    plan: SessionPlan,
    out_dir: Path,
    duplicate_fraction: float,
    quality: int,
    render: Callable[[np.ndarray, Person, np.random.Generator], np.ndarray] = render_scalp,
) -> int:
    """Renders and writes one session's JPEGs and JSON labels; returns the files written.

    ``render`` draws one shot from its grades (benchmarks of indexing, which never look at
    the pixels, pass a faster one).
    """
    rng = np.random.default_rng(plan.seed)
    person = sample_person(rng)
    grades = sample_session_grades(plan.n_shots, rng)
    written = 0
    for (shot, region), shot_grades in zip(SHOTS, grades, strict=False):
        name = f"{plan.site}_{plan.device}_{plan.timestamp_ms}_{shot}_{region}"
        image = render(shot_grades, person, rng)
        label = {"image_id": name, "image_file_name": f"{name}.jpg"}
        label |= {ind.key: str(int(g)) for ind, g in zip(INDICATORS, shot_grades, strict=True)}
        # Filed under its most severe condition, sometimes also under the second one, as in
        # the real download, where 4,754 images appear in two condition folders.
        order = np.argsort(-shot_grades, kind="stable")
        filed_under = order[:2] if rng.random() < duplicate_fraction else order[:1]
        jpeg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        for indicator_index in filed_under:
            folder = condition_folder(int(indicator_index), int(shot_grades[indicator_index]))
            image_dir = out_dir / plan.subset / "01.원천데이터" / f"[원천]{folder}"
            label_dir = out_dir / plan.subset / "02.라벨링데이터" / f"[라벨]{folder}"
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            (image_dir / f"{name}.jpg").write_bytes(jpeg.tobytes())
            (label_dir / f"{name}.json").write_text(json.dumps(label, ensure_ascii=False))
            written += 1
    return written


def generate(
    out_dir: str | Path,
    n_images: int,
    seed: int = 0,
    validation_fraction: float = 0.1,
    duplicate_fraction: float = 0.05,
    jpeg_quality: int = 92,
    workers: int = 0,
    archives: bool = False,
    lesion_scale: float = 1.0,
    lesion_contrast: float = 1.0,
) -> Path:
    """Writes a synthetic AI Hub-style dataset of ``n_images`` distinct images.

    An existing complete dataset with the same parameters is reused. A folder left by an
    interrupted or differently parameterised run of this generator is cleared first; any
    other non-empty folder is refused, so real data is never overwritten.

    Args:
        out_dir: Dataset root; gets ``Training/`` and ``Validation/`` like the real download.
        n_images: Number of distinct images (sessions of up to five shots).
        seed: Seed of everything random; the same seed gives byte-identical files.
        validation_fraction: Share of sessions filed under ``Validation/``.
        duplicate_fraction: Share of images filed under a second condition folder too.
        jpeg_quality: JPEG quality of the written images.
        workers: Processes rendering in parallel; 0 uses every available core.
        archives: Pack each condition folder into a zip archive, as the download comes.
        lesion_scale: Size multiplier of the lesions (see :class:`Lesions`).
        lesion_contrast: Opacity multiplier of every cue against the skin (see :class:`Lesions`).

    Returns:
        The dataset root.
    """
    root = Path(out_dir)
    lesions = Lesions(lesion_scale, lesion_contrast)
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_images": n_images,
        "seed": seed,
        "validation_fraction": validation_fraction,
        "duplicate_fraction": duplicate_fraction,
        "jpeg_quality": jpeg_quality,
        "archives": archives,
        "lesion_scale": lesion_scale,
        "lesion_contrast": lesion_contrast,
    }
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        log.info("Synthetic dataset already complete at %s", root)
        return root
    _clear_own_output(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / IN_PROGRESS).touch()
    plans = plan_sessions(n_images, seed, validation_fraction)
    workers = workers or len(os.sched_getaffinity(0))
    write = partial(
        write_session,
        out_dir=root,
        duplicate_fraction=duplicate_fraction,
        quality=jpeg_quality,
        render=partial(render_scalp, lesions=lesions),
    )
    with WorkerPool(workers) as pool:
        jobs = pool.imap(write, plans)
        files = sum(progress(jobs, f"Rendering {n_images} images", total=len(plans)))
    if archives:
        pack_archives(root)
    atomic_write_text(marker, json.dumps(params, indent=2))
    (root / IN_PROGRESS).unlink()
    log.info("Wrote %d images (%d files, %d sessions) to %s", n_images, files, len(plans), root)
    return root


def _clear_own_output(root: Path) -> None:
    if not root.exists() or not any(root.iterdir()):
        return
    if not ((root / MARKER).exists() or (root / IN_PROGRESS).exists()):
        raise FileExistsError(
            f"{root} is not empty and was not written by the synthetic generator; "
            "choose an empty or new out_dir"
        )
    log.info("Clearing the earlier synthetic dataset at %s", root)
    for subset in SUBSETS:
        shutil.rmtree(root / subset, ignore_errors=True)
    (root / MARKER).unlink(missing_ok=True)


class _CP949Member(zipfile.ZipInfo):
    """A zip entry whose name is stored in CP949 without the UTF-8 flag (Korean Windows)."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # overrides zipfile (private API)
        return self.filename.encode("cp949"), self.flag_bits


def pack_archives(root: Path) -> list[Path]:
    """Replaces every condition folder of ``root`` by a zip archive of the same name.

    ``Training/01.원천데이터/[원천]비듬_2.중등도/x.jpg`` becomes the member
    ``[원천]비듬_2.중등도/x.jpg`` of ``Training/01.원천데이터/[원천]비듬_2.중등도.zip``. Images
    are stored, labels deflated; member names are CP949 bytes without the UTF-8 flag.

    Returns:
        The archives written.
    """
    written = []
    for folder in sorted(path for path in root.glob("*/*/*") if path.is_dir()):
        archive = folder.with_name(f"{folder.name}.zip")
        with zipfile.ZipFile(archive, "w") as bundle:
            for file in sorted(folder.iterdir()):
                member = _CP949Member(f"{folder.name}/{file.name}", date_time=(2021, 6, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED if file.suffix == ".json" else 0
                bundle.writestr(member, file.read_bytes())
        shutil.rmtree(folder)
        written.append(archive)
    return written


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="synthetic")
def main(cfg: DictConfig) -> None:
    """Command-line entry: ``python -m scalp_ml.data.synthetic out_dir=... n_images=...``."""
    generate(**cfg)


def cli() -> None:
    """Console script (and ``python -m``): the command, or its help with ``--help``."""
    run_command(main, "synthetic")


if __name__ == "__main__":
    cli()
