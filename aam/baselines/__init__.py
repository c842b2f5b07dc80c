"""Baselines trained on the same splits as AAM."""
