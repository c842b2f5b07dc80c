"""Which ASVs drive a trained model's predictions (``aam explain``)."""

from aam.explain.run import ExplainConfig, ExplainPaths, Explanation, explain, run_explain

__all__ = ["ExplainConfig", "ExplainPaths", "Explanation", "explain", "run_explain"]
