"""``python -m unlearning.reporting [run_root] [out_dir]``: rewrite ``out_dir/index.html`` and ``out_dir/report/``
from the tables ``results_collect.py`` already wrote there (defaults: runs, results)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from unlearning.reporting import write_report

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    arguments = sys.argv[1:]
    print(write_report(Path(arguments[0] if arguments else "runs"), Path(arguments[1] if len(arguments) > 1
                                                                        else "results")))
