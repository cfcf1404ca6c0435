"""The one place that talks HTTP to RunPod: settings, auth, retries and error mapping.

Every call goes through `Http`, which:

- sends `Authorization: Bearer <RUNPOD_API_KEY>` and a descriptive User-Agent (never the key in a
  URL, a log line, an exception or a repr);
- retries what cannot do harm twice: failed connects (nothing was sent), 429 (refused, waiting
  `Retry-After` or the `RateLimit` reset, whichever is longer), and, for idempotent calls only,
  5xx answers and connections lost after sending;
- for a non-idempotent call (a create) that may or may not have been applied, raises
  `AmbiguousResultError` instead, so the caller looks the record up by name before trying again.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

import podroute
from podroute.client_policy import RetryPolicy, retry_after_seconds
from podroute.providers.base import DeployError, ProviderUnavailableError

log = logging.getLogger("podroute.runpod")

ApiKind = Literal["rest", "graphql"]
_RATE_LIMIT_RESET = re.compile(r";t=(\d+)")


@dataclass(frozen=True)
class RunPodSettings:
    """Where RunPod's APIs are and how patiently to talk to them.

    `from_env()` reads the variables RunPod's own tools honour, so tests point it at a fake.
    `endpoint_url` is the data-plane URL of an endpoint, `{id}` standing for its id.
    """

    api_key: str = field(repr=False)
    api: ApiKind = "rest"
    graphql_url: str = "https://api.runpod.io/graphql"
    rest_url: str = "https://api.runpod.io/v2"
    serverless_url: str = "https://api.runpod.ai/v2"
    endpoint_url: str = "https://{id}.api.runpod.ai"
    timeout_s: float = 30.0
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(attempts=6, backoff_base_s=0.5, backoff_max_s=15.0)
    )
    poll_interval_s: float = 2.0
    template_release_wait_s: float = 180.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RunPodSettings:
        """Settings from the environment (keyword overrides win).

        | variable | default |
        | --- | --- |
        | `RUNPOD_API_KEY` | required |
        | `PODROUTE_RUNPOD_API` | `rest` (REST v2) or `graphql` |
        | `RUNPOD_API_BASE_URL` | `https://api.runpod.io` (GraphQL is at `/graphql`) |
        | `RUNPOD_REST_V2_API_URL` | `https://api.runpod.io/v2` |
        | `RUNPOD_SERVERLESS_API_URL` | `https://api.runpod.ai/v2` (the `/<id>/health` API) |
        | `RUNPOD_ENDPOINT_BASE_URL` | `https://api.runpod.ai` (endpoint `<id>` at `https://<id>.<host>`) |

        A `RUNPOD_ENDPOINT_BASE_URL` containing `{id}` is used as is (`http://127.0.0.1:9000/lb/{id}`).

        `RUNPOD_REST_API_URL` (REST v1) is deliberately unused: v1 cannot create load balancers.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        api_key = env.get("RUNPOD_API_KEY", "").strip()
        if api_key:
            values["api_key"] = api_key
        api = env.get("PODROUTE_RUNPOD_API", "").strip().lower()
        if api:
            if api not in ("rest", "graphql"):
                raise DeployError(f"PODROUTE_RUNPOD_API must be 'rest' or 'graphql', got {api!r}")
            values["api"] = api
        if base := env.get("RUNPOD_API_BASE_URL"):
            values["graphql_url"] = base.rstrip("/") + "/graphql"
        if rest := env.get("RUNPOD_REST_V2_API_URL"):
            values["rest_url"] = rest.rstrip("/")
        if serverless := env.get("RUNPOD_SERVERLESS_API_URL"):
            values["serverless_url"] = serverless.rstrip("/")
        if endpoint := env.get("RUNPOD_ENDPOINT_BASE_URL"):
            values["endpoint_url"] = endpoint_url_template(endpoint)
        values.update(overrides)
        if not values.get("api_key"):
            raise DeployError(
                "RUNPOD_API_KEY is not set: create an API key with read/write access to serverless "
                "at https://console.runpod.io/user/settings and export RUNPOD_API_KEY=<key>"
            )
        return cls(**values)

    def url_of(self, endpoint_id: str) -> str:
        """The data-plane base URL of an endpoint."""
        return self.endpoint_url.replace("{id}", endpoint_id)


def endpoint_url_template(base: str) -> str:
    """`https://api.runpod.ai` -> `https://{id}.api.runpod.ai` (as Flash does); `{id}` kept as is."""
    base = base.rstrip("/")
    if "{id}" in base:
        return base
    scheme, _, host = base.partition("://")
    return f"{scheme}://{{id}}.{host}" if host else f"https://{{id}}.{scheme}"


class RunPodApiError(DeployError):
    """RunPod refused a request; `status` is the HTTP status, `errors` the field problems it listed."""

    def __init__(self, message: str, status: int = 0, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []


class RunPodAuthError(RunPodApiError):
    """The API key was refused (401/403)."""


class RunPodUnavailableError(ProviderUnavailableError):
    """RunPod kept failing (5xx, 429, lost connections) through every retry; try again later."""


class AmbiguousResultError(DeployError):
    """A non-idempotent call failed after it was sent: it may or may not have been applied."""


class NotFoundError(RunPodApiError):
    """The record does not exist (any more)."""


class TemplateInUseError(RunPodApiError):
    """A template cannot be deleted yet: an endpoint or pod uses it (or used it moments ago)."""


class Http:
    """The one place that sends requests to RunPod (auth, retries, error mapping)."""

    def __init__(self, settings: RunPodSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=settings.timeout_s,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {settings.api_key}",
                "User-Agent": f"podroute/{podroute.__version__} (+runpod provider)",
            },
        )

    def __repr__(self) -> str:
        return f"<RunPod HTTP client api={self.settings.api}>"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def request(
        self, method: str, url: str, *, what: str, idempotent: bool, json: Any = None
    ) -> httpx.Response:
        """Send one logical request, retrying as the module docstring says; returns a < 400 answer.

        401/403 raise RunPodAuthError, 404 NotFoundError, other 4xx RunPodApiError with the fields
        RunPod named.
        """
        policy = self.settings.retry
        last = ""
        for attempt in range(policy.attempts):
            wait: float | None = None
            try:
                response = self._client.request(method, url, json=json)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
                last = f"cannot connect ({type(error).__name__})"
            except httpx.TransportError as error:
                last = f"connection lost after sending ({type(error).__name__})"
                if not idempotent:
                    raise AmbiguousResultError(f"RunPod {what}: {last}") from None
            else:
                log.debug("runpod %s %s -> %s", method, _path_of(url), response.status_code)
                if response.status_code == 429:
                    last = "rate limited (429)"
                    wait = _rate_limit_wait(response)
                elif response.status_code >= 500:
                    last = f"server error {response.status_code}"
                    if not idempotent:
                        raise AmbiguousResultError(f"RunPod {what}: {last}")
                else:
                    _raise_for_client_error(response, what)
                    return response
            if attempt + 1 < policy.attempts:
                delay = policy.delay(attempt, wait)
                log.info("runpod %s: %s; retrying in %.2fs", what, last, delay)
                self._sleep(delay)
        raise RunPodUnavailableError(
            f"RunPod {what} still failing after {policy.attempts} tries (last: {last}); "
            "check https://uptime.runpod.io and try again later"
        )


def _path_of(url: str) -> str:
    return httpx.URL(url).path


def _rate_limit_wait(response: httpx.Response) -> float | None:
    """max(Retry-After, the RateLimit header's reset), as runpod-mcp does."""
    candidates = [s for s in (retry_after_seconds(response),) if s is not None]
    candidates += [float(m) for m in _RATE_LIMIT_RESET.findall(response.headers.get("RateLimit", ""))[:1]]
    return max(candidates) if candidates else None


def _problem_message(response: httpx.Response) -> tuple[str, list[str]]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase, []
    if not isinstance(body, dict):
        return str(body)[:300], []
    errors = [str(e) for e in body.get("errors") or [] if not isinstance(e, dict)]
    errors += [str(e.get("message")) for e in body.get("errors") or [] if isinstance(e, dict)]
    detail = str(body.get("detail") or body.get("message") or body.get("error") or body.get("title") or "")
    return detail, errors


def _raise_for_client_error(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status < 400:
        return
    detail, errors = _problem_message(response)
    listed = f" ({'; '.join(errors)})" if errors else ""
    if status in (401, 403):
        raise RunPodAuthError(
            f"RunPod refused the API key for {what} ({status}): check that RUNPOD_API_KEY is a current "
            "key with read/write access to serverless (https://console.runpod.io/user/settings)",
            status,
        )
    error_type = NotFoundError if status == 404 else RunPodApiError
    raise error_type(f"RunPod refused {what} ({status}): {detail}{listed}", status, errors)
