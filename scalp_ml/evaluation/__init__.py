"""Scoring predictions: the study's metrics and the evaluation report."""
