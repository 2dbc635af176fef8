"""Portable weights: ``model.safetensors`` with a timm-style ``config.json``, no scalp_ml needed.

The weights file holds the backbone's state dict under ``backbone.`` (timm's own names, for
``timm.create_model(architecture, num_classes=0)``) and the six indicators' linear heads as one
``head.weight [indicators * outputs_per_indicator, num_features]`` and ``head.bias``, indicator
by indicator. The configuration (architecture, head, input size, resize, mean and std, label
names, decision offsets, provenance) travels in the file's metadata and in ``config.json``
beside it. README, "Portable weights", rebuilds the model with timm, torch and safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save

from scalp_ml.atomic import atomic_write_text
from scalp_ml.data.images import RESIZE
from scalp_ml.models.heads import HEAD_WIDTHS
from scalp_ml.models.network import DeployedGrader, GradingNetwork

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CONFIG_KEY = "config"  # the safetensors metadata entry holding config.json's text
BACKBONE_PREFIX = "backbone."


def portable_state(network: GradingNetwork) -> dict[str, torch.Tensor]:
    """The network's weights in the portable layout (contiguous copies, on the CPU)."""
    state = {BACKBONE_PREFIX + key: value for key, value in network.backbone.state_dict().items()}
    linears = [head[-1] for head in network.heads]
    state["head.weight"] = torch.cat([linear.weight for linear in linears])
    state["head.bias"] = torch.cat([linear.bias for linear in linears])
    return {key: value.detach().cpu().contiguous().clone() for key, value in state.items()}


def portable_config(network: GradingNetwork, metadata: dict[str, Any]) -> dict[str, Any]:
    """The export metadata plus what rebuilding the network with timm needs."""
    height, width = metadata["image_size"]
    return {
        "architecture": metadata["model"]["backbone"],
        "num_features": network.heads[0][-1].in_features,
        "head": {
            "type": network.head,
            "indicators": len(network.heads),
            "outputs_per_indicator": HEAD_WIDTHS[network.head],
            "layout": "head.weight [indicators * outputs_per_indicator, num_features] and "
            "head.bias on the backbone's pooled features, indicator by indicator; softmax: "
            "grade logits; corn: P(grade > k | grade > k - 1) logits",
        },
        "pretrained_cfg": {
            "input_size": [3, height, width],
            "mean": metadata["mean"],
            "std": metadata["std"],
            "crop_pct": 1.0,
            "crop_mode": "letterbox",
        },
        **metadata,
        "resize": RESIZE,
        "input": "RGB [batch, 3, height, width], letterboxed to image_size (aspect kept, "
        "area-averaged, black padding centred), scaled to [0, 1], then normalised with mean "
        "and std",
        "output": "probabilities [batch, indicator, grade]: softmax of the logits (corn: "
        "differences of the cumulative products of sigmoids), then softmax(log p + "
        "decision_offsets)",
    }


def safetensors_bytes(
    model: DeployedGrader, example: torch.Tensor, metadata: dict[str, Any]
) -> bytes:
    """The deployed model's network as safetensors, its :func:`portable_config` as metadata.

    ``example`` is unused: the weights need no tracing.

    Raises:
        ValueError: The model averages test-time augmentation views, which weights alone do
            not carry.
    """
    del example
    if model.views.mode != "none":
        raise ValueError(
            f"format=safetensors holds the network's weights alone, without the test-time "
            f"augmentation (tta={model.views.mode}): export with tta=none and average the "
            "views yourself, or use format=onnx"
        )
    config = portable_config(model.network, metadata)
    text = json.dumps(config, ensure_ascii=False)
    return save(portable_state(model.network), metadata={CONFIG_KEY: text})


def read_config(weights: Path) -> dict[str, Any]:
    """The configuration a weights file of this layout carries in its metadata."""
    with safe_open(str(weights), "pt") as file:
        return json.loads(file.metadata()[CONFIG_KEY])


def write_config(weights: Path) -> Path:
    """Writes the weights file's configuration as ``config.json`` beside it."""
    path = weights.with_name(CONFIG_FILE)
    text = json.dumps(read_config(weights), indent=2, ensure_ascii=False)
    atomic_write_text(path, text + "\n")
    return path


def portable_probabilities(weights: Path, images: torch.Tensor) -> np.ndarray:
    """Grade probabilities ``[B, 6, 4]`` of letterboxed uint8 ``images`` ``[B, 3, H, W]``.

    Rebuilt from the file with timm, torch and safetensors only, as README's snippet does.
    """
    config, state = read_config(weights), load_file(weights)
    backbone = timm.create_model(config["architecture"], num_classes=0).eval()
    backbone.load_state_dict(
        {
            k.removeprefix(BACKBONE_PREFIX): v
            for k, v in state.items()
            if k.startswith(BACKBONE_PREFIX)
        }
    )
    mean, std = (torch.tensor(config[key]).view(1, 3, 1, 1) for key in ("mean", "std"))
    with torch.inference_mode():
        features = backbone((images.float() / 255 - mean) / std)
        outputs = F.linear(features, state["head.weight"], state["head.bias"])
    outputs = outputs.view(len(images), config["head"]["indicators"], -1)
    if config["head"]["type"] == "corn":
        above = outputs.sigmoid().cumprod(dim=-1)
        probabilities = F.pad(above, (1, 0), value=1.0) - F.pad(above, (0, 1))
    else:
        probabilities = outputs.softmax(dim=-1)
    offsets = torch.tensor(config["decision_offsets"])
    return (probabilities.clamp_min(1e-12).log() + offsets).softmax(dim=-1).numpy()
