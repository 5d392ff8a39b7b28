"""The shared unlearning engine.

Importing it (every entry point does, before its ``@hydra.main``) makes each Hydra app defined afterwards write
``***`` for key-shaped values on stdout and stderr, Hydra's own messages included (``unlearning.runs.console``).
"""

from unlearning.runs.console import guard_hydra_apps

guard_hydra_apps()
