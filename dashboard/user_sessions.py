"""Server-side session records: the cookie carries a random token, the database says whether it
still opens a session. Deleting a record (logout, password change, "log out everywhere") ends
that session at once, even for a copy of the cookie taken before."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.models import User, UserSession, as_utc, utc_now

TOUCH_EVERY = timedelta(minutes=1)
"""How stale `last_seen_at` may get before a request writes it again (saves a write per request)."""


def hash_token(token: str) -> str:
    """The stored form of a session token (its SHA-256, hex): a leaked table opens no session."""
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(session: AsyncSession, user: User, remote_addr: str, lifetime_s: int) -> str:
    """Record a new session of `user` and return its token (for the signed cookie)."""
    token = secrets.token_urlsafe(32)
    now = utc_now()
    session.add(
        UserSession(
            token_hash=hash_token(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=lifetime_s),
            remote_addr=remote_addr[:64],
        )
    )
    await session.flush()
    return token


async def find_session_user(session: AsyncSession, token: str) -> User | None:
    """The active user whose unexpired session this token opens, or None."""
    found = (
        await session.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.token_hash == hash_token(token))
        )
    ).first()
    if found is None:
        return None
    record, user = found
    now = utc_now()
    if as_utc(record.expires_at) <= now or not user.is_active:
        return None
    if now - as_utc(record.last_seen_at) > TOUCH_EVERY:
        record.last_seen_at = now
    return user


async def close_session(session: AsyncSession, token: str) -> None:
    """End the session this token opens (nothing happens when there is none)."""
    await session.execute(delete(UserSession).where(UserSession.token_hash == hash_token(token)))


async def close_sessions(session: AsyncSession, user_id: int | None = None, *, keep_token: str = "") -> int:
    """End every session (of one user when `user_id` is given), except the one `keep_token` opens;
    return how many ended."""
    query = delete(UserSession)
    if user_id is not None:
        query = query.where(UserSession.user_id == user_id)
    if keep_token:
        query = query.where(UserSession.token_hash != hash_token(keep_token))
    result = await session.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)


async def count_sessions(session: AsyncSession, user_id: int | None = None) -> int:
    """How many unexpired sessions exist (of one user when `user_id` is given)."""
    query = select(func.count()).select_from(UserSession).where(UserSession.expires_at > utc_now())
    if user_id is not None:
        query = query.where(UserSession.user_id == user_id)
    return int(await session.scalar(query) or 0)


async def prune_sessions(session: AsyncSession) -> None:
    """Forget expired sessions."""
    await session.execute(delete(UserSession).where(UserSession.expires_at <= utc_now()))
