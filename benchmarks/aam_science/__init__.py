"""Real-data benchmark of AAM against the random forest (``benchmarks/science.py``)."""
