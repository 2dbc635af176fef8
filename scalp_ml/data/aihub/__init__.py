"""Reading the AI Hub download: its files, label files, pairing and the cached index."""
