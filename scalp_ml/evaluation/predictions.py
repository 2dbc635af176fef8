"""Per-image grade probabilities of a split, collected through Lightning's prediction loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from scalp_ml.labels import GRADES, INDICATOR_NAMES


def prediction_outputs(batch: dict[str, Any], probabilities: torch.Tensor) -> dict[str, Any]:
    """What a ``predict_step`` returns: names, sessions and grades of a batch, probabilities."""
    outputs = {key: batch[key] for key in ("name", "session", "grades") if key in batch}
    outputs["probabilities"] = probabilities.float().cpu()
    if "grades" in outputs:
        outputs["grades"] = outputs["grades"].cpu()
    return outputs


@dataclass(frozen=True)
class Predictions:
    """Grade probabilities of labelled images.

    Attributes:
        names: Image names.
        sessions: Capture session of each image.
        grades: True grades ``[N, 6]``.
        probabilities: Grade probabilities ``[N, 6, 4]``.
    """

    names: list[str]
    sessions: list[str]
    grades: np.ndarray
    probabilities: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        """Predicted grades ``[N, 6]``: the most probable of each indicator."""
        return self.probabilities.argmax(axis=-1)

    @classmethod
    def from_outputs(cls, outputs: list[dict[str, Any]]) -> Predictions:
        """Joins the outputs of :func:`prediction_outputs`, batch by batch."""
        return cls(
            names=[name for batch in outputs for name in batch["name"]],
            sessions=[str(session) for batch in outputs for session in batch["session"]],
            grades=torch.cat([batch["grades"] for batch in outputs]).numpy(),
            probabilities=torch.cat([batch["probabilities"] for batch in outputs]).numpy(),
        )

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> Predictions:
        """Reads back a :meth:`table` (e.g. a ``predictions_<split>.csv``)."""
        probabilities = [f"{name}_p_{grade}" for name in INDICATOR_NAMES for grade in GRADES]
        return cls(
            names=table["name"].astype(str).tolist(),
            sessions=table["session"].astype(str).tolist(),
            grades=table[[f"{name}_true" for name in INDICATOR_NAMES]].to_numpy(),
            probabilities=table[probabilities]
            .to_numpy()
            .reshape(len(table), len(INDICATOR_NAMES), len(GRADES)),
        )

    def table(self) -> pd.DataFrame:
        """One row per image: name, session, true and predicted grades, probabilities.

        Columns per indicator: ``<indicator>_true``, ``<indicator>_predicted`` and
        ``<indicator>_p_<grade name>``.
        """
        columns: dict[str, Any] = {"name": self.names, "session": self.sessions}
        predicted = self.predicted
        for index, name in enumerate(INDICATOR_NAMES):
            columns[f"{name}_true"] = self.grades[:, index]
            columns[f"{name}_predicted"] = predicted[:, index]
            for grade, grade_name in enumerate(GRADES):
                columns[f"{name}_p_{grade_name}"] = self.probabilities[:, index, grade]
        return pd.DataFrame(columns)


def predict_split(trainer: L.Trainer, module: L.LightningModule, loader: DataLoader) -> Predictions:
    """Grades every image of ``loader`` with Lightning's prediction loop.

    Under DDP each rank grades its own share (every image exactly once) and the shares are
    gathered, so every rank returns the whole split.

    Args:
        trainer: The trainer (its devices, precision and strategy are used).
        module: A LightningModule whose ``predict_step`` returns :func:`prediction_outputs`.
        loader: The split's batches.
    """
    outputs = trainer.predict(module, dataloaders=loader)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shares: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(shares, outputs)
        outputs = [batch for share in shares for batch in share or []]
    predictions = Predictions.from_outputs(outputs)
    order = np.argsort(predictions.names, kind="stable")  # ranks' shares interleave
    return Predictions(
        [predictions.names[i] for i in order],
        [predictions.sessions[i] for i in order],
        predictions.grades[order],
        predictions.probabilities[order],
    )
