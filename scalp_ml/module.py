"""The LightningModule: backbone + six heads, focal loss, AdamW, the study's metrics."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

from scalp_ml.evaluation.metrics import GradingMetrics
from scalp_ml.labels import GRADES, GRADES_KOREAN, INDICATORS
from scalp_ml.models.losses import FocalLoss
from scalp_ml.models.network import MultiHeadClassifier

EVAL_STAGES = ("val", "test")


class ScalpGrader(L.LightningModule):
    """Grades six scalp indicators 0-3 from one image.

    Hyper-parameters are plain values (saved into every checkpoint), so a checkpoint alone
    rebuilds the model; it also carries the indicator and grade names.

    Args:
        model: Keyword arguments of :class:`~scalp_ml.models.network.MultiHeadClassifier`.
        optimizer: Optimizer config with a ``_target_`` (e.g. ``torch.optim.AdamW``) and its
            arguments except ``params``.
        loss: Keyword arguments of :class:`~scalp_ml.models.losses.FocalLoss`.
    """

    def __init__(self, model: dict[str, Any], optimizer: dict[str, Any], loss: dict[str, Any]):
        super().__init__()
        self.save_hyperparameters()
        self.net = MultiHeadClassifier(**model)
        self.loss = FocalLoss(**loss)
        self.metrics = torch.nn.ModuleDict({stage: GradingMetrics() for stage in EVAL_STAGES})
        self.results: dict[str, dict[str, torch.Tensor]] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Grade logits ``[B, 6, 4]``."""
        return self.net(images)

    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        """Focal loss of one training batch."""
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
        """Accumulates validation loss and metrics."""
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_index: int) -> None:
        """Accumulates test loss and metrics."""
        self._evaluation_step(batch, "test")

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> None:
        logits = self(batch["image"])
        loss = self.loss(logits, batch["grades"])
        size = len(batch["grades"])
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=size, sync_dist=True)
        self.metrics[stage].update(logits, batch["grades"])

    def on_validation_epoch_end(self) -> None:
        """Logs validation metrics (``val/macro_f1`` is the monitored one)."""
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Logs test metrics."""
        self._log_metrics("test")

    def _log_metrics(self, stage: str) -> None:
        results = self.metrics[stage].compute()
        self.metrics[stage].reset()
        scalars = {f"{stage}/{key}": value for key, value in results.items() if value.ndim == 0}
        self.log(f"{stage}/macro_f1", scalars.pop(f"{stage}/macro_f1"), prog_bar=True)
        self.log_dict(scalars)
        self.results[stage] = {key: value.detach().cpu() for key, value in results.items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The optimizer of the ``optimizer`` config group over all parameters."""
        return instantiate(self.hparams.optimizer, params=self.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stores the label names, so predictions can be read without this package's source."""
        checkpoint["labels"] = {
            "indicators": [
                {"name": item.name, "korean": item.korean, "key": item.key} for item in INDICATORS
            ],
            "grades": list(GRADES),
            "grades_korean": list(GRADES_KOREAN),
        }
