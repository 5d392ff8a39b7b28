"""How far training has progressed: what a loss sees of the schedule (for weights that change over training)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """The optimiser step being taken (0-based) out of ``total_steps``."""

    step: int
    total_steps: int

    @property
    def fraction(self) -> float:
        """How far training is, in [0, 1): 0 at the first step."""
        return self.step / max(self.total_steps, 1)
