"""The CPU service's routes: GET /health, POST /validate and POST /transform.

Resource class: `CpuLoadBalancerSlsResource`, the deployable class, not `CpuLiveLoadBalancer`.
The same file is served by `podroute dev`, by `python -m services.cpu` and, later, by the deployed
worker, so it must not need editing between development and deployment. A live class would add
`/execute` (call a function by name), which every function here does not need: each one already is
a documented HTTP route, and a deployed worker must not expose `/execute` at all.

`python -m services.cpu.endpoint` calls each function once with sample input and prints the results.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated

from pydantic import Field
from typing_extensions import TypedDict

from podroute import CpuLoadBalancerSlsResource, remote

api = CpuLoadBalancerSlsResource(
    name="cpu",
    instanceIds=["cpu3c-1-2"],
    workersMin=0,
    workersMax=3,
    idleTimeout=60,
)

MAX_TEXT_CHARS = 1_000_000
"""The longest text /validate and /transform accept, in characters."""


def _reverse(text: str) -> str:
    return text[::-1]


OPERATIONS: dict[str, Callable[[str], str]] = {
    "uppercase": str.upper,
    "lowercase": str.lower,
    "reverse": _reverse,
    "title": str.title,
}
"""The operations /transform applies, by name."""

_VALID_OPERATIONS = ", ".join(OPERATIONS)

Text = Annotated[
    str,
    Field(
        description="The text: at least one non-whitespace character, "
        f"at most {MAX_TEXT_CHARS:,} characters.",
        examples=["Hello world from load balancer"],
    ),
]
Operation = Annotated[
    str,
    Field(description=f"What to do with the text: one of {_VALID_OPERATIONS}.", examples=["uppercase"]),
]


class HealthStatus(TypedDict):
    """The answer of GET /health."""

    status: str
    service: str


class TextReport(TypedDict):
    """The answer of POST /validate."""

    status: str
    is_valid: bool
    character_count: int
    word_count: int
    average_word_length: float


class TransformResult(TypedDict):
    """The answer of POST /transform."""

    status: str
    original: str
    transformed: str
    operation: str


def _check_text(text: str, purpose: str) -> None:
    if not text.strip():
        raise ValueError(f"text is empty or only whitespace; send some text {purpose}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(
            f"text has {len(text):,} characters, more than the {MAX_TEXT_CHARS:,} allowed; "
            "split it and send the parts in separate requests"
        )


@remote(api, method="GET", path="/health")
async def cpu_health() -> HealthStatus:
    """Health of the CPU service."""
    return {"status": "healthy", "service": "cpu"}


@remote(api, method="POST", path="/validate")
async def validate_text(text: Text) -> TextReport:
    """Validate and measure a text.

    Counts characters and whitespace-separated words; `average_word_length` is the mean number of
    characters per word (5.2 for "Hello world from load balancer").
    """
    _check_text(text, "to validate")
    words = text.split()
    return {
        "status": "success",
        "is_valid": True,
        "character_count": len(text),
        "word_count": len(words),
        "average_word_length": sum(map(len, words)) / len(words),
    }


@remote(api, method="POST", path="/transform")
async def transform_text(text: Text, operation: Operation) -> TransformResult:
    """Transform a text: uppercase, lowercase, reverse or title case.

    An unknown operation is answered 400 with the list of valid ones.
    """
    _check_text(text, f"to transform with one of the operations {_VALID_OPERATIONS}")
    transform = OPERATIONS.get(operation)
    if transform is None:
        raise ValueError(f"unknown operation {operation!r}; valid operations: {_VALID_OPERATIONS}")
    return {"status": "success", "original": text, "transformed": transform(text), "operation": operation}


async def _demo() -> None:
    samples = {
        "cpu_health()": cpu_health(),
        'validate_text("Hello world from load balancer")': validate_text("Hello world from load balancer"),
        'transform_text("hello world", "uppercase")': transform_text("hello world", "uppercase"),
    }
    for call, result in samples.items():
        print(f"{call}\n  -> {json.dumps(await result)}")


if __name__ == "__main__":
    asyncio.run(_demo())
