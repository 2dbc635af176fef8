"""Hydra plugin: the Optuna sweeper of ``conf/hydra/sweeper/optuna.yaml``."""
