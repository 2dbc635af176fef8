"""What every command shares on the command line: a ``--help`` that answers at once.

Hydra's own ``--help`` lists every config group of every installed Hydra plugin first, which
takes seconds; this one composes the command's config (with the overrides given) and fills the
command's help template (``hydra.help.template`` of its YAML) with it and this project's
config groups.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import Any

from scalp_ml.extras import MissingExtraError, check_plugin_overrides

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
HELP_FLAGS = ("--help", "-h")
OPTUNA_OVERRIDES = ("hparams_search=optuna", "hydra/sweeper=optuna")


def run_command(main: Callable[[], Any], config_name: str) -> None:
    """Runs a Hydra ``main``, or prints the command's help when it is asked for.

    A plugin selected on the command line whose optional extra is missing stops the command
    (and its help) first, with the extra's pip line (exit status 1).
    """
    overrides = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    try:
        check_plugin_overrides(overrides)
    except MissingExtraError as error:
        sys.exit(f"Error: {error}")
    if any(flag in sys.argv[1:] for flag in HELP_FLAGS):
        print(help_text(config_name, overrides))
        return
    register_optuna_sweeper(overrides)
    main()


def register_optuna_sweeper(overrides: list[str]) -> None:
    """Registers this project's Optuna sweeper with Hydra when an override selects it.

    Hydra finds plugins by listing the ``hydra_plugins`` namespace package; in an editable
    install this project's part of it is an import hook that cannot be listed (its source is
    ``scalp_ml/_hydra_plugins/``), so it is registered by hand, which any install allows.
    """
    if not any(o.lstrip("+~").startswith(OPTUNA_OVERRIDES) for o in overrides):
        return
    from hydra.core.plugins import Plugins
    from hydra_plugins.scalp_optuna_sweeper.optuna_sweeper import OptunaSweeper

    Plugins.instance().register(OptunaSweeper)


def help_text(config_name: str, overrides: list[str]) -> str:
    """The command's help: what it does, an example, its config groups and options."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    template = cfg.hydra.help.template
    with open_dict(cfg):
        del cfg["hydra"]
    return Template(template).safe_substitute(
        CONFIG=OmegaConf.to_yaml(cfg), APP_CONFIG_GROUPS=config_groups(), FLAGS_HELP=""
    )


def config_groups() -> str:
    """This project's config groups and their options, one line each."""
    lines = []
    for folder in sorted(path for path in CONF_DIR.iterdir() if path.is_dir()):
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options:
            lines.append(f"{folder.name}: {', '.join(options)}")
    return "\n".join(lines)
