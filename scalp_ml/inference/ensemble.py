"""Ensembles of checkpoints (e.g. the fold models of a cross-validation): mean probabilities.

``ckpt_path=[a.ckpt,b.ckpt,...]`` or a sweep / cross-validation directory (the checkpoint each
finished run graded with) names the members. Members must take the same input (image size,
resize) and give the same outputs; each keeps its own test-time augmentation and decision
offsets, and the ensemble averages what the members serve.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalp_ml.data.images import input_size
from scalp_ml.inference.checkpoint import LoadedCheckpoint, load_checkpoint
from scalp_ml.inference.predictors import resolve_device


class EnsembleError(ValueError):
    """Members that cannot be averaged, or a folder without finished runs."""


class MeanOfMembers(torch.nn.Module):
    """Images to the mean of the members' probabilities ``[B, 6, 4]`` (one graph on export)."""

    def __init__(self, members: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Mean probabilities of uint8 images ``[B, 3, H, W]``."""
        return torch.stack([member(images) for member in self.members]).mean(dim=0)


def member_paths(ckpt_path: str | Sequence[str]) -> list[Path]:
    """The checkpoints ``ckpt_path`` names: one file, a list, or a folder of runs.

    A folder (a multirun's sweep directory, or a ``cross_validate=true`` run with ``fold<i>/``
    runs) gives the checkpoint each finished run graded with (its ``metrics.json``).

    Raises:
        EnsembleError: A folder holds no finished run.
    """
    if isinstance(ckpt_path, str | Path):
        ckpt_path = [ckpt_path]
    paths: list[Path] = []
    for entry in map(Path, ckpt_path):
        if not entry.is_dir():
            paths.append(entry)
            continue
        runs = sorted(entry.glob("*/metrics.json"))
        if not runs:
            raise EnsembleError(
                f"ckpt_path={entry}: a folder, but none of its sub-folders holds a finished run "
                "(metrics.json); pass the checkpoints as ckpt_path=[a.ckpt,b.ckpt]"
            )
        paths += [Path(json.loads(run.read_text())["context"]["checkpoint"]) for run in runs]
    return paths


def member_input(loaded: LoadedCheckpoint) -> dict[str, Any]:
    """What a member's input must match: image size, data root and its test split's settings.

    Folds do not move the test split, so members of different folds (or none) may mix.
    """
    split = {k: v for k, v in loaded.data["split"].items() if k not in ("fold", "folds")}
    return {
        "image_size": list(input_size(loaded.data["image_size"])),
        "data root": loaded.data["root"],
        "split": split,
    }


def check_members(members: Sequence[LoadedCheckpoint]) -> None:
    """Refuses members with another input or output than the first one.

    Raises:
        EnsembleError: Names the member and what differs (image size, split of the data,
            labels graded).
    """
    first = members[0]
    expected = member_input(first)
    probe = torch.zeros(1, 3, *input_size(first.data["image_size"]), dtype=torch.uint8)
    with torch.inference_mode():
        shape = tuple(first.model.deployable()(probe).shape)
        for member in members[1:]:
            found = member_input(member)
            for key, value in expected.items():
                if found[key] != value:
                    raise EnsembleError(
                        f"Ensemble member {member.path} has {key} {found[key]}, but "
                        f"{first.path} has {value}: members must share their input and data"
                    )
            tests = (first.graded_images.get("test"), member.graded_images.get("test"))
            if None not in tests and tests[0] != tests[1]:
                raise EnsembleError(
                    f"Ensemble member {member.path} was tested on other images than "
                    f"{first.path} (their records of the test split differ): averaging them "
                    "could grade images a member trained on"
                )
            outputs = tuple(member.model.deployable()(probe).shape)
            if outputs != shape:
                raise EnsembleError(
                    f"Ensemble member {member.path} grades {outputs[1:]} (indicators, grades), "
                    f"but {first.path} grades {shape[1:]}: members must share their label set"
                )


def load_members(
    paths: Sequence[Path], map_location: str | torch.device = "cpu", tta: str | None = None
) -> list[LoadedCheckpoint]:
    """Loads and checks the members (see :func:`check_members`)."""
    if len(paths) < 2:
        raise EnsembleError(f"An ensemble needs at least two checkpoints, got {list(paths)}")
    members = [load_checkpoint(path, map_location, tta) for path in paths]
    check_members(members)
    return members


class EnsemblePredictor:
    """The members' mean probabilities, as a :class:`~scalp_ml.inference.predictors.Predictor`.

    Attributes:
        members: The loaded members (eval mode, on ``device``).
        data: The first member's data settings (every member shares image size and test split).
        graded_images: The first member's record of its splits' images.
    """

    def __init__(self, paths: Sequence[Path], device: str = "auto", tta: str | None = None) -> None:
        self.device = torch.device(resolve_device(device))
        self.members = load_members(paths, self.device, tta)
        for member in self.members:
            member.model.to(self.device)
        self.model = MeanOfMembers([m.model.deployable() for m in self.members]).eval()
        self.data = self.members[0].data
        self.graded_images = self.members[0].graded_images
        self.image_size = input_size(self.data["image_size"])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Mean probabilities ``[B, 6, 4]``."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(images).to(self.device)).cpu().numpy()
