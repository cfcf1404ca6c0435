"""The try-it panel's request: sent by the dashboard server to a base URL the user chose.

The browser cannot call another origin under the dashboard's Content-Security-Policy, so the
server sends the request. It may reach only the configured service base URL's origin
(`DASHBOARD_TRY_IT_URL`, derived from `FLASH_PORT`), the endpoint's own gateway URLs and hosts
listed in `DASHBOARD_TRY_IT_HOSTS`; never the dashboard itself, nor any other loopback port.
Redirects are not followed; bodies are capped.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

import httpx

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
LOOPBACK_HOSTS = frozenset({"localhost"})
MAX_SHOWN_BODY = 64 * 1024
TIMEOUT_S = 30.0


class TryItError(ValueError):
    """The request cannot be sent as asked; the message says why."""


@dataclass(frozen=True)
class TryItRequest:
    """What the user asked to send."""

    base_url: str
    method: str
    path: str
    query: str = ""
    body: str = ""
    bearer_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class TryItResult:
    """What came back: status, headers, body (pretty-printed JSON when it is JSON) and latency."""

    url: str
    method: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: str
    latency_ms: float
    truncated: bool = False


Origin = tuple[str, str, int]
"""(scheme, host, port); every loopback name is folded to 'loopback'."""


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> Origin | None:
    """The origin of an http(s) URL, or None when it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, "loopback" if _is_loopback(host) else host, port or default


@dataclass(frozen=True)
class AllowedTargets:
    """Where the try-it panel may send requests: these origins, any port of `hosts` ('*': any
    host), and never one of `refused` (the dashboard itself)."""

    origins: frozenset[Origin]
    hosts: tuple[str, ...] = ()
    refused: frozenset[Origin] = frozenset()

    @classmethod
    def of(
        cls, urls: Iterable[str], hosts: Iterable[str] = (), refused: Iterable[str] = ()
    ) -> AllowedTargets:
        """Allow the origins of `urls` and the `hosts`; refuse the origins of `refused`."""
        return cls(
            frozenset(o for o in map(origin_of, urls) if o is not None),
            tuple(hosts),
            frozenset(o for o in map(origin_of, refused) if o is not None),
        )

    def allows(self, origin: Origin) -> bool:
        """True when a request to `origin` may be sent."""
        if origin in self.refused:
            return False
        return origin in self.origins or "*" in self.hosts or origin[1] in self.hosts


def check_base_url(base_url: str, allowed: AllowedTargets) -> str:
    """The base URL without a trailing slash, if it is http(s) and its origin is allowed."""
    parts = urlsplit(base_url.strip())
    origin = origin_of(base_url)
    if origin is None:
        raise TryItError(
            "the base URL must start with http:// or https:// and name a host (and a valid port)"
        )
    if parts.username or parts.password:
        raise TryItError("put credentials in the bearer token field, not in the URL")
    if not allowed.allows(origin):
        raise TryItError(
            f"{parts.scheme}://{parts.netloc} is not allowed: the try-it panel calls the dev server "
            "(DASHBOARD_TRY_IT_URL, from FLASH_PORT), this endpoint's deployed gateway URLs and the "
            "hosts listed in DASHBOARD_TRY_IT_HOSTS, never the dashboard itself"
        )
    return base_url.strip().rstrip("/")


def build_url(base_url: str, path: str, query: str) -> str:
    """base + path (which must start with '/') + '?query' when given."""
    if not path.startswith("/") or path.startswith("//"):
        raise TryItError("the path must start with a single '/'")
    if any(ch in path for ch in "?# \t\r\n"):
        raise TryItError("put the query string in its own field; the path cannot hold '?', '#' or spaces")
    query = query.strip().lstrip("?")
    return f"{base_url}{path}" + (f"?{query}" if query else "")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _pretty(text: str, content_type: str) -> str:
    if "json" not in content_type:
        return text
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


async def send(request: TryItRequest, allowed: AllowedTargets, timeout_s: float = TIMEOUT_S) -> TryItResult:
    """Send the request and describe the response (raises TryItError for bad input or no answer)."""
    method = request.method.upper()
    if method not in HTTP_METHODS:
        raise TryItError(f"method must be one of {', '.join(HTTP_METHODS)}")
    url = build_url(check_base_url(request.base_url, allowed), request.path, request.query)
    headers = {"Accept": "application/json, */*"}
    content = request.body.encode() if request.body.strip() and method not in ("GET", "DELETE") else None
    if content is not None:
        headers["Content-Type"] = "application/json"
    if request.bearer_token:
        headers["Authorization"] = f"Bearer {request.bearer_token}"
    started = time.perf_counter()
    try:
        async with (
            httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False) as client,
            client.stream(method, url, content=content, headers=headers) as response,
        ):
            raw = b""
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) > MAX_SHOWN_BODY:
                    break
    except httpx.HTTPError as error:
        raise TryItError(
            f"no response from {url}: {type(error).__name__}: {error or 'connection failed'}"
        ) from None
    latency_ms = (time.perf_counter() - started) * 1000
    truncated = len(raw) > MAX_SHOWN_BODY
    text = raw[:MAX_SHOWN_BODY].decode(response.encoding or "utf-8", errors="replace")
    return TryItResult(
        url=url,
        method=method,
        status=response.status_code,
        reason=response.reason_phrase or _phrase(response.status_code),
        headers=sorted(response.headers.items()),
        body=_pretty(text, response.headers.get("content-type", "")) if not truncated else text,
        latency_ms=round(latency_ms, 1),
        truncated=truncated,
    )
