import json
import multiprocessing
import os
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from torch.utils.data import DataLoader

from scalp_ml.data import cache as cache_module
from scalp_ml.data.cache import CacheFiles, is_current, manifest_key, open_cache
from scalp_ml.data.images import letterbox, read_rgb
from tests.conftest import FAST, compose_train


def write_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{index}.jpg"), image)
        names.append(f"img{index}.jpg")
    return names


def letterboxed(path: Path, size: tuple[int, int]) -> np.ndarray:
    return letterbox(read_rgb(path), *size)


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, list[str]]:
    return tmp_path / "data", write_images(tmp_path / "data", 40)


def test_cache_rows_equal_the_letterboxed_jpegs_and_are_reused(
    images: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, paths = images
    cache_dir = tmp_path / "cache"
    decoded = open_cache(root, paths, (48, 48), cache_dir, workers=2)
    assert len(decoded) == 40
    for path in (paths[0], paths[17], paths[-1]):
        assert np.array_equal(decoded[path], letterboxed(root / path, (48, 48)))
    sidecar = json.loads(CacheFiles.at(cache_dir, (48, 48)).sidecar.read_text())
    assert sidecar["key"] == manifest_key(root, paths, (48, 48)) and sidecar["count"] == 40

    def no_build(*args: object) -> None:
        raise AssertionError("a current cache was rebuilt")

    monkeypatch.setattr(cache_module, "build_cache", no_build)
    reordered = open_cache(root, paths[::-1], (48, 48), cache_dir, workers=2)  # same content
    assert np.array_equal(reordered[paths[3]], letterboxed(root / paths[3], (48, 48)))


def test_reader_pickles_without_pixels_and_works_in_loader_processes(
    images: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, paths = images
    decoded = open_cache(root, paths, (48, 48), tmp_path / "cache", workers=1)
    decoded[paths[0]]  # opens the file in this process
    assert len(pickle.dumps(decoded)) < 4096  # 40 rows of 48x48x3 would be 276 kB

    class Rows:
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, index: int) -> np.ndarray:
            return decoded[paths[index]]

    loaded = np.concatenate(list(DataLoader(Rows(), batch_size=8, num_workers=2)))
    expected = np.stack([letterboxed(root / path, (48, 48)) for path in paths])
    assert np.array_equal(loaded, expected)


def test_concurrent_runs_share_one_build(
    images: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, paths = images
    cache_dir, builds = tmp_path / "cache", tmp_path / "builds.txt"
    build = cache_module.build_cache

    def counted_build(*args: object) -> None:
        with builds.open("a") as log:
            log.write("build\n")
        build(*args)

    monkeypatch.setattr(cache_module, "build_cache", counted_build)  # forked processes see it
    fork = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(3, mp_context=fork) as pool:  # like DDP ranks or sweep trials
        runs = [pool.submit(open_cache, root, paths, (48, 48), cache_dir, 1) for _ in range(3)]
        decoded = [run.result() for run in runs]
    assert builds.read_text() == "build\n"
    assert all(np.array_equal(d[paths[9]], letterboxed(root / paths[9], (48, 48))) for d in decoded)


def test_changed_image_or_size_rebuilds_the_cache(
    images: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, paths = images
    cache_dir = tmp_path / "cache"
    open_cache(root, paths, (48, 48), cache_dir, workers=1)
    files = CacheFiles.at(cache_dir, (48, 48))
    first_key = json.loads(files.sidecar.read_text())["key"]
    replacement = np.full((480, 640, 3), 200, dtype=np.uint8)
    cv2.imwrite(str(root / paths[5]), replacement)  # same path, new content, size and mtime
    rebuilt = open_cache(root, paths, (48, 48), cache_dir, workers=1)
    assert json.loads(files.sidecar.read_text())["key"] != first_key
    assert np.array_equal(rebuilt[paths[5]], letterboxed(root / paths[5], (48, 48)))
    fewer = open_cache(root, paths[:30], (48, 48), cache_dir, workers=1)  # manifest lost images
    assert len(fewer) == 30 and not is_current(files, first_key)
    larger = open_cache(root, paths, (64, 64), cache_dir, workers=1)  # another size: its own file
    assert larger[paths[0]].shape == (64, 64, 3)
    rectangular = open_cache(root, paths, (36, 48), cache_dir, workers=1)  # native 3:4 input
    assert np.array_equal(rectangular[paths[1]], letterboxed(root / paths[1], (36, 48)))
    assert (cache_dir / "images-36x48px.npy").is_file()
    assert is_current(CacheFiles.at(cache_dir, (48, 48)), manifest_key(root, paths[:30], (48, 48)))


def test_interrupted_build_leaves_no_trusted_cache(
    images: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, paths = images
    cache_dir = tmp_path / "cache"
    open_cache(root, paths, (48, 48), cache_dir, workers=2)
    files = CacheFiles.at(cache_dir, (48, 48))
    (root / paths[25]).write_bytes(b"not a jpeg")  # the rebuild fails on this image
    with pytest.raises(OSError, match=paths[25]):
        open_cache(root, paths, (48, 48), cache_dir, workers=2)
    assert not files.sidecar.exists()  # the old cache is no longer trusted either
    assert not list(cache_dir.glob(".*.tmp"))
    # A build killed after its array was renamed but before the sidecar: rebuilt, not trusted.
    cv2.imwrite(str(root / paths[25]), np.zeros((480, 640, 3), np.uint8))
    decoded = open_cache(root, paths, (48, 48), cache_dir, workers=1)
    files.sidecar.unlink()
    (cache_dir / f".{files.array.name}.999999.tmp").write_bytes(b"killed build")
    mtime = files.array.stat().st_mtime_ns
    decoded = open_cache(root, paths, (48, 48), cache_dir, workers=1)
    assert files.array.stat().st_mtime_ns != mtime and files.sidecar.exists()
    assert not list(cache_dir.glob(".*.tmp"))
    assert np.array_equal(decoded[paths[25]], np.zeros((48, 48, 3), np.uint8))


def test_refuses_to_build_without_disk_room(
    images: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, paths = images
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=100_000))
    with pytest.raises(OSError, match=r"needs 0\.03 GB.*has 0\.00 GB free.*data\.cache_dir"):
        open_cache(root, paths, (480, 480), tmp_path / "cache", workers=1)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock"]


def test_missing_image_is_named(images: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, paths = images
    os.remove(root / paths[3])
    with pytest.raises(FileNotFoundError, match=f"{paths[3]} of the manifest is missing"):
        open_cache(root, paths, (48, 48), tmp_path / "cache", workers=1)


def test_training_on_the_cache_matches_training_on_jpegs(
    synthetic_root: Path, demo_run: tuple[Path, dict], tmp_path: Path
) -> None:
    from scalp_ml.train import train

    _, on_jpegs = demo_run
    cfg = compose_train(
        [
            *FAST,
            f"data.root={synthetic_root}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.cache=memmap",
            f"run_dir={tmp_path / 'run'}",
            "trainer.max_epochs=2",
        ]
    )
    on_cache = train(cfg)
    assert (tmp_path / "cache" / "images-64px.npy").stat().st_size > 240 * 64 * 64 * 3
    for key in ("val/macro_f1", "val/hamming_acc", "test/macro_f1"):
        assert on_cache[key] == pytest.approx(on_jpegs[key], abs=0.05), key
