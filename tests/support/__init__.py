"""Test support that is no part of any app package: demo projects, scratch databases, and
importable services that tests serve through `podroute serve` in a subprocess."""
