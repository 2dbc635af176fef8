"""Typed schemas of the configs (Hydra structured configs): bad values fail at composition.

The YAML files under ``conf/`` hold the values; these dataclasses declare each key's type and,
through enums, its allowed values. Hydra checks a composed config against them before a command
does any work, so ``data.split.strategy=sesion`` or ``split=tset`` stops at once with the key and
the allowed values. Every entry point imports this module, which registers the schemas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


class SplitStrategy(StrEnum):
    """How images are dealt into train, validation and test."""

    image = "image"
    session = "session"
    official = "official"


class OnConflict(StrEnum):
    """Label copies of one image that disagree."""

    error = "error"
    drop = "drop"


class OnBadFile(StrEnum):
    """Images or label files that cannot be used."""

    error = "error"
    skip = "skip"


class Cache(StrEnum):
    """Where decoded images are kept between epochs."""

    none = "none"
    memmap = "memmap"


class Placement(StrEnum):
    """Where a step of the image pipeline runs."""

    cpu = "cpu"
    gpu = "gpu"


class Split(StrEnum):
    """A split of the data."""

    train = "train"
    val = "val"
    test = "test"


class Device(StrEnum):
    """Where a command runs its model."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ExportFormat(StrEnum):
    """File formats ``export`` writes."""

    onnx = "onnx"
    torchscript = "torchscript"
    safetensors = "safetensors"


class TTA(StrEnum):
    """Test-time augmentation: the views averaged (scalp_ml.models.tta)."""

    none = "none"
    hflip = "hflip"
    flip4 = "flip4"
    d4 = "d4"


class Optimizer(StrEnum):
    """Optimizers the module builds."""

    adamw = "adamw"


class Loss(StrEnum):
    """Training losses (:mod:`scalp_ml.models.losses`)."""

    focal = "focal"
    ce = "ce"
    logit_adjusted = "logit_adjusted"
    balanced_softmax = "balanced_softmax"
    class_balanced_focal = "class_balanced_focal"
    corn = "corn"


class Head(StrEnum):
    """Grading heads (:mod:`scalp_ml.models.heads`); ``corn`` trains with ``loss=corn`` only."""

    softmax = "softmax"
    corn = "corn"


class Sampler(StrEnum):
    """Order of the training images in an epoch."""

    shuffle = "shuffle"
    balanced = "balanced"


@dataclass
class SplitConfig:
    """``data.split``."""

    strategy: SplitStrategy = MISSING
    ratios: list[float] = MISSING
    seed: int = MISSING
    file: str | None = None
    folds: int | None = None
    fold: int = 0


@dataclass
class DataConfig:
    """The ``data`` group."""

    root: str = MISSING
    manifest_file: str | None = None
    verify_images: bool = MISSING
    on_conflict: OnConflict = MISSING
    on_bad_image: OnBadFile = MISSING
    on_bad_label: OnBadFile = MISSING
    image_size: Any = MISSING  # a side, or [height, width]
    batch_size: int = MISSING
    num_workers: int | None = None
    prefetch_factor: int = MISSING
    cache: Cache = MISSING
    cache_dir: str | None = None
    augment_on: Placement = MISSING
    decode_on: Placement = MISSING
    sampler: Sampler = MISSING
    sampler_alpha: float = MISSING
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: dict[str, Any] = MISSING


@dataclass
class ModelConfig:
    """The ``model`` group."""

    backbone: str = MISSING
    pretrained: bool = MISSING
    weights: str | None = None
    dropout: float = MISSING
    head: Head = MISSING
    mean: list[float] | None = None
    std: list[float] | None = None
    tta: TTA = MISSING


@dataclass
class OptimizerConfig:
    """The ``optimizer`` group."""

    name: Optimizer = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING


@dataclass
class LossConfig:
    """The ``loss`` group; a parameter the chosen loss does not use stays ``None``."""

    name: Loss = MISSING
    gamma: float | None = None  # focal, class_balanced_focal
    tau: float | None = None  # logit_adjusted
    beta: float | None = None  # class_balanced_focal
    drw_epoch: int | None = None  # class_balanced_focal: first epoch with class weights


@dataclass
class EvaluationConfig:
    """The ``evaluation`` group: see :class:`scalp_ml.evaluation.evidence.EvidenceSettings`."""

    resamples: int = MISSING
    seed: int = MISSING
    level: float = MISSING
    collapse_margin: float = MISSING


@dataclass
class EvalConfig:
    """``python -m scalp_ml.evaluate``."""

    ckpt_path: Any = MISSING  # a checkpoint or ONNX file; an ensemble: a list or a runs folder
    split: Split = MISSING
    data_root: str | None = None
    split_file: str | None = None
    manifest_file: str | None = None
    device: Device = MISSING
    tta: TTA | None = None
    batch_size: int | None = None
    num_workers: int | None = None
    out_dir: str = MISSING
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


@dataclass
class PredictConfig:
    """``python -m scalp_ml.predict``."""

    ckpt_path: str = MISSING
    inputs: str = MISSING
    explain: bool = MISSING
    device: Device = MISSING
    tta: TTA | None = None
    batch_size: int = MISSING
    threads: int = MISSING
    out_dir: str = MISSING


@dataclass
class ExportConfig:
    """``python -m scalp_ml.export``."""

    ckpt_path: Any = MISSING  # a checkpoint; an ensemble: a list or a runs folder
    format: ExportFormat = MISSING
    out: str | None = None
    tta: TTA | None = None


def register() -> None:
    """Stores the schemas under the names the YAML files' defaults lists use."""
    store = ConfigStore.instance()
    store.store(group="data", name="schema", node=DataConfig)
    store.store(group="model", name="schema", node=ModelConfig)
    store.store(group="optimizer", name="schema", node=OptimizerConfig)
    store.store(group="loss", name="schema", node=LossConfig)
    store.store(group="evaluation", name="schema", node=EvaluationConfig)
    store.store(name="eval_schema", node=EvalConfig)
    store.store(name="predict_schema", node=PredictConfig)
    store.store(name="export_schema", node=ExportConfig)


def plain(value: Any) -> Any:
    """A config node as plain Python: resolved, enums as their strings (safe in checkpoints)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    return value.value if isinstance(value, Enum) else value


register()
