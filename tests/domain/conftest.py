"""Shared helpers for the domain tests."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import settings

# Decimal solvers (power, Shin) are slow per example; no per-example deadline for domain tests.
settings.register_profile("domain", deadline=None)
settings.load_profile("domain")


def D(text: str | int) -> Decimal:
    """Short Decimal constructor for tables."""
    return Decimal(text)
