from pathlib import Path
from types import SimpleNamespace
from typing import Any

import albumentations as A
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.data.device_augment import DeviceAugmentation
from scalp_ml.data.gpu_decode import letterbox_tensor
from scalp_ml.data.images import read_rgb
from scalp_ml.data.transforms import build_transform, letterbox
from tests.conftest import FAST, compose_train

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 128
NO_JITTER = {"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0, "p": 0}
NO_AFFINE = {"rotate": [0, 0], "scale": [1, 1], "p": 0}


def augment_values(flip: float = 0, jitter: dict | None = None, affine: dict | None = None):
    return {
        "horizontal_flip": flip,
        "color_jitter": {**NO_JITTER, **(jitter or {})},
        "affine": {**NO_AFFINE, **(affine or {})},
    }


@pytest.fixture(scope="module")
def photos(synthetic_root: Path) -> np.ndarray:
    """Four letterboxed synthetic scalp photographs, uint8 ``[4, S, S, 3]``."""
    files = sorted(synthetic_root.rglob("*.jpg"))[:4]
    box = A.Compose(letterbox(SIZE))
    return np.stack([box(image=read_rgb(path))["image"] for path in files])


def on_device(photos: np.ndarray, augment: Any, train: bool = True) -> torch.Tensor:
    batch = torch.from_numpy(photos).permute(0, 3, 1, 2).contiguous()
    return DeviceAugmentation(MEAN, STD, augment)(batch, train=train)


def on_cpu(photos: np.ndarray, augment: Any) -> torch.Tensor:
    transform = build_transform(SIZE, MEAN, STD, augment, letterboxed=True)
    return torch.stack([transform(image=photo)["image"] for photo in photos])


def unnormalise(images: torch.Tensor) -> torch.Tensor:
    return images * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


def test_cpu_and_device_paths_give_the_same_shape_dtype_and_range(photos: np.ndarray) -> None:
    augment = compose_train(["run_dir=/tmp/unused"]).data.augment
    low = min((0 - m) / s for m, s in zip(MEAN, STD, strict=True)) - 1e-5
    high = max((1 - m) / s for m, s in zip(MEAN, STD, strict=True)) + 1e-5
    cpu, device = on_cpu(photos, augment), on_device(photos, augment)
    assert cpu.shape == device.shape == (4, 3, SIZE, SIZE)
    assert cpu.dtype == device.dtype == torch.float32
    for images in (cpu, device):
        assert low <= images.min() and images.max() <= high
    # Evaluation: no augmentation, the same normalisation as albumentations'
    evaluation = on_device(photos, augment, train=False)
    assert torch.allclose(evaluation, on_cpu(photos, None), atol=1e-5)


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
    original = unnormalise(on_cpu(photos, None))
    device, cpu = unnormalise(on_device(photos, augment)), unnormalise(on_cpu(photos, augment))
    assert (device - original).abs().mean() > changed  # the augmentation did something
    assert (device - cpu).abs().mean() < 0.25 * (cpu - original).abs().mean()  # the same thing


def test_brightness_shifts_the_mean(photos: np.ndarray) -> None:
    original = float(unnormalise(on_cpu(photos, None)).mean())

    def brightness(factor: float) -> torch.Tensor:
        augment = augment_values(jitter={"brightness": [factor, factor], "p": 1})
        return unnormalise(on_device(photos, augment))

    brighter, darker = brightness(1.2), brightness(0.8)
    assert float(darker.mean()) == pytest.approx(0.8 * original, rel=0.01)
    assert brighter.mean() > 1.1 * original  # x1.2, less what clips at white


def test_letterbox_on_the_device_matches_albumentations(photos: np.ndarray) -> None:
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(image[::8, ::8], 8, 0), 8, 1))  # blocks
    expected = torch.from_numpy(A.Compose(letterbox(448))(image=image)["image"]).permute(2, 0, 1)
    boxed = letterbox_tensor(torch.from_numpy(image).permute(2, 0, 1), 448)
    assert boxed.shape == (3, 448, 448) and boxed.dtype == torch.uint8
    assert torch.all(boxed[:, :56] == 0) and torch.all(boxed[:, -56:] == 0)
    assert (boxed.float() - expected.float()).abs().mean() < 2.0


def datamodule(root: Path, *overrides: str) -> ScalpDataModule:
    cfg = compose_train([*FAST, f"data.root={root}", "run_dir=/tmp/unused", *overrides])
    module = ScalpDataModule(**OmegaConf.to_container(cfg.data, resolve=True))
    module.prepare_data()
    module.setup()
    module.trainer = SimpleNamespace(
        training=False, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )
    return module


def device_batch(module: ScalpDataModule) -> dict[str, Any]:
    batch = next(iter(module.val_dataloader()))
    return module.on_after_batch_transfer(module.on_before_batch_transfer(batch, 0), 0)


def test_evaluation_batches_are_normalised_on_the_device(synthetic_root: Path) -> None:
    on_cpu = next(
        iter(datamodule(synthetic_root, "+data.normalize_on_device=false").val_dataloader())
    )
    assert on_cpu["image"].dtype == torch.float32
    for augment_on in ("cpu", "gpu"):
        module = datamodule(synthetic_root, f"data.augment_on={augment_on}")
        uint8 = next(iter(module.val_dataloader()))
        assert uint8["image"].dtype == torch.uint8  # 4x less to copy to the device
        assert torch.allclose(device_batch(module)["image"], on_cpu["image"], atol=1e-5)
    cpu = device_batch(datamodule(synthetic_root))
    decoded = device_batch(datamodule(synthetic_root, "data.augment_on=gpu", "data.decode_on=gpu"))
    assert decoded["image"].shape == cpu["image"].shape and decoded["name"] == cpu["name"]
    assert (decoded["image"] - cpu["image"]).abs().mean() < 0.05  # area resize vs OpenCV's


def test_bad_pipeline_settings_are_named(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.decode_on=gpu needs data\.augment_on=gpu"):
        datamodule(synthetic_root, "data.decode_on=gpu")
    with pytest.raises(ValueError, match=r"data\.augment_on='tpu'"):
        datamodule(synthetic_root, "data.augment_on=tpu")


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
