"""Importable services and helpers that tests serve through `podroute serve` in a subprocess."""
