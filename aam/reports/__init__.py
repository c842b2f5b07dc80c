"""Comparison tables, statistics and figures."""
