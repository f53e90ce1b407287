"""Benchmarks with recorded results (see bench/RESULTS.md)."""

import cellpulse  # noqa: F401  (its process defaults must precede polars loading)
