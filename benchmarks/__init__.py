"""Benchmarks: each module is runnable as ``python -m benchmarks.NAME --profile quick|paper``."""
