"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error PodRoute answers has the same body shape:
`{"type", "title", "status", "detail", "request_id", ...}`, with `errors` listing the fields for
422. Route code raises `ValueError` for bad input (answered 400) or `HTTPError` for any other status.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"


class HTTPError(Exception):
    """Raise from a route (or the framework) to answer `status` with a problem+json body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _phrase(status)
        self.headers = headers or {}
        self.extra = extra or {}

    def to_problem(self, request_id: str) -> dict[str, Any]:
        """The RFC 9457 body for this error."""
        return problem_body(self.status, self.detail, request_id, title=self.title, **self.extra)


class RequestValidationError(HTTPError):
    """The request's path, query or body did not match the route's parameters (422)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in errors[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        super().__init__(
            422,
            f"the request does not match the route's parameters ({fields}{more}); see 'errors'",
            extra={"errors": errors},
        )


class MalformedBodyError(HTTPError):
    """The body could not be decoded at all, e.g. invalid JSON (400)."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


class UnsupportedMediaTypeError(HTTPError):
    """The body's Content-Type is one the route does not accept (415)."""

    def __init__(self, media_type: str, others: list[str]) -> None:
        also = f" (or {', '.join(others)})" if others else ""
        super().__init__(
            415,
            f"this route does not accept a {media_type} body; send JSON with "
            f"Content-Type: application/json{also}",
        )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int, detail: str, request_id: str, *, title: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Build a problem details object with PodRoute's standard members."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    body.update(extra)
    return body


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details, the body of every error response.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "example": "about:blank"},
        "title": {"type": "string", "example": "Bad Request"},
        "status": {"type": "integer", "example": 400},
        "detail": {"type": "string", "example": "text must not be empty"},
        "request_id": {"type": "string", "description": "Also sent as the X-Request-ID header."},
        "errors": {
            "type": "array",
            "description": "422 only: one entry per invalid field.",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
"""JSON Schema of the problem body, referenced by every documented error response."""
