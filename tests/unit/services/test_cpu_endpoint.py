"""The CPU service's functions called directly, as `python -m services.cpu.endpoint` does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from podroute import CpuLoadBalancerSlsResource
from services.cpu import endpoint
from services.cpu.endpoint import MAX_TEXT_CHARS, OPERATIONS, transform_text, validate_text
from tests.helpers import REPO_ROOT


async def test_average_word_length_is_the_true_mean() -> None:
    report = await validate_text("Hello world from load balancer")
    assert report == {
        "status": "success",
        "is_valid": True,
        "character_count": 30,
        "word_count": 5,
        "average_word_length": 5.2,
    }


async def test_words_are_split_on_any_whitespace_and_characters_counted_as_sent() -> None:
    report = await validate_text("  a\tbb\n\nccc  héllo ")
    assert report["word_count"] == 4
    assert report["average_word_length"] == (1 + 2 + 3 + 5) / 4
    assert report["character_count"] == 19


@pytest.mark.parametrize("text", ["", " ", "\t\n  \r"])
async def test_empty_or_blank_text_is_rejected_with_what_to_send(text: str) -> None:
    with pytest.raises(ValueError, match="empty or only whitespace; send some text to validate"):
        await validate_text(text)
    with pytest.raises(ValueError, match="uppercase, lowercase, reverse, title"):
        await transform_text(text, "uppercase")


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("uppercase", "HELLO WORLD"),
        ("lowercase", "hello world"),
        ("reverse", "dlroW olleH"),
        ("title", "Hello World"),
    ],
)
async def test_each_operation(operation: str, expected: str) -> None:
    result = await transform_text("Hello World", operation)
    assert result == {
        "status": "success",
        "original": "Hello World",
        "transformed": expected,
        "operation": operation,
    }


async def test_unknown_operation_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as raised:
        await transform_text("hello", "UPPERCASE")
    message = str(raised.value)
    assert "'UPPERCASE'" in message
    assert all(name in message for name in OPERATIONS)


async def test_text_up_to_the_limit_is_accepted_and_beyond_it_rejected() -> None:
    assert (await validate_text("a" * MAX_TEXT_CHARS))["character_count"] == MAX_TEXT_CHARS
    with pytest.raises(ValueError, match=r"1,000,001 characters, more than the 1,000,000 allowed; split it"):
        await validate_text("a" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(ValueError, match="more than the 1,000,000 allowed"):
        await transform_text("a" * (MAX_TEXT_CHARS + 1), "reverse")


def test_the_resource_is_the_deployable_cpu3c_class() -> None:
    assert type(endpoint.api) is CpuLoadBalancerSlsResource
    assert not endpoint.api.live
    assert endpoint.api.instanceIds == ["cpu3c-1-2"]


def test_running_the_module_prints_each_function_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cpu.endpoint"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"average_word_length": 5.2' in result.stdout
    assert '"transformed": "HELLO WORLD"' in result.stdout
    assert '"service": "cpu"' in result.stdout
