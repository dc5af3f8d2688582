"""The record of one measurement of device-memory traffic: bytes read and written, kernel launches, and
launches per op. The ops' traffic formulas (getkern/ops) return it and the counters of
getkern/profiling/traffic.py fill it; it lives below both so that the ops need not import profiling."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Traffic:
    bytes_read: int = 0
    bytes_written: int = 0
    launches: int = 0
    ops: Counter = field(default_factory=Counter)

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written
