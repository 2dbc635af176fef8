from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.data.device_augment import DeviceAugmentation
from scalp_ml.data.gpu_decode import letterbox_tensor
from scalp_ml.data.images import letterbox, read_rgb
from scalp_ml.data.transforms import augmentation
from tests.conftest import FAST, compose_train

SIZE = 128
NO_JITTER = {"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0, "p": 0}
NO_AFFINE = {"rotate": [0, 0], "scale": [1, 1], "p": 0}


def augment_values(
    flip: float = 0,
    jitter: dict | None = None,
    affine: dict | None = None,
    crop: list[int] | None = None,
):
    return {
        "horizontal_flip": flip,
        "color_jitter": {**NO_JITTER, **(jitter or {})},
        "affine": {**NO_AFFINE, **(affine or {})},
        "crop": crop,
    }


@pytest.fixture(scope="module")
def photos(synthetic_root: Path) -> np.ndarray:
    """Four letterboxed synthetic scalp photographs, uint8 ``[4, S, S, 3]``."""
    files = sorted(synthetic_root.rglob("*.jpg"))[:4]
    return np.stack([letterbox(read_rgb(path), SIZE, SIZE) for path in files])


def on_device(photos: np.ndarray, augment: Any) -> torch.Tensor:
    """Device augmentation, on [0, 1]."""
    batch = torch.from_numpy(photos).permute(0, 3, 1, 2).contiguous()
    return DeviceAugmentation(augment)(batch) / 255


def on_cpu(photos: np.ndarray, augment: Any) -> torch.Tensor:
    """albumentations augmentation (none for ``None``), on [0, 1]."""
    transform = augmentation(augment) if augment is not None else None
    images = [transform(image=photo)["image"] if transform else photo for photo in photos]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def test_cpu_and_device_paths_give_the_same_shape_and_range(photos: np.ndarray) -> None:
    augment = compose_train(["run_dir=/tmp/unused"]).data.augment
    cpu, device = on_cpu(photos, augment), on_device(photos, augment)
    assert cpu.shape == device.shape == (4, 3, SIZE, SIZE)
    assert device.dtype == torch.float32
    for images in (cpu, device):
        assert images.min() >= 0 and images.max() <= 1 + 1e-6


def test_flip_mirrors_the_image(photos: np.ndarray) -> None:
    flipped = on_device(photos, augment_values(flip=1))
    assert torch.allclose(flipped, on_cpu(photos[:, :, ::-1].copy(), None), atol=1e-5)


@pytest.mark.parametrize(
    ("jitter", "affine", "changed"),
    [
        ({"brightness": [1.25, 1.25], "p": 1}, None, 0.05),
        ({"contrast": [1.5, 1.5], "p": 1}, None, 0.03),
        ({"saturation": [0.3, 0.3], "p": 1}, None, 0.01),
        ({"hue": [0.1, 0.1], "p": 1}, None, 0.01),
        (None, {"rotate": [20, 20], "p": 1}, 0.03),
        (None, {"scale": [0.8, 0.8], "p": 1}, 0.03),
    ],
)
def test_each_augmentation_is_applied_like_albumentations(
    photos: np.ndarray, jitter: dict | None, affine: dict | None, changed: float
) -> None:
    augment = augment_values(jitter=jitter, affine=affine)
    original = on_cpu(photos, None)
    device, cpu = on_device(photos, augment), on_cpu(photos, augment)
    assert (device - original).abs().mean() > changed  # the augmentation did something
    assert (device - cpu).abs().mean() < 0.25 * (cpu - original).abs().mean()  # the same thing


def test_training_crops_are_windows_of_the_image_at_random_places(photos: np.ndarray) -> None:
    """data.augment.crop: both paths cut a [h, w] window at a random place, pixels unchanged."""
    original = on_cpu(photos, None)
    for crops in (
        on_cpu(photos, augment_values(crop=[48, 64])),
        on_device(photos, augment_values(crop=[48, 64])),
    ):
        assert crops.shape == (4, 3, 48, 64)
        places = set()
        for image, crop in zip(original, crops, strict=True):
            windows = image.unfold(1, 48, 1).unfold(2, 64, 1)  # [3, rows, cols, 48, 64]
            error = (windows - crop[:, None, None]).abs().amax(dim=(0, 3, 4))
            assert float(error.min()) < 1e-5  # the crop is one window of the image
            places.add(tuple(int(i) for i in np.unravel_index(int(error.argmin()), error.shape)))
        assert len(places) > 1  # at random places


def test_brightness_shifts_the_mean(photos: np.ndarray) -> None:
    original = float(on_cpu(photos, None).mean())

    def brightness(factor: float) -> torch.Tensor:
        augment = augment_values(jitter={"brightness": [factor, factor], "p": 1})
        return on_device(photos, augment)

    brighter, darker = brightness(1.2), brightness(0.8)
    assert float(darker.mean()) == pytest.approx(0.8 * original, rel=0.01)
    assert brighter.mean() > 1.1 * original  # x1.2, less what clips at white


def test_letterbox_on_the_device_matches_the_cpu_letterbox() -> None:
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(image[::8, ::8], 8, 0), 8, 1))  # blocks
    for size in ((448, 448), (384, 512), (480, 640)):
        expected = torch.from_numpy(letterbox(image, *size)).permute(2, 0, 1)
        boxed = letterbox_tensor(torch.from_numpy(image).permute(2, 0, 1), size)
        assert boxed.shape == (3, *size) and boxed.dtype == torch.uint8
        # torch's area resize bins whole pixels, OpenCV's weighs fractions: close, not equal
        assert (boxed.float() - expected.float()).abs().mean() < 5.0
    boxed = letterbox_tensor(torch.from_numpy(image).permute(2, 0, 1), (448, 448))
    assert torch.all(boxed[:, :56] == 0) and torch.all(boxed[:, -56:] == 0)


def datamodule(root: Path, *overrides: str) -> ScalpDataModule:
    cfg = compose_train([*FAST, f"data.root={root}", "run_dir=/tmp/unused", *overrides])
    module = ScalpDataModule(**OmegaConf.to_container(cfg.data, resolve=True))
    module.prepare_data()
    module.setup()
    module.trainer = SimpleNamespace(
        training=False, current_epoch=0, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )
    return module


def training_batch(module: ScalpDataModule) -> dict[str, Any]:
    module.trainer.training = True
    batch = next(iter(module.train_dataloader()))
    return module.on_after_batch_transfer(module.on_before_batch_transfer(batch, 0), 0)


def test_evaluation_batches_are_uint8_and_never_augmented(synthetic_root: Path) -> None:
    reference = next(iter(datamodule(synthetic_root).val_dataloader()))
    assert reference["image"].dtype == torch.uint8  # 4x less to copy; the network normalises
    for overrides in (["data.augment_on=gpu"], ["data.augment_on=gpu", "data.decode_on=gpu"]):
        module = datamodule(synthetic_root, *overrides)
        batch = next(iter(module.val_dataloader()))
        batch = module.on_after_batch_transfer(module.on_before_batch_transfer(batch, 0), 0)
        assert (
            torch.equal(batch["image"], reference["image"]) and batch["name"] == reference["name"]
        )


def test_training_batches_are_augmented_and_decoded_on_the_device(synthetic_root: Path) -> None:
    torch.manual_seed(0)
    module = datamodule(synthetic_root, "data.augment_on=gpu", "data.decode_on=gpu")
    batch = training_batch(module)
    assert isinstance(batch["image"], torch.Tensor) and batch["image"].dtype == torch.float32
    assert batch["image"].shape == (32, 3, 64, 64) and batch["image"].min() >= 0
    unaugmented = torch.stack(
        [
            torch.from_numpy(
                module.datasets["train"][module.datasets["train"].names.index(n)]["image"]
            )
            for n in batch["name"]
        ]
    ).float()
    assert (batch["image"] - unaugmented).abs().mean() > 3  # augmented (0-255 scale)


def test_bad_pipeline_settings_are_named(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.decode_on=gpu needs data\.augment_on=gpu"):
        datamodule(synthetic_root, "data.decode_on=gpu")
    with pytest.raises(ValueError, match=r"data\.augment\.crop=\[48, 96\] does not fit"):
        datamodule(synthetic_root, "data.augment.crop=[48,96]")


@pytest.mark.parametrize("augment_on", ["cpu", "gpu"])
def test_training_batches_are_crops_and_evaluation_sees_the_whole_input(
    synthetic_root: Path, augment_on: str
) -> None:
    module = datamodule(
        synthetic_root, "data.augment.crop=[32,48]", f"data.augment_on={augment_on}"
    )
    assert training_batch(module)["image"].shape == (32, 3, 32, 48)
    assert next(iter(module.val_dataloader()))["image"].shape[1:] == (3, 64, 64)


def test_training_with_device_augmentation_and_decoding(
    synthetic_root: Path, tmp_path: Path
) -> None:
    from scalp_ml.train import train

    cfg = compose_train(
        [
            *FAST,
            f"data.root={synthetic_root}",
            "data.augment_on=gpu",
            "data.decode_on=gpu",
            f"run_dir={tmp_path}",
            "trainer.max_epochs=1",
        ]
    )
    metrics = train(cfg)
    assert 0 <= metrics["test/macro_f1"] <= 1 and (tmp_path / "report.md").is_file()
