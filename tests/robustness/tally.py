"""What the robustness suite tried: hostile inputs fed, faults injected, rows lost.

Tests record as they go (one call per input actually fed or fault actually injected), and the
suite prints the totals at the end, so the README's reliability numbers come from a run, not from
counting test functions by hand.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    inputs: Counter = field(default_factory=Counter)  # area -> hostile inputs fed
    faults: Counter = field(default_factory=Counter)  # area -> faults injected
    rows_expected: int = 0  # good rows / samples that had to survive a fault
    rows_arrived: int = 0

    def input(self, area: str, count: int = 1) -> None:
        self.inputs[area] += count

    def fault(self, area: str, count: int = 1) -> None:
        self.faults[area] += count

    def rows(self, expected: int, arrived: int) -> None:
        """Good records that had to come through a fault: ``expected`` of them, ``arrived`` did."""
        self.rows_expected += expected
        self.rows_arrived += arrived

    @property
    def rows_lost(self) -> int:
        return self.rows_expected - self.rows_arrived

    def summary(self) -> str:
        def line(counter: Counter) -> str:
            return ", ".join(f"{area} {n}" for area, n in sorted(counter.items())) or "none"

        return (f"robustness: {sum(self.inputs.values())} hostile inputs tried ({line(self.inputs)}); "
                f"{sum(self.faults.values())} faults injected ({line(self.faults)}); "
                f"rows lost = {self.rows_lost} of {self.rows_expected} that had to survive")


TALLY = Tally()
