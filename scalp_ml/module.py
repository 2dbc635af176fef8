"""The LightningModule: backbone + six heads, focal loss, AdamW, the study's metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from scalp_ml.evaluation.collapse import single_grade_heads
from scalp_ml.evaluation.metrics import GradingMetrics
from scalp_ml.evaluation.predictions import prediction_outputs
from scalp_ml.labels import GRADES, GRADES_KOREAN, INDICATOR_NAMES, INDICATORS
from scalp_ml.models.losses import FocalLoss
from scalp_ml.models.migration import CHECKPOINT_VERSION, VERSION_KEY, migrate
from scalp_ml.models.network import GradeProbabilities, GradingNetwork

log = logging.getLogger(__name__)

OPTIMIZERS = {"adamw": torch.optim.AdamW}
LOSSES = ("focal",)


class ScalpGrader(L.LightningModule):
    """Grades six scalp indicators 0-3 from one letterboxed uint8 image.

    Hyper-parameters are plain values saved into every checkpoint, so a checkpoint alone
    rebuilds the model (never fetching pretrained weights: training loads those explicitly,
    see :func:`scalp_ml.models.backbones.load_pretrained_weights`); it also carries the
    indicator and grade names.

    Args:
        backbone: timm architecture name.
        dropout: Dropout before each head.
        mean: Input normalisation mean per RGB channel on [0, 1]; ``None``: the backbone's.
        std: Input normalisation standard deviation; ``None``: the backbone's.
        optimizer: ``adamw``.
        lr: Learning rate (constant).
        weight_decay: Decoupled weight decay.
        loss: ``focal``.
        gamma: Focal loss focusing parameter (0: cross-entropy).
    """

    def __init__(
        self,
        backbone: str,
        dropout: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        loss: str = "focal",
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r}: expected one of {sorted(OPTIMIZERS)}")
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r}: expected one of {list(LOSSES)}")
        self.save_hyperparameters()
        self.net = GradingNetwork(backbone, dropout, mean, std)
        self.loss = FocalLoss(gamma)
        self.val_metrics = GradingMetrics()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Grade logits ``[B, 6, 4]`` of uint8 images ``[B, 3, H, W]``."""
        return self.net(images)

    def deployable(self) -> GradeProbabilities:
        """The network as it is exported and served: images to grade probabilities."""
        return GradeProbabilities(self.net)

    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        """Loss of one training batch."""
        loss = self.loss(self(batch["image"]), batch["grades"])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"Training loss is {loss.item()} at step {self.global_step} (batch "
                f"{batch_index}); lower optimizer.lr or check the input data"
            )
        size = len(batch["grades"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        """Accumulates validation loss and metrics (synchronised across DDP ranks)."""
        logits = self(batch["image"])
        size = len(batch["grades"])
        loss = self.loss(logits, batch["grades"])
        self.log("val/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        self.val_metrics.update(logits, batch["grades"])

    def setup(self, stage: str) -> None:
        """Forgets which heads were collapsed (see :meth:`on_validation_epoch_end`)."""
        self._collapsed_heads: set[str] = set()

    def on_validation_epoch_end(self) -> None:
        """Logs validation metrics (``val/macro_f1`` is the monitored one).

        ``val/collapsed_heads`` counts the heads that predicted one grade for every validation
        image; a warning names each head when it collapses (not again while it stays so).
        """
        results = self.val_metrics.compute()
        self.val_metrics.reset()
        scalars = {f"val/{key}": value for key, value in results.items() if value.ndim == 0}
        self.log("val/macro_f1", scalars.pop("val/macro_f1"), prog_bar=True)
        self.log_dict(scalars)
        predicted = [results[f"confusion/{name}"].sum(dim=0).cpu() for name in INDICATOR_NAMES]
        collapsed = single_grade_heads(torch.stack(predicted).numpy())
        self.log("val/collapsed_heads", float(len(collapsed)))
        if self.trainer.sanity_checking:
            return
        for name, reason in collapsed.items():
            if name not in self._collapsed_heads and self.trainer.is_global_zero:
                epoch = self.current_epoch
                log.warning("Head %s collapsed at epoch %d: %s (validation)", name, epoch, reason)
        self._collapsed_heads = set(collapsed)

    def predict_step(self, batch: dict[str, Any], batch_index: int) -> dict[str, Any]:
        """Grade probabilities of a batch, with its names (and true grades, if it has them)."""
        return prediction_outputs(batch, self.deployable()(batch["image"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The configured optimizer over all parameters."""
        optimizer = OPTIMIZERS[self.hparams.optimizer]
        return optimizer(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stores the layout version and the label names (readable without this package)."""
        checkpoint[VERSION_KEY] = CHECKPOINT_VERSION
        checkpoint["labels"] = {
            "indicators": [
                {"name": item.name, "korean": item.korean, "key": item.key} for item in INDICATORS
            ],
            "grades": list(GRADES),
            "grades_korean": list(GRADES_KOREAN),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Upgrades a checkpoint of an earlier version (resuming from it, for instance)."""
        migrate(checkpoint, "the checkpoint")
