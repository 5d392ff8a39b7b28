"""One static HTML report of a results folder: ``index.html`` (every benchmark's tables, sortable, with their
intervals and directions, trade-off and per-checkpoint plots, robustness tables) and ``report/runs/<run>.html``
(a run's settings, provenance, training curve and per-sample answers beside its starting model's).

It opens from disk: plotly's JavaScript, the style and the thumbnails are written into the folder, nothing is
fetched. ``python results_collect.py`` writes it (``report=false`` skips); ``python -m unlearning.reporting
[run_root] [out_dir]`` rewrites it from tables already collected.
"""

from unlearning.reporting.render import write_report

__all__ = ["write_report"]
