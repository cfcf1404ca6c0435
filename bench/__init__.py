"""Benchmarks (not part of CI or the tests): `python bench/run.py`, what `nox -s bench` runs."""
