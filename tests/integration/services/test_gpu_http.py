"""The GPU service over HTTP: every route, every body format and every error path on a real server."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import torch

ROOT = 3_037_000_499  # the largest integer whose square fits in int64
CUDA = torch.cuda.is_available()
DEVICE = "cuda:0" if CUDA else "cpu"


def compute(base: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(base + "/compute", timeout=60, **kwargs)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def stats(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "compute_time_ms"}


def test_health(gpu_url: str) -> None:
    assert httpx.get(gpu_url + "/health").json() == {"status": "healthy", "service": "gpu"}


def test_info_tells_the_truth_about_this_machine(gpu_url: str) -> None:
    info = httpx.get(gpu_url + "/info").json()
    assert info["torch_version"] == torch.__version__
    assert info["cuda_available"] is CUDA and info["device"] == DEVICE
    assert info["device_count"] == len(info["devices"]) == (torch.cuda.device_count() if CUDA else 0)
    assert info["cpu_threads"] >= 1


def test_the_seed_example_answers_the_documented_shape(gpu_url: str) -> None:
    response = compute(gpu_url, json={"numbers": [1, 2, 3, 4, 5]})
    assert response.status_code == 200
    body = response.json()
    assert stats(body) == {
        "status": "success",
        "input_count": 5,
        "sum_of_squares": 55,
        "mean": 3.0,
        "max": 5,
        "min": 1,
        "device": DEVICE,
    }
    assert isinstance(body["compute_time_ms"], float) and body["compute_time_ms"] >= 0


def test_integers_are_exact_and_floats_accepted(gpu_url: str) -> None:
    exact = compute(gpu_url, json={"numbers": [ROOT, -1, 1]}).json()
    assert exact["sum_of_squares"] == ROOT**2 + 2 and exact["max"] == ROOT
    floats = compute(gpu_url, json={"numbers": [1, 2.5, -0.5]}).json()
    assert (floats["sum_of_squares"], floats["max"], floats["min"]) == (7.5, 2.5, -0.5)
    assert floats["mean"] == pytest.approx(1.0)


def test_a_million_numbers_in_json(gpu_url: str) -> None:
    values = np.random.default_rng(5).integers(-(10**6), 10**6, 1_000_000)
    body = compute(
        gpu_url,
        content=orjson.dumps({"numbers": values.tolist()}),
        headers={"content-type": "application/json"},
    ).json()
    assert body["input_count"] == 1_000_000
    assert body["sum_of_squares"] == int((values.astype(object) ** 2).sum())
    assert (body["max"], body["min"]) == (int(values.max()), int(values.min()))


def test_a_million_floats_in_json(gpu_url: str) -> None:
    values = np.random.default_rng(6).standard_normal(1_000_000) * 1e3
    body = compute(
        gpu_url,
        content=orjson.dumps({"numbers": values.tolist()}),
        headers={"content-type": "application/json"},
    ).json()
    assert body["input_count"] == 1_000_000
    assert (body["max"], body["min"]) == (float(values.max()), float(values.min()))  # the exact doubles
    assert body["sum_of_squares"] == pytest.approx(float(np.dot(values, values)), rel=1e-12)


def in_pieces(data: bytes, size: int) -> Iterator[bytes]:
    """`data` sent as a chunked body, `size` bytes at a time (parsed while it arrives)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_floats_parsed_while_a_chunked_body_arrives_are_exact(gpu_url: str) -> None:
    values = np.random.default_rng(8).standard_normal(20_000) * 1e-3
    data = orjson.dumps({"numbers": values.tolist()})
    body = compute(
        gpu_url, content=in_pieces(data, 1000), headers={"content-type": "application/json"}
    ).json()
    assert body["input_count"] == 20_000
    assert (body["max"], body["min"]) == (float(values.max()), float(values.min()))
    assert body["sum_of_squares"] == pytest.approx(float(np.dot(values, values)), rel=1e-12)


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b'{"numbers": [1.5, 2.5, NaN]}', 422),
        (b'{"numbers": [1.5, 2.5, true]}', 422),
        (b'{"numbers": [1.5, 2.5, 1.2.3]}', 400),
        (b'{"numbers": [1.5, 2.5,]}', 400),
    ],
)
def test_bad_float_lists_in_pieces_get_the_same_status(gpu_url: str, content: bytes, status: int) -> None:
    whole = compute(gpu_url, content=content, headers={"content-type": "application/json"})
    pieces = compute(gpu_url, content=in_pieces(content, 7), headers={"content-type": "application/json"})
    assert whole.status_code == pieces.status_code == status
    assert problem(pieces, status) == {**problem(whole, status), "request_id": pieces.json()["request_id"]}


@pytest.mark.parametrize(
    "content",
    [b'{"numbers": [1.5, NaN]}', b'{"numbers": [Infinity, 2]}', b'{"numbers": [0.5, -Infinity]}'],
    ids=["nan", "infinity", "minus-infinity"],
)
def test_nan_and_infinity_literals_are_422(gpu_url: str, content: bytes) -> None:
    body = problem(compute(gpu_url, content=content, headers={"content-type": "application/json"}), 422)
    assert body["errors"][0]["loc"][:2] == ["body", "numbers"]


@pytest.mark.parametrize("content", [b'{"numbers": [1.5, 1.2.3]}', b'{"numbers": [1.5, .5]}'])
def test_malformed_float_lists_are_400(gpu_url: str, content: bytes) -> None:
    body = problem(compute(gpu_url, content=content, headers={"content-type": "application/json"}), 400)
    assert "not valid JSON" in body["detail"]


def test_python_style_json_with_spaces_gives_the_same_answer(gpu_url: str) -> None:
    compact = compute(gpu_url, content=b'{"numbers":[3,-4,5]}', headers={"content-type": "application/json"})
    spaced = compute(
        gpu_url, content=b'{ "numbers" : [ 3 , -4 ,\n5 ] }', headers={"content-type": "application/json"}
    )
    assert stats(compact.json()) == stats(spaced.json())


def test_empty_numbers_is_400(gpu_url: str) -> None:
    body = problem(compute(gpu_url, json={"numbers": []}), 400)
    assert body["detail"] == "numbers is empty; send at least one number"


def test_sum_beyond_int64_is_400_saying_what_to_send(gpu_url: str) -> None:
    body = problem(compute(gpu_url, json={"numbers": [ROOT, ROOT]}), 400)
    assert "does not fit in int64; send fewer or smaller integers, or send them as floats" in body["detail"]


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"numbers": [1, "2"]}, ["body", "numbers", 1]),
        ({"numbers": [True]}, ["body", "numbers", 0]),
        ({"numbers": [1, None]}, ["body", "numbers", 1]),
        ({"numbers": [[1]]}, ["body", "numbers", 0]),
        ({"numbers": "1,2,3"}, ["body", "numbers"]),
        ({"numbers": [1, 2**70]}, ["body", "numbers"]),
        ({"numbers": [1], "scale": 2}, ["body", "scale"]),
        ({}, ["body", "numbers"]),
    ],
    ids=["string", "bool", "null", "nested", "not-a-list", "beyond-int64", "unknown-key", "missing"],
)
def test_non_numbers_and_unknown_keys_are_422(gpu_url: str, payload: dict[str, Any], loc: list[Any]) -> None:
    body = problem(compute(gpu_url, json=payload), 422)
    assert loc in [error["loc"] for error in body["errors"]]


def test_invalid_json_is_400(gpu_url: str) -> None:
    body = problem(
        compute(gpu_url, content=b'{"numbers": [1, 2', headers={"content-type": "application/json"}), 400
    )
    assert "not valid JSON" in body["detail"]


def test_npy_bodies_give_the_json_answer(gpu_url: str) -> None:
    values = np.array([4, -7, 11, 0])
    as_json = compute(gpu_url, json={"numbers": values.tolist()}).json()
    for array in (values, values.astype(">i4")):
        as_npy = compute(gpu_url, content=npy(array), headers={"content-type": "application/x-npy"})
        assert stats(as_npy.json()) == stats(as_json)
    as_floats = compute(
        gpu_url,
        content=npy(np.array([0.5, 1.5], dtype=np.float32)),
        headers={"content-type": "application/x-npy"},
    )
    assert as_floats.json()["sum_of_squares"] == 2.5


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"definitely not npy", 400, "the body is not a readable .npy file"),
        (npy(np.array([[1, 2], [3, 4]])), 422, "expected a 1-D array of numbers, got shape (2, 2)"),
        (npy(np.array([True, False])), 422, "arrays of dtype bool are not numbers"),
        (npy(np.array([1.0, np.nan])), 422, "NaN or infinite"),
        (npy(np.array([], dtype=np.int64)), 400, "numbers is empty"),
    ],
    ids=["garbage", "2-d", "bool", "nan", "empty"],
)
def test_bad_npy_bodies(gpu_url: str, body: bytes, status: int, message: str) -> None:
    answer = problem(compute(gpu_url, content=body, headers={"content-type": "application/x-npy"}), status)
    text = answer["detail"] if status == 400 else " ".join(error["msg"] for error in answer["errors"])
    assert message in text


def test_raw_bytes_with_the_dtype_on_the_content_type_or_the_url(gpu_url: str) -> None:
    values = np.array([ROOT, -2, 3], dtype="<i8")
    by_header = compute(
        gpu_url, content=values.tobytes(), headers={"content-type": "application/octet-stream; dtype=int64"}
    )
    by_query = httpx.post(
        gpu_url + "/compute?dtype=int64",
        content=values.tobytes(),
        headers={"content-type": "application/octet-stream"},
    )
    assert by_header.json()["sum_of_squares"] == ROOT**2 + 13
    assert stats(by_query.json()) == stats(by_header.json())
    floats = np.array([1.5, -0.5], dtype="<f8").tobytes()
    as_floats = compute(
        gpu_url, content=floats, headers={"content-type": "application/octet-stream; dtype=float64"}
    )
    assert as_floats.json()["sum_of_squares"] == 2.5


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/octet-stream", b"\0" * 8, "declare the element type"),
        (
            "application/octet-stream; dtype=int16",
            b"\0" * 8,
            "dtype 'int16' is not supported; use int64 or float64",
        ),
        ("application/octet-stream; dtype=int64", b"\0" * 9, "the body has 9 bytes, not a multiple of 8"),
        ("application/octet-stream; dtype=int64", b"", "numbers is empty"),
    ],
    ids=["no-dtype", "bad-dtype", "partial-value", "empty"],
)
def test_bad_raw_bodies_are_400(gpu_url: str, content_type: str, body: bytes, message: str) -> None:
    assert (
        message
        in problem(compute(gpu_url, content=body, headers={"content-type": content_type}), 400)["detail"]
    )


def test_openapi_documents_the_binary_media_types(gpu_url: str) -> None:
    operation = httpx.get(gpu_url + "/openapi.json").json()["paths"]["/compute"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-npy", "application/octet-stream"}
    assert "dtype=int64" in content["application/octet-stream"]["schema"]["description"]
    assert "numpy.save" in content["application/x-npy"]["schema"]["description"]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_compute_runs_on_cuda(gpu_url: str) -> None:
    info = httpx.get(gpu_url + "/info").json()
    assert info["cuda_available"] is True and info["devices"][0]["name"]
    values = np.random.default_rng(9).integers(-(10**6), 10**6, 100_000).astype("<i8")
    body = compute(
        gpu_url, content=values.tobytes(), headers={"content-type": "application/octet-stream; dtype=int64"}
    ).json()
    assert body["device"] == "cuda:0"
    assert body["sum_of_squares"] == int((values.astype(object) ** 2).sum())
