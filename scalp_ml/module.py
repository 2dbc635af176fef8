"""The LightningModule: backbone + six heads, a grade loss (the study's focal), AdamW, metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from scalp_ml.evaluation.collapse import single_grade_heads
from scalp_ml.evaluation.metrics import GradingMetrics
from scalp_ml.evaluation.predictions import prediction_outputs
from scalp_ml.labels import (
    GRADES,
    GRADES_KOREAN,
    INDICATOR_NAMES,
    INDICATORS,
    NUM_GRADES,
    NUM_INDICATORS,
)
from scalp_ml.models.losses import COUNTED_LOSSES, GradeLoss, build_loss, check_head
from scalp_ml.models.migration import CHECKPOINT_VERSION, VERSION_KEY, migrate
from scalp_ml.models.network import DeployedGrader, GradingNetwork
from scalp_ml.models.tta import check_mode

log = logging.getLogger(__name__)

OPTIMIZERS = {"adamw": torch.optim.AdamW}


class ScalpGrader(L.LightningModule):
    """Grades six scalp indicators 0-3 from one letterboxed uint8 image.

    Hyper-parameters are plain values saved into every checkpoint, so a checkpoint alone
    rebuilds the model (never fetching pretrained weights: training loads those explicitly,
    see :func:`scalp_ml.models.backbones.load_pretrained_weights`); it also carries the
    indicator and grade names.

    The loss (:func:`scalp_ml.models.losses.build_loss`) is told the epoch at the start of
    every training epoch (deferred re-weighting). ``val/loss`` is the same loss on the
    validation split, at the same epoch, so it reads against ``train/loss``.

    Args:
        backbone: timm architecture name.
        dropout: Dropout before each head.
        mean: Input normalisation mean per RGB channel on [0, 1]; ``None``: the backbone's.
        std: Input normalisation standard deviation; ``None``: the backbone's.
        head: ``softmax`` (the study's) or ``corn`` (ordinal; trains with ``loss="corn"``).
        optimizer: ``adamw``.
        lr: Learning rate (constant).
        weight_decay: Decoupled weight decay.
        loss: ``focal``, ``ce``, ``logit_adjusted``, ``balanced_softmax``,
            ``class_balanced_focal`` or ``corn``.
        gamma: Focal loss focusing parameter (0: cross-entropy).
        tau: Logit adjustment scale (``logit_adjusted``).
        beta: Class-balanced ``beta`` (``class_balanced_focal``).
        drw_epoch: First epoch (0-based) with class-balanced weights; ``None``: from the start.
        grade_counts: Training images per indicator and grade ``[6, 4]`` (plain lists), which
            set the priors and class weights of ``logit_adjusted``, ``balanced_softmax`` and
            ``class_balanced_focal``. ``None``: taken from the datamodule (its
            ``train_grade_counts()``) when fitting starts, then saved with the other
            hyper-parameters.
        tta: Test-time augmentation of the deployed model: ``none``, ``hflip``, ``flip4`` or
            ``d4`` (:mod:`scalp_ml.models.tta`).

    Raises:
        ValueError: An unknown optimizer or loss, a head the loss cannot train, bad loss
            parameters or counts.
    """

    def __init__(
        self,
        backbone: str,
        dropout: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        head: str = "softmax",
        optimizer: str = "adamw",
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        loss: str = "focal",
        gamma: float = 2.0,
        tau: float = 1.0,
        beta: float = 0.999,
        drw_epoch: int | None = None,
        grade_counts: list[list[int]] | None = None,
        tta: str = "none",
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r}: expected one of {sorted(OPTIMIZERS)}")
        check_head(loss, head)
        check_mode(tta)
        self.save_hyperparameters(logger=False)  # the training job logs the whole config
        # A loss with priors or weights and no counts yet is built in setup().
        waits_for_counts = grade_counts is None and loss in COUNTED_LOSSES
        self.loss: GradeLoss | None = None if waits_for_counts else self._build_loss()
        self.net = GradingNetwork(backbone, dropout, mean, std, head)
        # Fitted on validation after training when asked (scalp_ml.evaluation.offsets).
        self.register_buffer("decision_offsets", torch.zeros(NUM_INDICATORS, NUM_GRADES))
        self.val_metrics = GradingMetrics()
        self._collapsed_heads: set[str] = set()  # heads warned about (on_validation_epoch_end)

    def _build_loss(self) -> GradeLoss:
        hparams = self.hparams
        return build_loss(
            hparams.loss,
            hparams.grade_counts,
            hparams.gamma,
            hparams.tau,
            hparams.beta,
            hparams.drw_epoch,
        )

    def setup(self, stage: str) -> None:
        """Before fitting, builds a loss that waits for the training split's grade counts.

        It takes them from the datamodule's ``train_grade_counts()``: every DDP rank reads them
        from the same saved split once the data is prepared. They are saved with the
        hyper-parameters, so the checkpoint rebuilds the same loss.

        Raises:
            ValueError: No counts were given and the datamodule cannot give them.
        """
        if self.loss is not None:
            return
        counts = getattr(self.trainer.datamodule, "train_grade_counts", None)
        if counts is None:
            raise ValueError(
                f"loss={self.hparams.loss} needs the training split's grade counts: pass "
                "grade_counts (images per indicator and grade, [6, 4]) to ScalpGrader, or fit "
                "with a ScalpDataModule"
            )
        self.hparams.grade_counts = counts()
        self.loss = self._build_loss()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw head outputs of uint8 images ``[B, 3, H, W]`` (see ``GradingNetwork.forward``)."""
        return self.net(images)

    def deployable(self) -> DeployedGrader:
        """The model as it is exported and served: images to grade probabilities.

        It applies this module's test-time augmentation (``tta``) and decision offsets.
        """
        return DeployedGrader(self.net, self.decision_offsets, self.hparams.tta)

    def on_train_epoch_start(self) -> None:
        """Tells the loss the epoch (deferred re-weighting; also right after a resume)."""
        self.loss.set_epoch(self.current_epoch)

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
        outputs = self(batch["image"])
        size = len(batch["grades"])
        loss = self.loss(outputs, batch["grades"])
        self.log("val/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        predicted = self.net.probabilities(outputs).argmax(dim=-1)
        self.val_metrics.update(predicted, batch["grades"])

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
