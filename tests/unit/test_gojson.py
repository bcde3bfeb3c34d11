"""Values are stored as daprd's Go code would encode them."""

from __future__ import annotations

import pytest

from daprforge.sidecar import gojson


@pytest.mark.parametrize(
    ("body", "stored"),
    [
        (b'{"b": 1, "a": {"d": 2, "c": 3}}', b'{"a":{"c":3,"d":2},"b":1}'),
        (b"[1.0, 2.5, -0.0]", b"[1,2.5,-0]"),
        (b"1e20", b"100000000000000000000"),
        (b"1e21", b"1e+21"),
        (b"0.0000001", b"1e-7"),
        (b"0.000001", b"0.000001"),
        (b"0.00001", b"0.00001"),
        (b"123456.789", b"123456.789"),
        (b"1e16", b"10000000000000000"),
        (b"9007199254740993", b"9007199254740992"),
        # float64 precision, exactly as Go decodes a number into `any`.
        (b"12345678901234567890", b"12345678901234567000"),
        (b'"<tag> & \xe2\x80\xa8"', b'"\\u003ctag\\u003e \\u0026 \\u2028"'),
        (b'"caf\xc3\xa9"', '"café"'.encode()),
        (b"null", b"null"),
        (b" true trailing", b"true"),
    ],
)
def test_round_trip_matches_go(body: bytes, stored: bytes) -> None:
    assert gojson.encode(gojson.decode(body)) == stored


@pytest.mark.parametrize("body", [b"", b"   ", b"{", b"[1,]", b"NaN", b"[Infinity]"])
def test_decode_errors(body: bytes) -> None:
    with pytest.raises(gojson.DecodeError):
        gojson.decode(body)


def test_go_type_names() -> None:
    assert [gojson.go_type_name(v) for v in ({}, [], "", True, 1.0, None)] == [
        "object",
        "array",
        "string",
        "bool",
        "number",
        "null",
    ]
