"""Login throttling by (address, user) with growing delays, never a lock on the account.

After `free` failed logins for one username from one address, each further attempt from that pair
waits `base * 2**(failures - free)` seconds after the last failure (capped at the window). The same
user from another address is not slowed down, so an attacker cannot lock the real user out. One
address guessing many usernames is slowed the same way after `free * SPRAY_FACTOR` failures. A
successful login clears its pair's count; `python -m dashboard clear-throttles` clears them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.models import LoginAttempt, as_utc, utc_now

SPRAY_FACTOR = 4
"""An address gets `free * SPRAY_FACTOR` failures over all usernames before it is slowed down."""


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures are free, the first delay after them, and the window (also the cap)."""

    free_failures: int
    base_delay_s: float
    window_s: int


def delay_after(failures: int, free: int, policy: ThrottlePolicy) -> float:
    """Seconds to wait after the last of `failures` failures (0 while they are within `free`)."""
    if failures < free:
        return 0.0
    return float(min(policy.window_s, policy.base_delay_s * 2 ** min(failures - free, 30)))


async def _failures(
    session: AsyncSession, since: datetime, *conditions: ColumnElement[bool]
) -> tuple[int, datetime | None]:
    row = (
        await session.execute(
            select(func.count(), func.max(LoginAttempt.at)).where(
                LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since, *conditions
            )
        )
    ).one()
    return int(row[0] or 0), row[1]


def _wait(failures: int, last: datetime | None, free: int, policy: ThrottlePolicy, now: datetime) -> float:
    if last is None:
        return 0.0
    ready_at = as_utc(last) + timedelta(seconds=delay_after(failures, free, policy))
    return max(0.0, (ready_at - now).total_seconds())


async def login_wait_s(session: AsyncSession, username: str, address: str, policy: ThrottlePolicy) -> int:
    """Whole seconds this address must wait before trying this username again (0: try now)."""
    now = utc_now()
    since = now - timedelta(seconds=policy.window_s)
    pair, pair_last = await _failures(
        session, since, LoginAttempt.remote_addr == address, LoginAttempt.username == username
    )
    spray, spray_last = await _failures(session, since, LoginAttempt.remote_addr == address)
    wait = max(
        _wait(pair, pair_last, policy.free_failures, policy, now),
        _wait(spray, spray_last, policy.free_failures * SPRAY_FACTOR, policy, now),
    )
    return math.ceil(wait)


async def record_login_attempt(session: AsyncSession, username: str, address: str, succeeded: bool) -> None:
    """Store one attempt; a success forgets the pair's earlier failures."""
    if succeeded:
        await session.execute(
            delete(LoginAttempt).where(LoginAttempt.remote_addr == address, LoginAttempt.username == username)
        )
    session.add(LoginAttempt(username=username, remote_addr=address, succeeded=succeeded, at=utc_now()))
    await session.flush()


async def clear_throttles(session: AsyncSession, username: str = "", address: str = "") -> int:
    """Forget failed attempts (of one username and/or one address when given); return how many."""
    query = delete(LoginAttempt).where(LoginAttempt.succeeded.is_(False))
    if username:
        query = query.where(LoginAttempt.username == username)
    if address:
        query = query.where(LoginAttempt.remote_addr == address)
    result = await session.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)


async def prune_login_attempts(session: AsyncSession, window_s: int) -> None:
    """Forget attempts older than the window."""
    await session.execute(
        delete(LoginAttempt).where(LoginAttempt.at < utc_now() - timedelta(seconds=window_s))
    )
