"""Running training jobs: callbacks, loggers, distributed training, sweeps and run records."""
