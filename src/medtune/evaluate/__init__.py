"""Evaluation: predictions on the test set, metrics with confidence intervals, paired statistics."""
