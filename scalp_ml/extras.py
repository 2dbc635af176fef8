"""The optional stacks (``pip install 'scalp_ml[<extra>]'``), imported only where they are used.

The core commands (train, evaluate, predict with a checkpoint, index, synthetic data) need none
of them; a command that does names the missing extra's install line. This module imports
nothing heavy: the ONNX predict path stays free of torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType

# Command-line overrides that select a plugin from an extra: (override prefix, module, extra).
PLUGIN_OVERRIDES = (
    ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/sweeper=optuna", "optuna", "search"),
    ("hparams_search=optuna", "optuna", "search"),
)


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the extra's pip line."""


def install_hint(extra: str, purpose: str) -> str:
    """The error message: what needs the extra and how to install it."""
    return (
        f"{purpose} needs the optional packages of scalp_ml[{extra}]: "
        f"pip install 'scalp_ml[{extra}]'"
    )


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Imports ``module`` of the optional ``extra``.

    Args:
        module: The module to import, e.g. ``onnxruntime``.
        extra: The extra that installs it, e.g. ``export``.
        purpose: What needs it, for the message, e.g. ``Running an ONNX file``.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: ``module`` (or a package it needs) is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(install_hint(extra, purpose)) from error


def check_plugin_overrides(overrides: Sequence[str]) -> None:
    """Fails before Hydra starts when an override selects a plugin whose extra is missing.

    Without it Hydra stops later with a config or instantiation error that names no package.

    Raises:
        MissingExtraError: A selected plugin's module is not installed.
    """
    for override in overrides:
        for prefix, module, extra in PLUGIN_OVERRIDES:
            if override.lstrip("+~").startswith(prefix) and not _installed(module):
                raise MissingExtraError(install_hint(extra, override))


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # its parent package is missing
        return False
