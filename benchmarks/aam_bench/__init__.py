"""AAM benchmark harness: throughput, peak memory, FLOP efficiency and scaling on prepared data.

Run it with ``python benchmarks/bench.py --data ibd|sim [--quick]``; see benchmarks/README.md.
"""
