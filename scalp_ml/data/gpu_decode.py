"""JPEG decoding on the training device (``data.decode_on=gpu``), a path without a cache.

Loader workers only read file bytes; each batch is decoded at once with nvJPEG
(``torchvision.io.decode_jpeg(device="cuda")``) and letterboxed on the device, just before the
batch would be copied there. On a CPU trainer the same code decodes on the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_jpeg

from scalp_ml.data.dataset import ScalpDataset


class EncodedScalpDataset:
    """The images of a dataset as their files' bytes (a 1-D uint8 array each), decoded later.

    Bytes travel from loader processes as NumPy arrays: pickled through the pipe, not one
    shared-memory file descriptor per image as tensors would be.
    """

    def __init__(self, dataset: ScalpDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, np.ndarray | str]:
        images = self.dataset
        return {
            "image": np.frombuffer(
                bytearray(images.download.read(images.locations[index])), dtype=np.uint8
            ),
            "grades": images.grades[index],
            "name": images.names[index],
            "session": images.sessions[index],
        }


def collate_encoded(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batches samples of :class:`EncodedScalpDataset`; ``image`` stays a list of byte arrays."""
    batch = default_collate([{k: v for k, v in s.items() if k != "image"} for s in samples])
    batch["image"] = [sample["image"] for sample in samples]
    return batch


def decode_letterboxed(
    encoded: list[np.ndarray], names: list[str], image_size: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """Decodes JPEG bytes on ``device`` and letterboxes them: uint8 ``[B, 3, H, W]``.

    Raises:
        OSError: An image is not a decodable JPEG (the message names it).
    """
    encoded = [torch.from_numpy(data) for data in encoded]
    try:
        images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        for data, name in zip(encoded, names, strict=True):
            try:
                decode_jpeg(data, mode=ImageReadMode.RGB)
            except RuntimeError as error:
                raise OSError(f"Cannot decode image {name} as JPEG: {error}") from error
        raise
    return torch.stack([letterbox_tensor(image, image_size) for image in images])


def letterbox_tensor(image: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Like :func:`scalp_ml.data.images.letterbox` for a uint8 ``[3, h, w]`` tensor.

    Area-average shrink by the largest factor that fits ``(height, width)``, black padding
    centred the same way.
    """
    target_height, target_width = image_size
    height, width = image.shape[-2:]
    scale = min(target_height / height, target_width / width)
    new_height = min(target_height, max(1, round(height * scale)))
    new_width = min(target_width, max(1, round(width * scale)))
    resized = F.interpolate(image[None].float(), size=(new_height, new_width), mode="area")
    out = torch.zeros(3, target_height, target_width, dtype=torch.uint8, device=image.device)
    top, left = (target_height - new_height) // 2, (target_width - new_width) // 2
    out[:, top : top + new_height, left : left + new_width] = resized[0].round().clamp(0, 255)
    return out
