"""Hyper-parameter search on Optuna, started from Hydra (``-m hparams_search=optuna``).

:mod:`.space` turns the sweep overrides into Optuna distributions, :mod:`.sweeper` runs the
study (the ``hydra_plugins.scalp_optuna_sweeper`` plugin calls it) and :mod:`.trial` hands
each job its trial, so that a Lightning callback reports the validation metric and prunes.
"""
