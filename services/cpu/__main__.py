"""`python -m services.cpu`: serve the CPU service alone on FLASH_HOST:FLASH_PORT (localhost:8000)."""

import sys

from podroute.cli import run_standalone

if __name__ == "__main__":
    sys.exit(run_standalone("services.cpu.endpoint"))
