"""scalp_ml: grade six scalp conditions from one scalp photograph."""

import os

# albumentations otherwise checks for updates over the network at import time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
