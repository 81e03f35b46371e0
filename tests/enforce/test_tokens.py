"""Approval tokens: canonical JSON, the call's digest, keys, and each way a token is refused.

The laws: `strict_json` is a faithful, order-blind encoding of exactly the values JSON can carry; the digest
is equal exactly when the digested fields are; a signed token verifies for its call only, and every attack
is refused with its own stable code.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given
from hypothesis import strategies as st

from gatekit.action import Action
from gatekit.enforce.tokens import (
    CODES,
    DIGEST_FIELDS,
    Approval,
    TokenRefused,
    action_digest,
    b64decode,
    b64encode,
    key_id,
    load_public_key,
    public_key_text,
    read_claims,
    sign_approval,
    strict_json,
    verify_approval,
    verify_signature,
)

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
NOW = 1_790_000_000.0
NOW_US = 1_790_000_000_000_000
CALL = {"tool": "payment.send", "agent": "billing-bot", "args": {"amount": 250, "recipient": "ACME"}}


# ---- strategies ----------------------------------------------------------------------------------------
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
PAIR = "\ud83d\ude00"  # two code points; JSON writes it as it writes the one character U+1F600


def has_pair(text: str) -> bool:
    return any("\ud800" <= a <= "\udbff" and "\udc00" <= b <= "\udfff" for a, b in itertools.pairwise(text))


# lone surrogates have an exact JSON form (an escape that reads back as itself); a pair does not
texts = st.text(st.characters() | surrogates, max_size=8).filter(lambda t: not has_pair(t))
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(10**80), 10**80)
           | st.floats(allow_nan=False, allow_infinity=False) | texts)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(texts, inner, max_size=3), max_leaves=8)
objects = st.dictionaries(texts, json_values, max_size=3)


def typed(value: Any) -> Any:
    """A form in which only identical JSON values are equal (Python says `1 == 1.0 == True`, `0.0 == -0.0`)."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list):
        return ("list", tuple(typed(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((k, typed(v)) for k, v in value.items()))
    raise AssertionError(f"not a JSON value: {value!r}")


def reordered(value: Any, rnd: random.Random) -> Any:
    """The same value with every object's keys inserted in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: reordered(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [reordered(v, rnd) for v in value]
    return value


class Opaque:
    pass


BAD_VALUES = [float("nan"), float("inf"), -float("inf"), {1, 2}, frozenset(), b"bytes", bytearray(b"x"),
              datetime(2030, 1, 1, tzinfo=UTC), date(2030, 1, 1), Decimal("1.5"), 1j, Opaque(),
              object(), range(3), {"k": 1}.keys()]
BAD_KEYS = [1, 0, True, False, None, (1, 2), 1.5, b"k", frozenset({"a"})]
paired = st.builds(lambda a, b: a + PAIR + b, texts, texts)
bad = (st.sampled_from(BAD_VALUES)
       | st.builds(lambda key, v: {key: v}, st.sampled_from(BAD_KEYS), json_values)
       | paired | st.builds(lambda key, v: {key: v}, paired, json_values))


@st.composite
def poisoned(draw: st.DrawFn) -> Any:
    """A JSON value with one thing JSON cannot carry somewhere inside it (at any depth)."""
    value = draw(bad)
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            before, after = draw(st.lists(scalars, max_size=2)), draw(st.lists(json_values, max_size=1))
            value = [*before, value, *after]
        else:
            siblings = draw(st.dictionaries(texts, scalars | json_values, max_size=2))
            key = draw(texts)
            value = {**{k: v for k, v in siblings.items() if k != key}, key: value}
    return value


# ---- strict_json ---------------------------------------------------------------------------------------
@given(json_values)
def test_strict_json_round_trips_every_json_value(value: Any) -> None:
    text = strict_json(value)
    assert text.isascii()
    assert typed(json.loads(text)) == typed(value)


@given(json_values, st.randoms(use_true_random=False))
def test_strict_json_ignores_key_order(value: Any, rnd: random.Random) -> None:
    assert strict_json(reordered(value, rnd)) == strict_json(value)


@given(json_values, json_values)
def test_strict_json_is_equal_exactly_when_the_values_are(a: Any, b: Any) -> None:
    assert (strict_json(a) == strict_json(b)) == (typed(a) == typed(b))


def test_strict_json_is_canonical_text() -> None:
    assert strict_json({"b": [1, 2.5], "a": "é\ud800", "c": None}) == '{"a":"\\u00e9\\ud800","b":[1,2.5],"c":null}'
    assert strict_json(10**40) == "1" + "0" * 40


@given(poisoned())
def test_strict_json_refuses_what_json_cannot_carry_at_any_depth(value: Any) -> None:
    with pytest.raises(ValueError):
        strict_json(value)


def test_strict_json_refuses_a_surrogate_pair_it_would_write_as_another_string() -> None:
    assert strict_json("\U0001f600") == '"\\ud83d\\ude00"'
    with pytest.raises(ValueError, match="surrogate pair"):
        strict_json(PAIR)  # else it would have the same JSON (and digest) as "\U0001f600"
    with pytest.raises(ValueError, match="surrogate pair"):
        strict_json({"args": {PAIR: 1}})
    assert json.loads(strict_json("\ude00\ud83d")) == "\ude00\ud83d"  # low then high: not a pair


def test_strict_json_refuses_nesting_it_cannot_bound() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        strict_json(loop)
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        strict_json(deep)


# ---- the call's digest ---------------------------------------------------------------------------------
identities = st.none() | texts | st.integers()
actions = st.fixed_dictionaries(
    {"tool": texts},
    optional={"agent": identities, "session": identities, "user": identities, "args": objects,
              "context": objects})


def normal(action: dict[str, Any], name: str) -> Any:
    value = action.get(name)
    return {} if value is None and name in ("args", "context") else value


@given(actions, st.sampled_from(DIGEST_FIELDS), st.data())
def test_digest_changes_when_any_digested_field_changes(action: dict[str, Any], name: str,
                                                        data: st.DataObject) -> None:
    new = data.draw({"tool": texts, "args": objects, "context": objects}.get(name, identities), label="new")
    assume(typed(new) != typed(normal(action, name)))
    assert action_digest({**action, name: new}) != action_digest(action)


@given(actions, actions)
def test_digest_is_equal_exactly_when_the_digested_fields_are(a: dict[str, Any], b: dict[str, Any]) -> None:
    same = all(typed(normal(a, k)) == typed(normal(b, k)) for k in DIGEST_FIELDS)
    assert (action_digest(a) == action_digest(b)) == same


@given(actions, st.randoms(use_true_random=False))
def test_digest_is_blind_to_key_order_copies_and_fields_it_does_not_digest(action: dict[str, Any],
                                                                           rnd: random.Random) -> None:
    digest = action_digest(action)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    assert action_digest(reordered(copy.deepcopy(action), rnd)) == digest
    assert action_digest({**action, "ts": "2030-01-01T00:00:00Z", "action_id": "a-1", "label": "benign"}) == digest


def test_digest_of_an_action_object_is_the_digest_of_its_record() -> None:
    record = {**CALL, "session": "s-1", "user": "u-bob", "context": {"env": "prod"}}
    assert action_digest(Action.from_record(record)) == action_digest(record)
    assert action_digest(Action(tool="payment.send")) == action_digest({"tool": "payment.send"})


@given(texts)
def test_digest_takes_missing_args_and_context_as_empty_objects(tool: str) -> None:
    digest = action_digest({"tool": tool})
    assert digest == action_digest({"tool": tool, "args": {}, "context": {}})
    assert digest == action_digest({"tool": tool, "args": None, "context": None})
    assert digest != action_digest({"tool": tool, "args": {"": None}})


@pytest.mark.parametrize("args", [[], [1], "amount=250", 250, True, ("a",)])
def test_digest_refuses_args_that_are_not_an_object(args: Any) -> None:
    with pytest.raises(ValueError, match="object `args`"):
        action_digest({"tool": "payment.send", "args": args})


@pytest.mark.parametrize("action", [None, "payment.send", ["payment.send"], {"args": {}}, {"tool": 5},
                                    {"tool": "t", "args": {"when": datetime(2030, 1, 1)}},
                                    {"tool": "t", "context": {1: "x"}}])
def test_digest_refuses_what_it_cannot_digest_exactly(action: Any) -> None:
    with pytest.raises(ValueError):
        action_digest(action)


# ---- keys ----------------------------------------------------------------------------------------------
def test_every_public_key_format_names_the_same_key(tmp_path: Path) -> None:
    public = KEY.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "service.pub").write_bytes(pem)
    forms = [public, pem, pem.decode(), public_key_text(public), tmp_path / "service.pub",
             str(tmp_path / "service.pub")]
    ids = {key_id(form) for form in forms}
    assert ids == {key_id(public)} and len(key_id(public)) == 16
    assert all(public_key_text(load_public_key(form)) == public_key_text(public) for form in forms)
    assert public_key_text(public).startswith("ed25519:")
    assert key_id(OTHER.public_key()) != key_id(public)


@pytest.mark.parametrize("key", [42, None, b"not a pem", "ed25519:AAAA",
                                 ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
                                     serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)])
def test_a_key_that_is_not_an_ed25519_public_key_is_refused(key: Any) -> None:
    with pytest.raises(ValueError):
        load_public_key(key)


# ---- tokens --------------------------------------------------------------------------------------------
def claims_for(action: Any = CALL, *, exp: int = NOW_US + 60_000_000, agent: str | None = "billing-bot",
               fp: str = "fp-1", rid: str = "r-1", nonce: str = "n-1", key: Any = KEY) -> Approval:
    return Approval(rid, action_digest(action), agent, fp, exp, nonce, NOW_US - 1_000_000, key_id(key.public_key()))


def token_for(action: Any = CALL, key: Any = KEY, **kwargs: Any) -> str:
    return sign_approval(key, claims_for(action, key=key, **kwargs))


def sign_raw(payload: bytes, key: Any = KEY, prefix: str = "gk1") -> str:
    """A correctly signed token over any payload bytes: what a service bug (or key holder) could issue."""
    body = prefix + "." + b64encode(payload)
    return body + "." + b64encode(key.sign(body.encode("ascii")))


def refusal(token: Any, action: Any = CALL, key: Any = None, **kwargs: Any) -> str:
    with pytest.raises(TokenRefused) as refused:
        verify_approval(token, action, KEY.public_key() if key is None else key, now=NOW, **kwargs)
    assert refused.value.code in CODES
    return refused.value.code


@given(actions, texts, texts, st.none() | texts, texts, st.integers(1, 10**15), st.integers(0, 10**18))
def test_a_signed_token_verifies_for_its_call_and_gives_back_its_claims(
        action: dict[str, Any], rid: str, nonce: str, agent: str | None, fp: str, ttl: int, iat: int) -> None:
    claims = Approval(rid, action_digest(action), agent, fp, NOW_US + ttl, nonce, iat, key_id(KEY.public_key()))
    token = sign_approval(KEY, claims)
    assert token.split(".")[0] == "gk1" and token.count(".") == 2 and "=" not in token
    assert read_claims(token) == claims
    assert verify_signature(token, public_key_text(KEY.public_key())) == claims
    assert verify_approval(token, action, KEY.public_key(), now=NOW, fingerprint=fp) == claims


def test_verify_takes_the_key_in_any_format() -> None:
    token = token_for()
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for key in (KEY.public_key(), pem, pem.decode(), public_key_text(KEY.public_key())):
        assert verify_approval(token, CALL, key, now=NOW).request_id == "r-1"


@given(st.integers(-10**9, 10**9))
def test_a_token_is_refused_as_expired_exactly_from_its_expiry(offset_us: int) -> None:
    exp = NOW_US + 30_000_000
    token = token_for(exp=exp)
    now_us = exp + offset_us
    if now_us >= exp:
        with pytest.raises(TokenRefused) as refused:
            verify_approval(token, CALL, KEY.public_key(), now=now_us / 1_000_000)
        assert refused.value.code == "expired"
    else:
        assert verify_approval(token, CALL, KEY.public_key(), now=now_us / 1_000_000).expires_us == exp


def test_an_unreadable_key_refuses_as_signature() -> None:
    assert refusal(token_for(), key="ed25519:AAAA") == "signature"
    assert refusal(token_for(), key=42) == "signature"


# each refusal code from its own attack ------------------------------------------------------------------
def _flip_payload_char(token: str) -> str:
    """Alter one byte inside the nonce of the payload: the claims still read, but were not what was signed."""
    prefix, payload, signature = token.split(".")
    raw = b64decode(payload)
    at = raw.index(b'"nonce":"n-1"') + len(b'"nonce":"n-')
    raw = raw[:at] + b"9" + raw[at + 1:]
    return ".".join((prefix, b64encode(raw), signature))


def _swap_payload(token: str) -> str:
    """Another token's payload (a bigger approval) under this token's signature."""
    other = token_for({**CALL, "args": {"amount": 9000, "recipient": "EVIL"}}, rid="r-2")
    return ".".join((token.split(".")[0], other.split(".")[1], token.split(".")[2]))


MALFORMED = {
    "not a string": None,
    "bytes": token_for().encode(),
    "garbage": "hello world",
    "empty": "",
    "two parts": "gk1.abc",
    "four parts": token_for() + ".AAAA",
    "wrong prefix": "gk2" + token_for()[3:],
    "upper prefix": "GK1" + token_for()[3:],
    "bad base64": "gk1.!!!!.AAAA",
    "non-ascii base64": "gk1.é.AAAA",
    "not json": sign_raw(b"not json"),
    "json list": sign_raw(b'["rid"]'),
    "missing claims": sign_raw(strict_json({"rid": "r-1", "digest": action_digest(CALL)}).encode()),
    "non-string agent": sign_raw(strict_json({**claims_for().to_dict(), "agent": 5}).encode()),
    "non-integer expiry": sign_raw(strict_json({**claims_for().to_dict(), "exp": "soon"}).encode()),
    "over-long": token_for(rid="r" * 8192),
    "over-long signature": token_for() + "A" * 8192,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_tokens_are_refused_as_malformed(name: str) -> None:
    assert refusal(MALFORMED[name]) == "malformed"
    with pytest.raises(TokenRefused) as refused:
        read_claims(MALFORMED[name])
    assert refused.value.code == "malformed"


@pytest.mark.parametrize("claim", ["rid", "digest", "agent", "fp", "exp", "nonce", "iat", "kid"])
def test_a_token_missing_any_claim_is_malformed_even_when_signed(claim: str) -> None:
    raw = claims_for().to_dict()
    del raw[claim]
    assert refusal(sign_raw(strict_json(raw).encode())) == "malformed"


ATTACKS = {
    "malformed": lambda: (MALFORMED["garbage"], CALL, {}),
    "signature": lambda: (token_for(key=OTHER), CALL, {}),
    "action": lambda: (token_for(), {**CALL, "args": {"amount": 9000, "recipient": "ACME"}}, {}),
    "expired": lambda: (token_for(exp=round(NOW * 1_000_000)), CALL, {}),
    "fingerprint": lambda: (token_for(), CALL, {"fingerprint": "fp-2"}),
}


def test_each_attack_has_its_own_distinct_code() -> None:
    codes = {name: refusal(token, action, **kwargs) for name, (token, action, kwargs) in
             ((name, make()) for name, make in ATTACKS.items())}
    assert codes == {name: name for name in ATTACKS}
    assert len(set(codes.values())) == len(ATTACKS)
    # the untampered token passes the same checks: each refusal is the attack's doing
    assert verify_approval(token_for(), CALL, KEY.public_key(), now=NOW, fingerprint="fp-1").request_id == "r-1"


@pytest.mark.parametrize("attack", [
    lambda t: token_for(key=OTHER),  # signed by another key (naming that key)
    lambda t: sign_approval(OTHER, claims_for(key=KEY)),  # another key that claims to be this one
    _flip_payload_char,
    _swap_payload,
    lambda t: t.rsplit(".", 1)[0] + "." + t.rsplit(".", 1)[1][::-1],
    lambda t: t.rsplit(".", 1)[0] + ".",
    lambda t: t.rsplit(".", 1)[0] + ".AAAA",
    lambda t: "gk1." + t.split(".")[1] + "." + b64encode(KEY.sign(b"gk1.something-else")),
], ids=["other-key", "other-key-same-kid", "flipped-payload-byte", "swapped-payload", "reversed-signature",
        "empty-signature", "short-signature", "signature-of-other-text"])
def test_an_altered_or_foreign_token_is_refused_as_signature(attack: Any) -> None:
    token = attack(token_for())
    assert read_claims(token)  # readable: the refusal is the signature's, not the format's
    assert refusal(token) == "signature"
    assert refusal(token, {**CALL, "args": {"amount": 1}}) == "signature"  # signature is checked first


@given(st.data())
def test_any_flipped_byte_is_refused(data: st.DataObject) -> None:
    token = token_for()
    prefix, payload, signature = token.split(".")
    part = data.draw(st.sampled_from(["payload", "signature"]))
    raw = bytearray(b64decode(payload if part == "payload" else signature))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    altered = (".".join((prefix, b64encode(bytes(raw)), signature)) if part == "payload"
               else ".".join((prefix, payload, b64encode(bytes(raw)))))
    code = refusal(altered)
    try:
        read_claims(altered)
    except TokenRefused:
        assert code == "malformed"
    else:
        assert code == "signature"


@given(texts | st.binary().map(lambda b: b.decode("latin-1")))
def test_any_text_is_refused_as_malformed(text: str) -> None:
    assert refusal(text) == "malformed"


JSON_SNIPPETS = ['"s"', '""', "0", "-1", "12", "12.5", "1e400", "-1e400", "1e999", "NaN", "Infinity",
                 "-Infinity", "null", "true", "false", "[]", "{}", '["x"]', '{"a":1}', "9" * 5000]


@given(st.fixed_dictionaries({}, optional={k: st.sampled_from(JSON_SNIPPETS)
                                          for k in ("rid", "digest", "agent", "fp", "exp", "nonce", "iat", "kid")}))
def test_reading_any_payload_gives_claims_or_a_malformed_refusal(fields: dict[str, str]) -> None:
    payload = ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()
    token = sign_raw(payload)
    try:
        claims = read_claims(token)
    except TokenRefused as exc:
        assert exc.code == "malformed"
    else:
        assert isinstance(claims.expires_us, int) and isinstance(claims.issued_us, int)
        assert claims.agent is None or isinstance(claims.agent, str)


@pytest.mark.parametrize("payload", [
    b"[" * 6000, b'{"a":' * 1200,
    strict_json({**claims_for().to_dict(), "exp": 0}).replace('"exp":0', '"exp":1e999').encode(),
    strict_json({**claims_for().to_dict(), "iat": 0}).replace('"iat":0', '"iat":-Infinity').encode(),
], ids=["deep-list", "deep-object", "infinite-expiry", "infinite-issue-time"])
def test_a_payload_that_breaks_the_json_reader_is_malformed(payload: bytes) -> None:
    token = "gk1." + b64encode(payload) + ".AAAA"
    assert len(token) <= 8192
    with pytest.raises(TokenRefused) as refused:
        read_claims(token)
    assert refused.value.code == "malformed"


def test_codes_are_stable() -> None:
    assert CODES == ("malformed", "signature", "action", "expired", "fingerprint", "used", "revoked")
