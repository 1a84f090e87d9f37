#!/usr/bin/env python
"""Training speed, measured: ``python bench.py step|pipeline|overhead|fold ...``. The
subcommands, their commands and what each prints are described in benchmarks/__init__.py and
BENCHMARKS.md."""
from benchmarks.cli import main
from utils.cli import run_main

if __name__ == "__main__":
    run_main(main)  # a bad model flag or file: one line and the scripts' exit codes
