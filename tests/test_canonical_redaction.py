from __future__ import annotations

import pytest

from ledger.core.canonical import canonical_json
from ledger.core.redaction import REDACTED, redact, redact_url
from ledger.errors import InvalidInputError


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [1, 2, {"d": None, "c": True}]}) == (
        b'{"a":[1,2,{"c":true,"d":null}],"b":1}'
    )


def test_canonical_json_sorts_by_utf16_code_units() -> None:
    # U+FB01 sorts after U+1F600 in code points but before it in UTF-16 units.
    assert canonical_json({"\U0001f600": 1, "\ufb01": 2}) == '{"😀":1,"ﬁ":2}'.encode()


def test_canonical_json_keeps_big_integers_exact_and_normalises_integral_floats() -> None:
    assert canonical_json({"seed": 2**64 - 1, "cfg": 7.0, "x": 7.5}) == (
        b'{"cfg":7,"seed":18446744073709551615,"x":7.5}'
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: "a"}, object()])
def test_canonical_json_refuses_what_json_cannot_say(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        canonical_json({"v": bad})


def test_redact_removes_secret_keys_at_any_depth() -> None:
    value = {
        "apiKey": "k1",
        "headers": {"Authorization": "Bearer abcdefghijk", "X-Api-Key": "k2"},
        "tasks": [{"api_key": "k3", "prompt": "keep me"}],
    }
    out = redact(value)
    assert out["apiKey"] == REDACTED
    assert out["headers"] == {"Authorization": REDACTED, "X-Api-Key": REDACTED}
    assert out["tasks"] == [{"api_key": REDACTED, "prompt": "keep me"}]
    assert value["apiKey"] == "k1"  # the input is not modified


def test_redact_strips_credentials_from_urls_and_known_values() -> None:
    url = "https://user:pw@cdn.example/img.png?token=abc&size=512&X-Amz-Signature=zz"
    cleaned = redact_url(url)
    assert "pw" not in cleaned and "abc" not in cleaned and "zz" not in cleaned
    assert "size=512" in cleaned
    assert redact({"note": "key is sk-123456789"}, ("sk-123456789",)) == {"note": f"key is {REDACTED}"}
    assert "abcdefghij" not in redact({"msg": "sent Bearer abcdefghijklmnop"})["msg"]
