"""podroute.arrays: the NumberArray type and the JSON, .npy and raw body decoders."""

from __future__ import annotations

import io
import itertools
import json
import random
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import orjson
import pytest
import quart
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from podroute import AppSettings, CpuLoadBalancerSlsResource, Registry, create_app, remote
from podroute.app import podroute_state
from podroute.arrays import (
    INT64_MAX,
    INT64_MIN,
    NumberArray,
    accepts_number_array,
    as_number_array,
    json_numbers_decoder,
    npy_decoder,
    raw_decoder,
)
from podroute.binding import body_decoders
from podroute.openapi import build_openapi


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    numbers: NumberArray


def fake_request(
    mimetype_params: dict[str, str] | None = None, args: dict[str, str] | None = None
) -> quart.Request:
    return cast(quart.Request, SimpleNamespace(mimetype_params=mimetype_params or {}, args=args or {}))


decode_json = json_numbers_decoder("numbers")


def decoded(body: bytes) -> np.ndarray | None:
    result = decode_json(body, fake_request())
    return None if result is None else result["numbers"]


def errors_of(call: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as raised:
        call()
    return raised.value.errors(include_url=False)


# ---------------------------------------------------------------------------- the type


def test_integers_become_int64_and_any_float_makes_float64() -> None:
    assert Body.model_validate_json(b'{"numbers": [1, -2, 3]}').numbers.dtype == np.int64
    mixed = Body.model_validate_json(b'{"numbers": [1, 2.5]}').numbers
    assert mixed.dtype == np.float64 and mixed.tolist() == [1.0, 2.5]
    assert as_number_array([]).dtype == np.int64
    assert as_number_array([INT64_MIN, INT64_MAX]).tolist() == [INT64_MIN, INT64_MAX]


@pytest.mark.parametrize("item", ["true", "null", '"1"', "[1]", "{}", "1e400"])
def test_non_numbers_are_rejected_with_their_index(item: bytes) -> None:
    errors = errors_of(lambda: Body.model_validate_json(b'{"numbers": [1, ' + item.encode() + b"]}"))
    assert errors == [
        {
            "type": "number_type",
            "loc": ("numbers", 1),
            "msg": "Input should be a number: an integer within int64 or a finite float",
            "input": errors[0]["input"],
        }
    ]


def test_not_a_list_is_rejected() -> None:
    assert errors_of(lambda: Body.model_validate_json(b'{"numbers": "1,2"}'))[0]["type"] == "list_type"


def test_integers_outside_int64_are_rejected_not_rounded() -> None:
    (error,) = errors_of(lambda: Body.model_validate_json(b'{"numbers": [1, 9223372036854775808]}'))
    assert error["loc"] == ("numbers",)
    assert "the integer at index 1 is outside int64" in error["msg"]
    assert "write it as a float" in error["msg"]
    assert as_number_array([1.5, 2**70]).dtype == np.float64  # with floats present, it is a float


@pytest.mark.parametrize(
    ("array", "dtype"),
    [
        (np.array([1, 2], dtype=np.uint8), np.int64),
        (np.array([1, 2], dtype=">i4"), np.int64),
        (np.array([1.5], dtype=np.float32), np.float64),
        (np.array([3], dtype=np.int64), np.int64),
    ],
)
def test_arrays_are_normalized_to_int64_or_float64(array: np.ndarray, dtype: type) -> None:
    result = as_number_array(array)
    assert result.dtype == dtype and result.tolist() == array.tolist()
    assert result.flags.writeable


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([[1, 2]]), "expected a 1-D array of numbers, got shape (1, 2)"),
        (np.array([True]), "arrays of dtype bool are not numbers"),
        (np.array(["1"]), "arrays of dtype <U1 are not numbers"),
        (np.array([1.0, np.nan]), "NaN or infinite"),
        (np.array([np.inf]), "NaN or infinite"),
        (np.array([2**63], dtype=np.uint64), "above the int64 maximum"),
    ],
)
def test_bad_arrays_are_rejected(array: np.ndarray, message: str) -> None:
    (error,) = errors_of(lambda: as_number_array(array))
    assert message in error["msg"]


def test_json_schema_is_an_array_of_numbers() -> None:
    schema = TypeAdapter(NumberArray).json_schema()
    assert schema["type"] == "array" and schema["items"] == {"type": "number"}
    assert Body(numbers=np.array([1, 2])).model_dump() == {"numbers": [1, 2]}


# ---------------------------------------------------------------------------- JSON fast path


@pytest.mark.parametrize(
    "body",
    [
        b'{"numbers":[1,2,3]}',
        b'{"numbers": [1, -22, 333]}',
        b' \n{ "numbers" :\n[ 1 ,\n 2 ]\r\n}\n',
        b'{"numbers":[0,-1,9223372036854775806,-9223372036854775807]}',
    ],
)
def test_integer_json_is_parsed_exactly(body: bytes) -> None:
    values = decoded(body)
    assert values is not None and values.dtype == np.int64
    assert values.tolist() == orjson.loads(body)["numbers"]


def test_float_json_is_parsed_as_float64() -> None:
    values = decoded(b'{"numbers": [1.5, 2, -3e2, 4E-1, 5e+0]}')
    assert values is not None and values.dtype == np.float64
    assert values.tolist() == [1.5, 2.0, -300.0, 0.4, 5.0]


def random_float_texts(rng: random.Random, count: int) -> list[str]:
    """JSON number texts of every shape: shortest reprs, exponents, -0.0, long digit runs, ints."""
    texts = []
    for _ in range(count):
        shape = rng.randrange(7)
        if shape == 0:
            texts.append(repr(rng.uniform(-1e6, 1e6)))
        elif shape == 1:
            texts.append(repr(struct_double(rng)))
        elif shape == 2:
            texts.append(f"{rng.randint(1, 9)}.{rng.randint(0, 10**20)}e{rng.randint(-300, 300):+d}")
        elif shape == 3:
            texts.append(rng.choice(["-0.0", "0.0", "-0", "0", "0e0", "-0E-5", "1E2", "2e+3"]))
        elif shape == 4:
            texts.append(str(rng.randint(-(10**25), 10**25)))  # integers mixed in, some beyond int64
        elif shape == 5:
            texts.append(f"{rng.randint(-999, 999)}.{rng.randint(0, 999):03d}")
        else:
            texts.append("0." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40))))
    return texts


def struct_double(rng: random.Random) -> float:
    """A random finite double drawn from all bit patterns (subnormals and extremes included)."""
    while True:
        value = float(np.frombuffer(rng.getrandbits(64).to_bytes(8, "little"), dtype=np.float64)[0])
        if np.isfinite(value):
            return value


def test_floats_are_the_exact_doubles_json_loads_gives() -> None:
    rng = random.Random(20261130)
    for _ in range(200):
        texts = random_float_texts(rng, rng.randint(1, 300))
        body = b'{"numbers": [' + rng.choice([",", ", ", " ,\n"]).join(texts).encode() + b"]}"
        values = decoded(body)
        expected = np.array([float(v) for v in json.loads(body)["numbers"]], dtype=np.float64)
        if not any(mark in body for mark in (b".", b"e", b"E")):
            continue  # integers only: the int64 path, tested above
        assert values is not None and values.dtype == np.float64, body
        assert values.view(np.int64).tolist() == expected.view(np.int64).tolist(), body  # bit for bit


def test_negative_zero_keeps_its_sign_only_as_a_float() -> None:
    values = decoded(b'{"numbers": [-0.0, -0, 0.0, -0e0, 1.5]}')
    assert values is not None
    assert np.signbit(values).tolist() == [True, False, False, True, False]  # as json.loads reads them


def test_a_million_floats_round_trip_exactly() -> None:
    values = np.random.default_rng(3).standard_normal(1_000_000) * 1e3
    result = decoded(orjson.dumps({"numbers": values.tolist()}))
    assert result is not None and result.view(np.int64).tolist() == values.view(np.int64).tolist()


@pytest.mark.parametrize(
    "body",
    [
        b'{"numbers": [1.5, NaN]}',
        b'{"numbers": [Infinity, 1.5]}',
        b'{"numbers": [1.5, -Infinity]}',
        b'{"numbers": [1.5, 1e400]}',
        b'{"numbers": [1.5, .5]}',
        b'{"numbers": [1.5, 5.]}',
        b'{"numbers": [1.5, 1e]}',
        b'{"numbers": [1.5, 1.2.3]}',
        b'{"numbers": [1.5, 01.5]}',
        b'{"numbers": [1.5, +2.5]}',
        b'{"numbers": [1.5, 2.5e+-1]}',
        b'{"numbers": [1.5, - 2.5]}',
        b'{"numbers": [1.5 2.5]}',
        b'{"numbers": [1.5,, 2.5]}',
    ],
)
def test_float_lists_that_are_not_json_numbers_fall_back_to_validation(body: bytes) -> None:
    assert decoded(body) is None


@pytest.mark.parametrize(
    "body", [b'{"numbers": [1.5, NaN]}', b'{"numbers": [Infinity]}', b'{"numbers": [1.5, -Infinity, 2]}']
)
def test_nan_and_infinity_literals_are_rejected_by_validation(body: bytes) -> None:
    errors = errors_of(lambda: Body.model_validate_json(body))
    assert errors[0]["loc"][0] == "numbers" and errors[0]["type"] == "number_type"


def test_an_empty_list_is_an_empty_int64_array() -> None:
    values = decoded(b'{"numbers": [ ]}')
    assert values is not None and values.size == 0 and values.dtype == np.int64


@pytest.mark.parametrize(
    "body",
    [
        b'{"numbers":[01]}',  # leading zero: not JSON
        b'{"numbers":[-0]}',  # JSON, but left to the exact path
        b'{"numbers":[-]}',
        b'{"numbers":[1,]}',
        b'{"numbers":[,1]}',
        b'{"numbers":[1,,2]}',
        b'{"numbers":[1 2]}',
        b'{"numbers":[1, - 2]}',
        b'{"numbers":[+1]}',
        b'{"numbers":[1.]}',
        b'{"numbers":[1e400]}',
        b'{"numbers":[9223372036854775807]}',  # at the edge: exact path decides
        b'{"numbers":[-9223372036854775808]}',
        b'{"numbers":[99999999999999999999]}',
        b'{"numbers":[true]}',
        b'{"numbers":["1"]}',
        b'{"numbers":[[1]]}',
        b'{"numbers":[1], "other": 2}',
        b'{"other":[1]}',
        b'{"numbers":[1]',
        b'{"numbers":[1]}}',
        b"[1, 2]",
        b"",
    ],
)
def test_anything_unusual_falls_back_to_normal_validation(body: bytes) -> None:
    assert decoded(body) is None


def test_fast_path_agrees_with_a_strict_json_parser_on_mutated_input() -> None:
    rng = random.Random(20261126)
    alphabet = "0123456789-, \n.e+"
    checked = 0
    for _ in range(20000):
        numbers = [
            rng.choice([0, 7, -3, 10 ** rng.randint(0, 18) - rng.randint(0, 9)])
            for _ in range(rng.randint(1, 6))
        ]
        text = rng.choice([", ", ",", " , "]).join(map(str, numbers))
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(text) + 1)
            if rng.random() < 0.5 and at < len(text):
                text = text[:at] + text[at + 1 :]
            else:
                text = text[:at] + rng.choice(alphabet) + text[at:]
        body = b'{"numbers": [' + text.encode() + b"]}"
        values = decoded(body)
        if values is None:
            continue
        strict = orjson.loads(body)["numbers"]  # raises if the fast path accepted invalid JSON
        all_integers = all(isinstance(v, int) for v in strict)
        assert values.dtype == (np.int64 if all_integers else np.float64), body
        assert values.tolist() == (strict if all_integers else [float(v) for v in strict]), body
        checked += 1
    assert checked > 1000  # most inputs stay valid and take the fast path


def test_a_million_integers_round_trip() -> None:
    values = np.random.default_rng(1).integers(-(10**12), 10**12, 1_000_000)
    result = decoded(orjson.dumps({"numbers": values.tolist()}))
    assert result is not None and np.array_equal(result, values)


# ---------------------------------------------------------------------------- binary decoders


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npy_files_decode_to_their_array() -> None:
    array = np.array([1.5, -2.0], dtype=">f4")
    result = npy_decoder("numbers")(npy_bytes(array), fake_request())["numbers"]
    assert result.tolist() == [1.5, -2.0]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not a numpy file",
        npy_bytes(np.array([1, 2]))[:-3],
        npy_bytes(np.array([{"a": 1}], dtype=object)),
    ],
    ids=["empty", "garbage", "truncated", "pickled-objects"],
)
def test_unreadable_npy_is_a_value_error_saying_how_to_write_one(body: bytes) -> None:
    with pytest.raises(ValueError, match=r"the body is not a readable \.npy file .*numpy\.save"):
        npy_decoder("numbers")(body, fake_request())


def test_raw_bytes_decode_with_the_declared_dtype() -> None:
    ints = np.array([1, -2, INT64_MAX], dtype="<i8")
    by_header = raw_decoder("numbers")(ints.tobytes(), fake_request(mimetype_params={"dtype": "int64"}))
    assert by_header["numbers"].tolist() == ints.tolist() and by_header["numbers"].flags.writeable
    floats = np.array([0.5, 1e300], dtype="<f8")
    by_query = raw_decoder("numbers")(floats.tobytes(), fake_request(args={"dtype": "Float64"}))
    assert by_query["numbers"].tolist() == floats.tolist()


@pytest.mark.parametrize(
    ("body", "params", "message"),
    [
        (b"\0" * 8, {}, "declare the element type: 'Content-Type: application/octet-stream; dtype=int64'"),
        (b"\0" * 8, {"dtype": "int32"}, "dtype 'int32' is not supported; use int64 or float64"),
        (b"\0" * 12, {"dtype": "int64"}, "the body has 12 bytes, not a multiple of 8"),
    ],
)
def test_raw_bytes_problems_say_what_to_send(body: bytes, params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        raw_decoder("numbers")(body, fake_request(mimetype_params=params))


def test_accepts_number_array_registers_all_three_media_types() -> None:
    @accepts_number_array("values")
    async def route(values: NumberArray) -> int:
        return int(values.size)

    decoders = body_decoders(route)
    assert set(decoders) == {"application/json", "application/x-npy", "application/octet-stream"}
    assert "dtype=int64" in decoders["application/octet-stream"][1]
    assert "numpy.save" in decoders["application/x-npy"][1]


def test_openapi_of_a_number_array_route_is_valid_3_1_and_describes_each_media_type(
    registry: Registry,
) -> None:
    api = CpuLoadBalancerSlsResource(name="stats")

    @remote(api, method="POST", path="/stats")
    @accepts_number_array("values")
    async def stats(values: NumberArray) -> dict[str, int]:
        return {"count": int(values.size)}

    spec = build_openapi(podroute_state(create_app(api, registry=registry, settings=AppSettings())))
    OpenAPIV31SpecValidator(spec).validate()
    content = spec["paths"]["/stats"]["post"]["requestBody"]["content"]
    assert content["application/x-npy"]["schema"]["contentMediaType"] == "application/x-npy"
    assert "numpy.save" in content["application/x-npy"]["schema"]["description"]
    assert "dtype=int64" in content["application/octet-stream"]["schema"]["description"]


# ------------------------------------------------------------ parsing while the body arrives


def streamed(body: bytes, cuts: list[int]) -> np.ndarray | None:
    """What the decoder's BodyStream gives for `body` arriving in pieces cut at `cuts`."""
    stream = decode_json.start_stream()  # type: ignore[attr-defined]
    edges = [0, *sorted(cuts), len(body)]
    for start, end in itertools.pairwise(edges):
        stream.feed(body[start:end])
    result = stream.result()
    return None if result is None else result["numbers"]


def random_cuts(rng: random.Random, size: int) -> list[int]:
    return [rng.randrange(size + 1) for _ in range(rng.choice([0, 1, 3, 20, 200]))]


def test_a_streamed_float_list_is_bit_for_bit_what_the_decoder_gives() -> None:
    rng = random.Random(20261201)
    streamed_floats = 0
    for _ in range(300):
        texts = random_float_texts(rng, rng.randint(1, 300))
        body = b' {"numbers" : [' + rng.choice([",", ", ", " ,\n"]).join(texts).encode() + b"] }\n"
        whole = decoded(body)
        values = streamed(body, random_cuts(rng, len(body)))
        if values is None:  # declined: the whole body goes to the decoder, as before
            continue
        streamed_floats += 1
        assert whole is not None and values.dtype == whole.dtype == np.float64, body
        assert values.view(np.int64).tolist() == whole.view(np.int64).tolist(), body
    assert streamed_floats > 200  # lists that start with an integer are left to the decoder


def test_a_million_floats_stream_in_64_kib_chunks_exactly() -> None:
    values = np.random.default_rng(5).standard_normal(1_000_000) * 1e5
    body = orjson.dumps({"numbers": values.tolist()})
    result = streamed(body, list(range(65536, len(body), 65536)))
    assert result is not None and result.view(np.int64).tolist() == values.view(np.int64).tolist()


@pytest.mark.parametrize(
    "body",
    [
        b'{"numbers": [1.5, NaN]}',
        b'{"numbers": [1.5, 1e400]}',
        b'{"numbers": [1.5, .5]}',
        b'{"numbers": [1.5,, 2.5]}',
        b'{"numbers": [1.5, 2.5,]}',
        b'{"numbers": [,1.5]}',
        b'{"numbers": [1.5, true]}',
        b'{"numbers": [1.5, "2.5"]}',
        b'{"numbers": [1.5, null]}',
        b'{"numbers": [1.5, [2.5]]}',
        b'{"numbers": [1.5, 2.5], "extra": 1}',
        b'{"numbers": [1.5, 2.5]',
        b'{"numbers": [1.5, 2.5]}}',
        b'{"values": [1.5, 2.5]}',
        b'{"numbers": [1, 2, 3.5]}',  # starts with integers: the decoder's exact path decides
        b'{"numbers": []}',
        b"[1.5, 2.5]",
    ],
)
def test_streams_decline_what_the_float_path_does_not_take(body: bytes) -> None:
    for cut in range(len(body) + 1):
        assert streamed(body, [cut]) is None, (body, cut)
