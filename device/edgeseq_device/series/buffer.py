"""A series' window: the last T rows in a ring buffer that is always contiguous."""

from __future__ import annotations

import numpy as np


class WindowBuffer:
    """The last T rows, always contiguous: each row is written at i and i+T of a [2T, F] array, no copying."""

    def __init__(self, window: int, width: int) -> None:
        self.window = window
        self._data = np.zeros((2 * window, width), dtype=np.float64)
        self._next = 0
        self.filled = 0

    def push(self, row: np.ndarray) -> None:
        self._data[self._next] = row
        self._data[self._next + self.window] = row
        self._next = (self._next + 1) % self.window
        self.filled += 1

    def push_many(self, rows: np.ndarray) -> None:
        """Push `rows` [n, F], oldest first: as n pushes, in a few array writes."""
        count = min(len(rows), self.window)
        slots = (self._next + len(rows) - count + np.arange(count)) % self.window
        self._data[slots] = self._data[slots + self.window] = rows[len(rows) - count :]
        self._next = (self._next + len(rows)) % self.window
        self.filled += len(rows)

    def reset(self) -> None:
        self.filled = 0

    def last(self) -> np.ndarray:
        """The newest row; valid while `filled >= 1`."""
        return self._data[self._next + self.window - 1]

    def newest(self, count: int) -> np.ndarray:
        """The newest `count` rows, oldest first (a view); valid while `count <= min(filled, window)`."""
        return self._data[self._next + self.window - count : self._next + self.window]

    def view(self) -> np.ndarray:
        """The buffered rows oldest first; valid while `filled >= window`."""
        return self._data[self._next : self._next + self.window]
