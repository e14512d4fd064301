"""How long work reports progress: a small interface the CLI implements with rich."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def step(self, message: str) -> None:
        """A stage of the work begins ('converting', 'checking parity', ...)."""

    def epoch(self, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        """Training finished epoch `epoch` (1-based) of at most `epochs`."""


class Silent:
    """Progress that reports nothing, for library use and tests."""

    def step(self, message: str) -> None:
        pass

    def epoch(self, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        pass
