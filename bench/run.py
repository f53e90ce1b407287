"""`python -m bench.run [NAME ...] [--worlds N] [--tuning] [--labels on|off]`: run benchmarks
and record them in bench/RESULTS.md (the options are the quality suite's)."""

from __future__ import annotations

import importlib
import os
import sys

from cellpulse.runtime import DEFAULTS, keep_freed_memory

SUITES = ("simulator", "ingest", "features", "train", "scoring", "e2e", "api", "disk", "quality")


def main(argv: list[str]) -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    keep_freed_memory()  # as every cellpulse command does (settings.keep_freed_memory)
    # Options (`--worlds 3`, `--tuning`) follow the names and belong to the quality suite.
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:first_option] or list(SUITES), argv[first_option:]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(SUITES)}")
    if options and names != ["quality"]:
        raise SystemExit(
            f"options {options} are the quality suite's: `quality {' '.join(options)}`"
        )
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if name == "quality" and options:
            args = module.parse(options)
            module.main(args.worlds, args.tuning, args.labels, args.out)
        else:
            module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
