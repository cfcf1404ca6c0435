"""Large numeric arrays in request bodies: a pydantic type and fast body decoders (needs numpy).

`NumberArray` is a route parameter type for a list of numbers that arrives as a numpy array:

    from podroute import remote
    from podroute.arrays import NumberArray, accepts_number_array

    @remote(api, method="POST", path="/stats")
    @accepts_number_array("numbers")
    async def stats(numbers: NumberArray) -> dict:
        return {"count": int(numbers.size)}

The array is `int64` when every element is an integer (exact arithmetic), else `float64`. Booleans,
strings, nulls, nested lists, non-finite values and integers outside int64 are rejected (422).

`accepts_number_array(field)` makes a body route whose only body field is that array accept:

- `application/json`: `{"<field>": [1, 2, 3]}`, parsed by numpy straight from the bytes. Anything
  unusual falls back to the normal, slower validation, so the answers are the same either way.
- `application/x-npy`: a 1-D `.npy` file as written by `numpy.save` (integer or float dtype, any
  byte order).
- `application/octet-stream`: raw little-endian int64 or float64 values; declare which with
  `; dtype=int64` on the Content-Type, or with `?dtype=int64`.

Install with `pip install 'podroute[arrays]'`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from podroute.binding import accepts

if TYPE_CHECKING:
    import quart

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_NUMBER_ERROR = "number_type"
_NUMBER_MESSAGE = "Input should be a number: an integer within int64 or a finite float"
_WHITESPACE = b" \t\r\n"
_INT_TEXT_CHARS = b"0123456789-," + _WHITESPACE
_FLOAT_MARKS = (b".", b"e", b"E", b"+")
_NUMBER_TEXT_CHARS = _INT_TEXT_CHARS + b"".join(_FLOAT_MARKS)
_MINUS, _COMMA, _ZERO = ord("-"), ord(","), ord("0")
_POWERS_OF_TEN = [10**k for k in range(1, 19)]
_RAW_DTYPES = {"int64": np.dtype("<i8"), "float64": np.dtype("<f8")}


def _number_error(message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(_NUMBER_ERROR, message, context)


def _list_to_array(values: list[int | float]) -> npt.NDArray[Any]:
    """Validated Python numbers -> int64 array (all integers) or float64 array."""
    kinds = set(map(type, values))
    try:
        if float in kinds:
            return np.array(values, dtype=np.float64)
        return np.array(values, dtype=np.int64)
    except OverflowError:
        objects = np.array(values, dtype=object)
        index = int(np.flatnonzero((objects > INT64_MAX) | (objects < INT64_MIN))[0])
        raise _number_error(
            "the integer at index {index} is outside int64 ({low} .. {high}); send smaller integers, "
            "or write it as a float (e.g. 1.5e20) if an approximate result is fine",
            index=index,
            low=INT64_MIN,
            high=INT64_MAX,
        ) from None


def _check_array(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """An ndarray given directly (decoded binary body, or a Python caller) -> int64/float64, 1-D."""
    if array.ndim != 1:
        raise _number_error("expected a 1-D array of numbers, got shape {shape}", shape=str(array.shape))
    kind = array.dtype.kind
    if kind == "i":
        return array if array.dtype == np.int64 and array.flags.writeable else array.astype(np.int64)
    if kind == "u":
        if array.size and array.max() > INT64_MAX:
            raise _number_error(
                "unsigned values above the int64 maximum {high} are not accepted", high=INT64_MAX
            )
        return array.astype(np.int64)
    if kind == "f":
        converted = array if array.dtype == np.float64 and array.flags.writeable else array.astype(np.float64)
        if not np.isfinite(converted).all():
            raise _number_error("the array holds NaN or infinite values; send finite numbers only")
        return converted
    raise _number_error(
        "arrays of dtype {dtype} are not numbers; send integers (int64) or floats (float64)",
        dtype=str(array.dtype),
    )


def _from_python(value: Any, handler: core_schema.ValidatorFunctionWrapHandler) -> npt.NDArray[Any]:
    if isinstance(value, np.ndarray):
        return _check_array(value)
    result: npt.NDArray[Any] = handler(value)
    return result


def _to_list(array: npt.NDArray[Any]) -> list[int | float]:
    values: list[int | float] = array.tolist()
    return values


class _NumberArraySchema:
    """Pydantic schema hooks of `NumberArray`."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        item = core_schema.union_schema(
            [
                core_schema.int_schema(strict=True),
                core_schema.float_schema(strict=True, allow_inf_nan=False),
            ],
            custom_error_type=_NUMBER_ERROR,
            custom_error_message=_NUMBER_MESSAGE,
        )
        from_list = core_schema.no_info_after_validator_function(
            _list_to_array, core_schema.list_schema(item)
        )
        return core_schema.json_or_python_schema(
            json_schema=from_list,
            python_schema=core_schema.no_info_wrap_validator_function(_from_python, from_list),
            serialization=core_schema.plain_serializer_function_ser_schema(_to_list),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "array",
            "items": {"type": "number"},
            "description": "Numbers: int64 when every element is an integer (exact results), else float64.",
        }


NumberArray = Annotated[npt.NDArray[Any], _NumberArraySchema()]
"""A list of numbers validated into a 1-D numpy array (int64 if all integers, else float64)."""

_NUMBER_ARRAY: TypeAdapter[npt.NDArray[Any]] = TypeAdapter(NumberArray)


def as_number_array(values: Any) -> npt.NDArray[Any]:
    """Validate `values` (a list of numbers or an ndarray) exactly like a `NumberArray` parameter.

    Raises pydantic's ValidationError (a ValueError) for anything that is not a list of numbers.
    """
    array: npt.NDArray[Any] = _NUMBER_ARRAY.validate_python(values)
    return array


# ------------------------------------------------------------------------------------------ JSON


def _canonical_digits(values: npt.NDArray[np.int64]) -> int:
    """Digits in the shortest decimal text of each value, summed."""
    magnitudes = np.abs(values)
    digits = int(values.size)
    for power in _POWERS_OF_TEN:
        above = int(np.count_nonzero(magnitudes >= power))
        if not above:
            break
        digits += above
    return digits


def _is_json_integer_list(text: npt.NDArray[np.uint8], values: npt.NDArray[np.int64]) -> bool:
    """Whether `text` (digits, '-', ',' and whitespace only) is exactly the JSON list of `values`.

    numpy reads some things JSON does not allow: empty items and a lone '-' (as 0), '- 1', leading
    zeros and a trailing comma. Given that numpy read `values.size` items from the whole text, it
    is JSON when there is one comma fewer than items, one run of digits per item, as many digits as
    the values' canonical text has, and one '-' per negative value, each touching its digits.
    """
    digit = (text - _ZERO) < 10  # uint8 arithmetic wraps: every other character lands above 9
    minus = text == _MINUS
    count = int(values.size)
    return (
        int(np.count_nonzero(text == _COMMA)) == count - 1
        and int(digit[0]) + int(np.count_nonzero(digit[1:] > digit[:-1])) == count
        and int(np.count_nonzero(digit)) == _canonical_digits(values)
        and int(np.count_nonzero(minus)) == int(np.count_nonzero(values < 0))
        and not (minus[-1] or np.any(minus[:-1] > digit[1:]))
    )


def _parse_ints(inner: bytes) -> npt.NDArray[np.int64] | None:
    """Comma-separated JSON integers -> int64, or None when the text is not exactly that."""
    try:
        values = np.fromstring(inner, dtype=np.int64, sep=",")
    except ValueError:
        return None
    if values.size == 0 or values.min() == INT64_MIN or values.max() == INT64_MAX:
        return None  # saturated on overflow (or at the very edge): let exact validation decide
    if not _is_json_integer_list(np.frombuffer(inner.strip(), dtype=np.uint8), values):
        return None
    result: npt.NDArray[np.int64] = values
    return result


def _parse_floats(raw: bytes, field: str) -> npt.NDArray[np.float64] | None:
    """The list of `raw` (`{"<field>": [numbers]}`, numbers only) with a float in it -> float64.

    orjson parses the whole body strictly (so NaN, Infinity, `1.`, `01` and the like are not
    JSON and fall back to exact validation), as the same doubles `json.loads` gives; numpy packs
    them. Faster than numpy's own text parsing, which costs three times as much per number.
    """
    try:
        values = orjson.loads(raw)[field]
        return np.array(values, dtype=np.float64)
    except (orjson.JSONDecodeError, OverflowError, TypeError, ValueError, KeyError):
        return None


class _FloatStream:
    """`{"<field>": [floats]}` parsed while it arrives: each chunk up to its last comma at once.

    Every piece between commas is parsed strictly by orjson (the same doubles as `json.loads`)
    and packed into float64, so by the time the last chunk arrives only its tail is left. Anything
    the whole-body decoder would not take on its float path (another shape, a non-number, no float
    in the first piece, bad JSON) stops the stream: its result is None and the whole body goes to
    the decoder and validation as before, so the answers are the same either way.
    """

    __slots__ = ("_carry", "_failed", "_field", "_head", "_parts", "_started")

    def __init__(self, head: re.Pattern[bytes], field: str) -> None:
        self._head = head
        self._field = field
        self._carry = b""
        self._parts: list[npt.NDArray[np.float64]] = []
        self._started = False
        self._failed = False

    def feed(self, chunk: bytes) -> None:
        """Parse every whole number in `chunk` (with what was left of the previous one)."""
        if self._failed:
            return
        data = self._carry + chunk if self._carry else chunk
        if not self._started:
            match = self._head.match(data)
            if match is None:
                self._failed = len(data) >= 256  # a head longer than this is not the fast shape
                self._carry = data
                return
            self._started = True
            data = data[match.end() :]
        cut = data.rfind(b",")
        if cut < 0:
            self._carry = data
            return
        self._carry = data[cut + 1 :]
        self._take(data[:cut], first=not self._parts)

    def result(self) -> Mapping[str, npt.NDArray[np.float64]] | None:
        """The array, once the body ended as `...]}`; None if the stream stopped."""
        close = self._carry.rfind(b"]")
        if self._failed or not self._started or close < 0 or self._carry[close + 1 :].strip() != b"}":
            return None
        self._take(self._carry[:close], first=not self._parts)
        if self._failed:
            return None
        values = self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts)
        return {self._field: values}

    def _take(self, piece: bytes, first: bool) -> None:
        if not piece.strip() or piece.translate(None, _NUMBER_TEXT_CHARS):
            self._failed = True  # an empty item, or strings, booleans, null, nested values
            return
        if first and not any(mark in piece for mark in _FLOAT_MARKS):
            self._failed = True  # integers: the exact int64 path takes the whole body
            return
        try:
            self._parts.append(np.array(orjson.loads(b"[" + piece + b"]"), dtype=np.float64))
        except (orjson.JSONDecodeError, OverflowError, TypeError, ValueError):
            self._failed = True


def json_numbers_decoder(field: str) -> Callable[[bytes, quart.Request], Mapping[str, Any] | None]:
    """A body decoder for `{"<field>": [numbers]}` that parses the array with numpy directly.

    Returns None (so the route falls back to normal JSON validation, with its exact errors) for
    anything else: other keys, non-numbers, invalid JSON, integers at or beyond the int64 limits.
    Its `start_stream()` (`podroute.binding.BodyStream`) parses a float list while the body
    arrives, giving the same result as the decoder.
    """
    head = re.compile(rb'\s*\{\s*"' + re.escape(field.encode()) + rb'"\s*:\s*\[')

    def decode(raw: bytes, request: quart.Request) -> Mapping[str, Any] | None:
        match = head.match(raw)
        close = raw.rfind(b"]")
        if match is None or close < match.end() or raw[close + 1 :].strip() != b"}":
            return None
        inner = raw[match.end() : close]
        if inner.translate(None, _NUMBER_TEXT_CHARS):
            return None  # strings, booleans, null, nested arrays or objects: validate normally
        if not inner.strip():
            return {field: np.empty(0, dtype=np.int64)}
        if any(mark in inner for mark in _FLOAT_MARKS):
            values: npt.NDArray[Any] | None = _parse_floats(raw, field)
        else:
            values = _parse_ints(inner)
        return None if values is None else {field: values}

    def start_stream() -> _FloatStream:
        return _FloatStream(head, field)

    decode.__doc__ = f'JSON {{"{field}": [numbers]}}, parsed by numpy.'
    decode.start_stream = start_stream  # type: ignore[attr-defined]
    return decode


# ---------------------------------------------------------------------------------------- binary


def npy_decoder(field: str) -> Callable[[bytes, quart.Request], Mapping[str, Any]]:
    """A body decoder for a 1-D `.npy` file (numpy.save), given to the route as `field`."""

    def decode(raw: bytes, request: quart.Request) -> Mapping[str, Any]:
        try:
            array = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
        except (ValueError, EOFError, OSError) as error:
            raise ValueError(
                f"the body is not a readable .npy file ({error}); write it with numpy.save"
            ) from None
        return {field: array}

    return decode


def raw_decoder(field: str) -> Callable[[bytes, quart.Request], Mapping[str, Any]]:
    """A body decoder for raw little-endian int64/float64 values; the dtype is declared by the caller.

    The dtype comes from the Content-Type parameter (`application/octet-stream; dtype=int64`) or
    the `dtype` query parameter.
    """

    def decode(raw: bytes, request: quart.Request) -> Mapping[str, Any]:
        name = request.mimetype_params.get("dtype") or request.args.get("dtype")
        if not name:
            raise ValueError(
                "declare the element type: 'Content-Type: application/octet-stream; dtype=int64' "
                "(or float64), or add ?dtype=int64 to the URL"
            )
        dtype = _RAW_DTYPES.get(name.strip().lower())
        if dtype is None:
            raise ValueError(f"dtype {name!r} is not supported; use int64 or float64 (little-endian)")
        if len(raw) % dtype.itemsize:
            raise ValueError(
                f"the body has {len(raw)} bytes, not a multiple of {dtype.itemsize} ({name} values); "
                "send whole values"
            )
        return {field: np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))}

    return decode


_NPY_DESCRIPTION = (
    "A 1-D .npy file (numpy.save) holding the {field}: any integer or float dtype, any byte order. "
    "Integers become int64, floats float64."
)
_RAW_DESCRIPTION = (
    "The {field} as raw little-endian values, 8 bytes each. Declare the type with "
    "'Content-Type: application/octet-stream; dtype=int64' (or float64), or with ?dtype=int64."
)


def accepts_number_array(field: str) -> Callable[[Any], Any]:
    """Let a route whose body is one `NumberArray` field take it fast as JSON, .npy or raw bytes.

    Apply it under `@remote`. The route's OpenAPI lists `application/x-npy` and
    `application/octet-stream` next to JSON, with these descriptions.
    """

    def decorate(function: Any) -> Any:
        function = accepts("application/json", json_numbers_decoder(field))(function)
        function = accepts(
            "application/x-npy", npy_decoder(field), description=_NPY_DESCRIPTION.format(field=field)
        )(function)
        return accepts(
            "application/octet-stream", raw_decoder(field), description=_RAW_DESCRIPTION.format(field=field)
        )(function)

    return decorate
