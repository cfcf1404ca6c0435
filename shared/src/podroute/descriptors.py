"""File descriptors: raise the soft limit, and say when the process nears it and when it recovers.

Servers survive running out (EMFILE: Hypercorn's listener pauses, libuv accepts and drops), but
none of them says so. `DescriptorWatch` does: one error when the process reaches `warn_ratio` of
its limit, one warning when it is back under `clear_ratio`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource

logger = logging.getLogger("podroute.descriptors")
_FD_DIR = "/proc/self/fd"


def open_descriptors() -> int:
    """How many file descriptors this process holds."""
    return len(os.listdir(_FD_DIR))


def raise_descriptor_limit() -> None:
    """Raise the soft descriptor limit to the hard one (a busy listener needs many)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        logger.info("descriptor limit raised from %d to %d", soft, hard)


class DescriptorWatch:
    """Logs once when the process nears its descriptor limit, and once when it has recovered."""

    def __init__(self, warn_ratio: float = 0.9, clear_ratio: float = 0.7, interval_s: float = 1.0) -> None:
        self.warn_ratio = warn_ratio
        self.clear_ratio = clear_ratio
        self.interval_s = interval_s
        self.alarmed = False
        self.available = os.path.isdir(_FD_DIR)

    def check(self, used: int, limit: int) -> None:
        """Compare `used` descriptors with `limit` and log a change of state."""
        if not self.alarmed and used >= limit * self.warn_ratio:
            self.alarmed = True
            logger.error(
                "descriptor limit nearly reached: %d of %d open; new connections are refused until "
                "some close. Raise 'ulimit -n', lower the keep-alive timeout, or find the clients "
                "holding connections open",
                used,
                limit,
                extra={"descriptors": used, "descriptor_limit": limit},
            )
        elif self.alarmed and used <= limit * self.clear_ratio:
            self.alarmed = False
            logger.warning(
                "descriptors back to %d of %d; accepting connections normally",
                used,
                limit,
                extra={"descriptors": used, "descriptor_limit": limit},
            )

    async def run(self) -> None:
        """Check every `interval_s` until cancelled (does nothing where /proc is missing)."""
        if not self.available:
            return
        while True:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if limit != resource.RLIM_INFINITY:
                try:
                    used = open_descriptors()
                except OSError:  # listing /proc/self/fd needs a descriptor too: none is left
                    used = limit
                self.check(used, limit)
            await asyncio.sleep(self.interval_s)
