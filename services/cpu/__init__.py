"""The CPU service: text validation and transformation routes (see `endpoint.py`).

Run it alone with `python -m services.cpu` (http://localhost:8000, FLASH_HOST / FLASH_PORT), or
with every other service under `/cpu` with `podroute dev`.
"""
