"""The study's published numbers (Yonsei University, 2025): its data and the results to beat."""

from __future__ import annotations

import numpy as np

from scalp_ml.labels import INDICATOR_NAMES

# Table 1: images per grade 0..3 of the 17,785 images used, one row per indicator.
GRADE_COUNTS = np.array(
    [
        [14758, 1125, 1345, 557],
        [3678, 6879, 6216, 1012],
        [5916, 7247, 3411, 1211],
        [16963, 552, 196, 74],
        [10585, 4113, 2483, 604],
        [13003, 3435, 1075, 272],
    ]
)

# Table 2: macro-F1 per indicator on the validation and test splits, and overall.
MACRO_F1 = {
    "val": dict(zip(INDICATOR_NAMES, (0.490, 0.506, 0.679, 0.343, 0.652, 0.491), strict=True)),
    "test": dict(zip(INDICATOR_NAMES, (0.458, 0.517, 0.661, 0.311, 0.624, 0.526), strict=True)),
}
OVERALL_MACRO_F1 = {"val": 0.527, "test": 0.518}
TEST_HAMMING_ACCURACY = 0.658
