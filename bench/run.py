"""`python -m bench.run [NAME ...]`: run benchmarks and record them in bench/RESULTS.md."""

from __future__ import annotations

import importlib
import os
import sys

from cellpulse.runtime import DEFAULTS, keep_freed_memory

SUITES = ("simulator", "ingest", "features", "train", "scoring", "e2e", "api", "disk")


def main(argv: list[str]) -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    keep_freed_memory()  # as every cellpulse command does (settings.keep_freed_memory)
    names = argv or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(SUITES)}")
    for name in names:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
