"""Damaged and hostile data files (issue "Nothing lost, nothing leaked, nothing hung"): each is
named, and each skip policy applies to it, instead of a raw library error or grey pixels."""

import io
import json
import logging
import re
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from scalp_ml.data.aihub.index import load_manifest, load_or_build_index
from scalp_ml.data.aihub.reader import Download, list_files, member_name
from scalp_ml.data.images import MAX_PIXELS, BadImageError, decode_rgb, probe
from scalp_ml.data.synthetic import generate
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("folders"), n_images=10, seed=4, workers=1)


@pytest.fixture
def download(folders: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folders, tmp_path / "download"))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels and holds none: a decompression bomb's
    header, without the gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def scribble(data: bytes, count: int = 2000, seed: int = 0) -> bytes:
    """``count`` random bytes written into the middle of ``data``."""
    middle = len(data) // 2
    noise = np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()
    return data[:middle] + noise + data[middle + count :]


def test_random_bytes_in_a_jpeg_that_libjpeg_only_warns_about_are_refused(folders: Path) -> None:
    import cv2

    damaged = scribble(next(folders.rglob("*.jpg")).read_bytes())
    assert cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR) is not None  # grey
    with pytest.raises(BadImageError, match=r"^a/b\.jpg: cannot decode .*libjpeg reports"):
        decode_rgb(damaged, "a/b.jpg")


def test_verification_finds_a_jpeg_with_random_bytes_in_the_middle(download: Path) -> None:
    victim = sorted(download.rglob("*.jpg"))[2]
    victim.write_bytes(scribble(victim.read_bytes()))
    index = load_or_build_index(download, verify_images=True, show_progress=False)
    problems = index.manifest.set_index("image")["image_problem"]
    location = victim.relative_to(download).as_posix()
    assert "libjpeg reports" in problems[location] and (problems.drop(location) == "").all()
    with pytest.raises(BadImageError, match="1 unusable images"):
        load_manifest(download)
    assert location not in set(load_manifest(download, on_bad_image="skip")["image"])


def test_an_image_of_too_many_pixels_is_refused_from_its_header() -> None:
    side = int(MAX_PIXELS**0.5) + 1
    bomb = png_header(side, side)
    with pytest.raises(BadImageError, match=rf"^big\.png: {side}x{side} pixels, more than"):
        probe(io.BytesIO(bomb), len(bomb), "big.png")
    with pytest.raises(BadImageError, match=r"MAX_IMAGE_PIXELS\); not decoded"):
        decode_rgb(bomb, "big.png")
    huge = png_header(40000, 40000)  # over twice the limit: Pillow's own DecompressionBombError
    with pytest.raises(BadImageError, match=r"^huge\.png: "):
        probe(io.BytesIO(huge), len(huge), "huge.png")


def test_an_oversized_image_in_the_data_is_skipped_by_the_image_policy(download: Path) -> None:
    victim = sorted(download.rglob("*.jpg"))[5]
    victim.write_bytes(png_header(20000, 20000))
    with pytest.raises(BadImageError, match="1 unusable images"):
        load_manifest(download)
    assert len(load_manifest(download, on_bad_image="skip")) == 9


def test_predict_grades_a_folder_around_an_oversized_photo(
    best_checkpoint: Path, folders: Path, tmp_path: Path
) -> None:
    from scalp_ml.inference.prediction import predict

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(next(folders.rglob("*.jpg")), photos / "fine.jpg")
    (photos / "bomb.png").write_bytes(png_header(40000, 40000))
    cfg = compose_config("predict", [f"ckpt_path={best_checkpoint}", f"inputs={photos}"])
    records = predict(cfg.ckpt_path, cfg.inputs, tmp_path / "out", False, "cpu", 4)
    errors = {Path(record["file"]).name: record["error"] for record in records}
    assert not errors["fine.jpg"] and "bomb.png: too large to decode" in errors["bomb.png"]


def rezip(archive: Path, damage: dict[str, bytes]) -> None:
    """Rewrites ``archive`` uncompressed, replacing the stored bytes of the members in
    ``damage`` after their CRC was recorded: a bad CRC, as a failing disk or download leaves."""
    with zipfile.ZipFile(archive) as source:
        members = [(member_name(info), source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as target:
        for name, data in members:
            target.writestr(name, data)
    content = archive.read_bytes()
    for name, data in members:
        if name in damage:
            start = content.index(data)
            content = content[:start] + damage[name] + content[start + len(data) :]
    archive.write_bytes(content)


def test_a_bad_crc_is_named_and_the_skip_policies_apply(tmp_path: Path) -> None:
    root = generate(tmp_path / "zips", n_images=10, seed=4, workers=1, archives=True)
    index = load_or_build_index(root, show_progress=False)
    image = index.manifest.iloc[1]["image"]
    archive, member = image.split("::")
    rezip(root / archive, {member: scribble(Download(root).read(image), count=50)})
    with pytest.raises(OSError, match=rf"{re.escape(image)}: damaged archive member .*CRC"):
        Download(root).read(image)
    verified = load_or_build_index(root, verify_images=True, show_progress=False).manifest
    assert "damaged archive member" in verified.set_index("image")["image_problem"][image]
    assert len(load_manifest(root, on_bad_image="skip")) == 9

    labels = next(path for path in root.rglob("*.zip") if "라벨" in path.name)
    with zipfile.ZipFile(labels) as bundle:
        first = bundle.infolist()[0]
        text = bundle.read(first)
    rezip(labels, {member_name(first): text.replace(b"0", b"1", 1)})
    report = load_or_build_index(root, show_progress=False).report
    assert any("damaged archive member" in problem for problem in report.bad_labels)


def test_dangling_and_looping_links_are_left_out_with_a_warning(
    download: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (download / "dangling.jpg").symlink_to(download / "nowhere.jpg")
    (download / "loop.json").symlink_to(download / "loop.json")
    with caplog.at_level(logging.WARNING):
        files = {file.path for file in list_files(download)}
    assert "dangling.jpg" not in files and "loop.json" not in files
    assert "dangling.jpg: a link that leads nowhere" in caplog.text
    assert "loop.json: a link that leads nowhere" in caplog.text
    assert len(load_manifest(download)) == 10


def test_a_truncated_index_record_is_rebuilt_with_a_warning(
    download: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from scalp_ml.data.aihub.index import default_manifest_path

    load_or_build_index(download, show_progress=False)
    record = default_manifest_path(download).with_suffix(".json")
    record.write_text(record.read_text()[:100])
    with caplog.at_level(logging.WARNING):
        assert len(load_or_build_index(download, show_progress=False).manifest) == 10
    assert f"{record} is not readable JSON" in caplog.text
    assert json.loads(record.read_text())["images"] == 10  # written whole again
