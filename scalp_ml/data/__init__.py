"""Data: the synthetic generator, the AI Hub reader, splits, transforms and the datamodule."""
