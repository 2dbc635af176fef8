"""Any predictor (an ONNX file, an ensemble) as a LightningModule, graded like a checkpoint."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from scalp_ml.evaluation.predictions import prediction_outputs
from scalp_ml.inference.predictors import Predictor


class PredictorGrader(L.LightningModule):
    """Runs a NumPy predictor in Lightning's prediction loop (on the CPU side of the batch)."""

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.predictor = predictor

    def predict_step(self, batch: dict[str, Any], batch_index: int) -> dict[str, Any]:
        """Grade probabilities of a batch, with its names and true grades."""
        probabilities = self.predictor(batch["image"].cpu().numpy())
        return prediction_outputs(batch, torch.from_numpy(probabilities))
