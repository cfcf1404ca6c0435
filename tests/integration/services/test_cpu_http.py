"""The CPU service over HTTP: every route and every error path on a real server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

SEED_TEXT = "Hello world from load balancer"


def post(base: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(base + path, timeout=30, **kwargs)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["request_id"] == response.headers["x-request-id"]
    return body


def test_health(cpu_url: str) -> None:
    response = httpx.get(cpu_url + "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "service": "cpu"}


def test_validate_answers_the_documented_shape_with_the_true_mean(cpu_url: str) -> None:
    response = post(cpu_url, "/validate", json={"text": SEED_TEXT})
    assert response.status_code == 200
    assert response.json() == {
        "status": "success",
        "is_valid": True,
        "character_count": 30,
        "word_count": 5,
        "average_word_length": 5.2,
    }


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("uppercase", "HELLO WORLD"),
        ("lowercase", "hello world"),
        ("reverse", "dlrow olleh"),
        ("title", "Hello World"),
    ],
)
def test_transform_each_operation(cpu_url: str, operation: str, expected: str) -> None:
    response = post(cpu_url, "/transform", json={"text": "hello world", "operation": operation})
    assert response.status_code == 200
    assert response.json() == {
        "status": "success",
        "original": "hello world",
        "transformed": expected,
        "operation": operation,
    }


@pytest.mark.parametrize("text", ["", "   \n\t"])
@pytest.mark.parametrize(("path", "extra"), [("/validate", {}), ("/transform", {"operation": "reverse"})])
def test_empty_or_blank_text_is_400(cpu_url: str, path: str, extra: dict[str, str], text: str) -> None:
    body = problem(post(cpu_url, path, json={"text": text, **extra}), 400)
    assert "text is empty or only whitespace; send some text" in body["detail"]


def test_unknown_operation_is_400_listing_the_valid_ones(cpu_url: str) -> None:
    body = problem(post(cpu_url, "/transform", json={"text": "hi", "operation": "shout"}), 400)
    assert (
        body["detail"] == "unknown operation 'shout'; valid operations: uppercase, lowercase, reverse, title"
    )


@pytest.mark.parametrize(("path", "extra"), [("/validate", {}), ("/transform", {"operation": "reverse"})])
def test_text_over_the_limit_is_400_saying_to_split_it(
    cpu_url: str, path: str, extra: dict[str, str]
) -> None:
    body = problem(post(cpu_url, path, json={"text": "ab " * 400_000, **extra}), 400)
    assert body["detail"] == (
        "text has 1,200,000 characters, more than the 1,000,000 allowed; "
        "split it and send the parts in separate requests"
    )


@pytest.mark.parametrize(
    ("path", "payload", "loc", "kind"),
    [
        ("/validate", {"text": 123}, ["body", "text"], "string_type"),
        ("/validate", {}, ["body", "text"], "missing"),
        ("/validate", {"text": "hi", "txt": "typo"}, ["body", "txt"], "extra_forbidden"),
        ("/transform", {"text": "hi"}, ["body", "operation"], "missing"),
        ("/transform", {"text": "hi", "operation": ["uppercase"]}, ["body", "operation"], "string_type"),
        ("/transform", {"text": "hi", "operation": "title", "mode": 1}, ["body", "mode"], "extra_forbidden"),
        ("/transform", ["hi", "title"], ["body"], "model_type"),
    ],
)
def test_wrong_types_missing_and_unknown_keys_are_422(
    cpu_url: str, path: str, payload: Any, loc: list[str], kind: str
) -> None:
    body = problem(post(cpu_url, path, json=payload), 422)
    assert {"loc": loc, "type": kind} in [{"loc": e["loc"], "type": e["type"]} for e in body["errors"]]


def test_invalid_json_is_400(cpu_url: str) -> None:
    body = problem(
        post(cpu_url, "/validate", content=b'{"text": "hi"', headers={"content-type": "application/json"}),
        400,
    )
    assert "not valid JSON" in body["detail"]


def test_no_execute_route_on_the_deployable_resource(cpu_url: str) -> None:
    problem(post(cpu_url, "/execute", json={"function": "validate_text", "kwargs": {"text": "hi"}}), 404)
