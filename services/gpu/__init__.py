"""The GPU service: device information and a torch computation (see `endpoint.py`).

Run it alone with `python -m services.gpu` (http://localhost:8000, FLASH_HOST / FLASH_PORT), or
with every other service under `/gpu` with `podroute dev`.
"""
