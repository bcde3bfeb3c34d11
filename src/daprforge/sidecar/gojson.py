"""JSON the way daprd's Go code reads and writes it.

daprd decodes request bodies with ``encoding/json`` into ``any`` and re-encodes values
before they reach a store, so what a store holds (and a later GET returns) is Go's
encoding: object keys sorted, no spaces, every number a float64 printed in shortest form,
and ``<``, ``>``, ``&``, U+2028, U+2029 escaped. Matching it byte for byte keeps our
stores' contents identical to what daprd would have written.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

_encode_string = json.encoder.encode_basestring


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character in literal {name}")


class Number(str):
    """A JSON number kept as its literal text, like Go's ``json.Number`` (``UseNumber``)."""


_DECODER = json.JSONDecoder(parse_int=float, parse_constant=_reject_constant)
_PRECISE_DECODER = json.JSONDecoder(
    parse_int=Number, parse_float=Number, parse_constant=_reject_constant
)
_HTML_CHARS = frozenset("<>&\u2028\u2029")
_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


class DecodeError(ValueError):
    pass


def decode(body: bytes, *, use_number: bool = False) -> Any:
    """The first JSON value in ``body``; trailing data is ignored, as by ``json.Decoder``.

    Numbers become float64 as Go decodes them into ``any``, or keep their exact text with
    ``use_number`` (daprd does that for CloudEvent data so big numbers survive).
    """
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise DecodeError("EOF")
    decoder = _PRECISE_DECODER if use_number else _DECODER
    try:
        value, _ = decoder.raw_decode(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON at offset {exc.pos}: {exc.msg}") from None
    except ValueError as exc:  # NaN/Infinity literals, refused by parse_constant
        raise DecodeError(f"invalid JSON: {exc}") from None
    return value


def go_type_name(value: Any) -> str:
    """How Go names a JSON value's kind in "cannot unmarshal X into ..." errors."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Number):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float | int):
        return "number"
    return "null"


def _format_float(value: float) -> str:
    magnitude = abs(value)
    # Fast paths (most numbers): exact integers, and the range where Python's shortest
    # repr is already in Go's plain notation.
    integral = value.is_integer()
    if integral and magnitude < 2**53:
        return "-0" if value == 0 and math.copysign(1, value) < 0 else str(int(value))
    if not integral and 1e-4 <= magnitude < 1e16:
        return repr(value)
    if not math.isfinite(value):
        raise ValueError(f"unsupported value: {value}")
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
        # Go writes e-07 as e-7 and keeps the sign: 1e+21, 1e-7.
        return f"{mantissa.removesuffix('.0')}e{sign}{digits}"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, Number):
        out.append(str.__str__(value))
    elif isinstance(value, str):
        text = _encode_string(value)
        out.append(text.translate(_HTML_ESCAPES) if not _HTML_CHARS.isdisjoint(value) else text)
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, float | int):
        out.append(_format_float(float(value)))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            _encode(str(key), out)
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode(value: Any) -> bytes:
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode()
