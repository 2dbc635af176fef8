"""Index a download once, reuse it while the download is unchanged.

Command: ``python -m scalp_ml.data.aihub.index data.root=/path/to/download`` (an extracted
tree or the folder of downloaded zip archives). Writes ``<root>/.scalp_ml/index/manifest.csv``
(one row per distinct image, see :mod:`scalp_ml.data.aihub.pairing`) and ``manifest.json``
(the download's fingerprint, the indexing report, whether every image was decoded once). Both
are written atomically; the JSON holds the CSV's hash, so a half-updated pair is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import partial
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

import scalp_ml.config
from scalp_ml.atomic import atomic_write_text, check_writable
from scalp_ml.cli import CONF_DIR, run_command
from scalp_ml.data.aihub.pairing import (
    MANIFEST_COLUMNS,
    TEXT_COLUMNS,
    Index,
    IndexReport,
    build_index,
    usable_manifest,
)
from scalp_ml.data.aihub.reader import Download, fingerprint, list_files
from scalp_ml.data.images import decode_rgb
from scalp_ml.progress import progress
from scalp_ml.workers import WorkerPool

log = logging.getLogger(__name__)

INDEX_VERSION = 1  # bump when the manifest's content changes, so old indexes are rebuilt
VERIFY_CHUNK = 256  # images per verification task


def default_manifest_path(root: str | Path) -> Path:
    """Where the manifest is kept beside the data: ``<root>/.scalp_ml/index/manifest.csv``."""
    return Path(root) / ".scalp_ml" / "index" / "manifest.csv"


def load_or_build_index(
    root: str | Path,
    manifest_path: str | Path | None = None,
    verify_images: bool = False,
    show_progress: bool = True,
) -> Index:
    """The download's index: reused when its fingerprint matches, else built and saved.

    Args:
        root: The download (extracted tree, folder of zip archives, or a mix).
        manifest_path: Where to keep the manifest; ``None``: :func:`default_manifest_path`.
        verify_images: Also decode every image once (in parallel, cached), so that corrupt or
            truncated files are known before training rather than met mid-epoch.
        show_progress: Show progress bars.

    Raises:
        FileNotFoundError: ``root`` does not exist, is empty or holds no labels.
        OSError: The manifest's folder is not writable (the message names the path).
    """
    root = Path(root)
    path = Path(manifest_path) if manifest_path else default_manifest_path(root)
    stamp = fingerprint(list_files(root))
    index, verified = _load(path, stamp)
    changed = index is None
    if index is None:
        check_writable(path, "manifest", "data.manifest_file", "/tmp/manifest.csv")
        index = build_index(root, show_progress)
    if verify_images and not verified:
        check_writable(path, "manifest", "data.manifest_file", "/tmp/manifest.csv")
        _verify(root, index.manifest, show_progress)
        verified = changed = True
    if changed:
        _save(path, index, stamp, verified)
    return index


def load_manifest(
    root: str | Path,
    manifest: str | Path | None = None,
    verify_images: bool = False,
    on_conflict: str = "error",
    on_bad_image: str = "error",
    on_bad_label: str = "error",
    show_progress: bool = True,
) -> pd.DataFrame:
    """The usable rows of a download's index.

    See :func:`load_or_build_index` for the index and
    :func:`scalp_ml.data.aihub.usable_manifest` for the policies.
    """
    index = load_or_build_index(root, manifest, verify_images, show_progress)
    return usable_manifest(index, on_conflict, on_bad_image, on_bad_label)


def _load(path: Path, stamp: str) -> tuple[Index | None, bool]:
    """The saved index if it was made by this version from the same download."""
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None, False
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        log.warning("%s is not readable JSON (%s): indexing again", meta_path, error)
        return None, False
    data = path.read_bytes()
    if not isinstance(meta, dict) or not isinstance(meta.get("report"), dict):
        log.warning("%s is not an index record: indexing again", meta_path)
        return None, False
    if (meta.get("version"), meta.get("fingerprint")) != (INDEX_VERSION, stamp):
        log.info("The download changed since %s was written: indexing it again", path)
        return None, False
    if meta.get("manifest_sha256") != hashlib.sha256(data).hexdigest():
        log.warning("%s does not match %s: indexing again", path, meta_path)
        return None, False
    manifest = pd.read_csv(
        path, dtype=dict.fromkeys(TEXT_COLUMNS, str), keep_default_na=False, encoding="utf-8"
    )
    log.info("Reusing the index %s (%d images)", path, len(manifest))
    return Index(manifest, IndexReport(**meta["report"])), bool(meta.get("verified"))


def _save(path: Path, index: Index, stamp: str, verified: bool) -> None:
    data = index.manifest[list(MANIFEST_COLUMNS)].to_csv(index=False)
    atomic_write_text(path, data)
    meta = {
        "version": INDEX_VERSION,
        "fingerprint": stamp,
        "verified": verified,
        "manifest_sha256": hashlib.sha256(data.encode("utf-8")).hexdigest(),
        "images": len(index.manifest),
        "report": index.report.to_dict(),
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1, ensure_ascii=False))
    log.info("Wrote the index %s (%d images)", path, len(index.manifest))


def _verify(root: Path, manifest: pd.DataFrame, shown: bool) -> None:
    """Decodes every image not yet known to be bad; failures go into ``image_problem``."""
    todo = manifest.index[manifest["image_problem"] == ""]
    locations = manifest.loc[todo, "image"].tolist()
    chunks = [locations[i : i + VERIFY_CHUNK] for i in range(0, len(locations), VERIFY_CHUNK)]
    workers = max(1, min(len(os.sched_getaffinity(0)), len(chunks)))
    with WorkerPool(workers) as pool:
        results = pool.imap(partial(_decode_problems, root), chunks)
        if shown:
            description = f"Decoding {len(locations)} images once"
            results = progress(results, description, total=len(chunks), transient=True)
        problems = [problem for chunk in results for problem in chunk]
    manifest.loc[todo, "image_problem"] = problems
    log.info("Decoded %d images: %d unreadable", len(problems), sum(map(bool, problems)))


def _decode_problems(root: Path, locations: list[str]) -> list[str]:
    """Per location, why the image does not decode, or ``""``."""
    download = Download(root)
    problems = []
    for location in locations:
        try:
            decode_rgb(download.read(location), location)
            problems.append("")
        except OSError as error:
            problems.append(str(error))
    download.close()
    return problems


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="index")
def main(cfg: DictConfig) -> None:
    """Command-line entry: ``python -m scalp_ml.data.aihub.index data.root=...``."""
    data = scalp_ml.config.plain(cfg.data)
    manifest = load_manifest(
        data["root"],
        data["manifest_file"],
        data["verify_images"],
        data["on_conflict"],
        data["on_bad_image"],
        data["on_bad_label"],
    )
    log.info(
        "%d usable images in %d sessions; manifest %s",
        len(manifest),
        manifest["session"].nunique(),
        data["manifest_file"] or default_manifest_path(data["root"]),
    )


def cli() -> None:
    """Console script (and ``python -m``): the command, or its help with ``--help``."""
    run_command(main, "index")


if __name__ == "__main__":
    cli()
