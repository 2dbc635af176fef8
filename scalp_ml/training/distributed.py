"""Multi-process training (DDP): exact evaluation, timm-aware synchronised BatchNorm, guards.

Under DDP every rank evaluates its own share of the validation and test images and the
torchmetrics states are summed across ranks. PyTorch's ``DistributedSampler`` pads the last
share by repeating images, so a split whose size is not a multiple of the world size would be
counted with duplicates; :func:`evaluation_sampler` hands out every image exactly once instead.
BatchNorm statistics are synchronised across ranks (``trainer=ddp``), so every rank validates
with the same running statistics that the checkpoint stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.plugins import LayerSync
from lightning.pytorch.utilities import rank_zero_warn
from timm.layers import BatchNormAct2d, SyncBatchNormAct, convert_sync_batchnorm
from torch import nn


def evaluation_sampler(dataset: Sized) -> UnrepeatedDistributedSampler | None:
    """Each image on exactly one rank when a process group is running, else ``None``.

    Ranks may get one image more than others; evaluation has no collective per batch, so
    uneven shares are safe (Lightning uses the same sampler for prediction).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return UnrepeatedDistributedSampler(dataset, shuffle=False)


class TimmSyncBatchNorm(LayerSync):
    """Synchronised BatchNorm that keeps timm's fused norm + activation layers intact.

    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` (Lightning's ``sync_batchnorm=True``)
    replaces timm's ``BatchNormAct2d`` by a plain ``SyncBatchNorm`` and silently drops its
    activation; timm's converter keeps it. :meth:`revert` restores the original layer types.
    """

    def apply(self, model: nn.Module) -> nn.Module:
        """Model with every BatchNorm synchronised across ranks (GPU models only).

        PyTorch's synchronised BatchNorm runs on GPUs only: a CPU model (tests, ``gloo``)
        keeps per-process BatchNorm, with a warning.
        """
        if next(model.parameters()).device.type == "cpu":
            rank_zero_warn("Synchronised BatchNorm needs GPUs: BatchNorm stays per process")
            return model
        return convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        """Model with plain (per-process) BatchNorm layers again, weights and statistics kept."""
        reverted = model
        if isinstance(model, nn.SyncBatchNorm):
            arguments = (model.num_features, model.eps, model.momentum, model.affine)
            if isinstance(model, SyncBatchNormAct):
                reverted = BatchNormAct2d(*arguments, model.track_running_stats)
                reverted.act, reverted.drop = model.act, model.drop
            else:
                reverted = nn.BatchNorm2d(*arguments, model.track_running_stats)
            reverted.load_state_dict(model.state_dict())
            reverted.to(next(model.buffers(), torch.empty(0)).device).train(model.training)
        for name, child in model.named_children():
            reverted.add_module(name, self.revert(child))
        return reverted


def is_distributed(trainer: Mapping[str, Any]) -> bool:
    """Whether a trainer config asks for several processes (a DDP strategy, devices or nodes)."""
    devices = trainer.get("devices", 1)
    several = devices not in (1, "1", "auto", None) or trainer.get("num_nodes", 1) != 1
    return several or "ddp" in str(trainer.get("strategy", ""))


def refuse_distributed_multirun(trainer: Mapping[str, Any]) -> None:
    """Stops a Hydra multirun that asks for DDP.

    Lightning starts the other ranks by re-running the command line, so each rank would run
    the whole sweep again (an Optuna study would get twice the trials).

    Raises:
        ValueError: The trainer config is distributed.
    """
    if is_distributed(trainer):
        raise ValueError(
            "--multirun cannot be combined with a multi-process trainer (strategy="
            f"{trainer.get('strategy')}, devices={trainer.get('devices')}, num_nodes="
            f"{trainer.get('num_nodes', 1)}): each rank would re-run the whole sweep. Sweep "
            "with one device per job (e.g. hydra/launcher=slurm), and use trainer=ddp for "
            "single runs."
        )
