"""Fixtures for the domain tests (none needed yet: the domain is pure)."""
