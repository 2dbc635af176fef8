"""Simulated capture sessions: grades and predictions that are correlated within a person."""

import numpy as np

# Grade frequencies of the simulated population (every grade common enough to be scored).
PRIOR = np.array([0.4, 0.3, 0.2, 0.1])


def simulate_sessions(
    rng: np.random.Generator, n_sessions: int, shots: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions of ``shots`` images of one person each, graded by an error-prone classifier.

    Each person has one grade per indicator, which a shot keeps with probability 0.8 and
    otherwise moves one grade; the classifier gets a person's shots right at a rate drawn
    per person (some people are hard), and a wrong guess is any other grade.

    Returns:
        The session names ``[N]``, true grades ``[N, 6]`` and predicted grades ``[N, 6]``.
    """
    size = (n_sessions * shots, 6)
    person = np.repeat(rng.choice(4, size=(n_sessions, 6), p=PRIOR), shots, axis=0)
    step = rng.choice([-1, 0, 1], size=size, p=[0.1, 0.8, 0.1])
    grades = np.clip(person + step, 0, 3)
    skill = np.repeat(rng.beta(3, 1.5, size=(n_sessions, 1)), shots, axis=0)
    wrong = (grades + rng.integers(1, 4, size=size)) % 4
    predicted = np.where(rng.random(size) < skill, grades, wrong)
    sessions = np.repeat(np.arange(n_sessions), shots).astype(str)
    return sessions, grades, predicted
