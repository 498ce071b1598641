"""Benchmarks and sweeps: `python -m benchmarks.<name>`; outputs go to benchmarks/results/."""
