"""Helpers shared by the conversion and export tests."""

from __future__ import annotations

from dataclasses import replace


def force_unfused(monkeypatch, reason: str = "forced by the test") -> None:
    """Make the converter's plan mark every recurrent layer unfusable, as an unsupported layer would be."""
    from edgeseq.convert import converter

    real = converter.make_plan

    def plan(model):
        found = real(model)
        return replace(found, unfusable={layer.name: reason for layer in found.recurrent})

    monkeypatch.setattr(converter, "make_plan", plan)
