"""agentcost.wire: signed contexts and reports, their verification and its failure modes, carriers, traceparent."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import agentcost
import agentcost.adapters
from agentcost import AgentCostError, Usage, format_span_id
from agentcost.wire import (
    CONTEXT_HEADER,
    REPORT_HEADER,
    DelegatedBudget,
    Keyring,
    Verifier,
    WireBadSignature,
    WireContext,
    WireError,
    WireExpired,
    WireMalformed,
    WireReplayed,
    WireReport,
    WireTooLarge,
    WireTotals,
    WireUnknownKey,
    WireWrongAudience,
    accept_context,
    baggage_header,
    canonical_json,
    encode_context,
    encode_report,
    extract,
    inject,
    narrow,
    parse_traceparent,
    tighter,
    traceparent,
)

# ---------------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------------

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z in Unix milliseconds
ROOT = "8a3f000000000001"
PARENT = "8a3f000000000007"
REASONS = ("too_large", "malformed", "unknown_key", "bad_signature", "expired", "wrong_audience", "replayed")


class Clock:
    """A settable clock in Unix milliseconds, for Verifier(now=...)."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def keyring() -> Keyring:
    return Keyring({"k1": KEY}, active="k1")


def verifier(ring: Keyring | None = None, **options: Any) -> Verifier:
    options.setdefault("now", Clock())
    return Verifier(ring or keyring(), audience="search-agent", **options)


def context(**fields: Any) -> WireContext:
    values: dict[str, Any] = {
        "root": ROOT,
        "parent": PARENT,
        "attrs": {"team": "search", "user": "u-42"},
        "budget": DelegatedBudget(cost=Decimal("0.25"), tokens=20_000),
        "iat": NOW,
        "exp": NOW + 60_000,
        "aud": "search-agent",
        "nonce": "00112233445566778899aabbccddeeff",
        "kid": "k1",
    }
    values.update(fields)
    return WireContext(**values)


def totals(**fields: Any) -> WireTotals:
    values: dict[str, Any] = {"cost": Decimal("0.0123"), "unpriced": 1, "spans": 4, "input_tokens": 900}
    values["output_tokens"] = 120
    values.update(fields)
    return WireTotals(**values)


def report(**fields: Any) -> WireReport:
    values: dict[str, Any] = {
        "node": PARENT,
        "final": True,
        "seq": 2,
        "cost": Decimal("0.002"),
        "source": "computed",
        "totals": totals(),
        "iat": NOW,
        "kid": "k1",
    }
    values.update(fields)
    return WireReport(**values)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(payload: bytes, key: bytes = KEY) -> str:
    """A token for arbitrary payload bytes, correctly signed: what a holder of the key could send."""
    body = b64(payload)
    mac = hmac.new(key, b"agentcost.v1." + body.encode("ascii"), hashlib.sha256).digest()
    return f"v1.{body}.{b64(mac)}"


def payload_of(model: WireContext | WireReport) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(canonical_json(model))
    return data


def signed_json(data: object) -> str:
    return sign(json.dumps(data).encode("utf-8"))


def flip(text: str, index: int) -> str:
    """``text`` with the character at ``index`` replaced by another base64url character."""
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def sample_tree() -> agentcost.CostTree:
    with agentcost.run("callee", attrs={"team": "search"}) as run, run.child("researcher") as agent:
        agent.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=1187, output_tokens=211))
        agent.record_tool("lookup", cost=None)
    return run.tree


# ---------------------------------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------------------------------

span_ids = st.integers(min_value=1, max_value=2**64 - 1).map(format_span_id)
money = st.decimals(
    min_value=0, max_value=Decimal("9999999999999999.99"), allow_nan=False, allow_infinity=False
).filter(lambda value: (not value or value.adjusted() >= -50) and int(value.as_tuple().exponent) >= -64)
counts = st.integers(min_value=0, max_value=2**53 - 1)
no_controls = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=128)
budgets = st.builds(
    DelegatedBudget,
    cost=st.none() | money,
    tokens=st.none() | counts,
    calls=st.none() | counts,
    hard=st.booleans(),
)


@st.composite
def contexts(draw: st.DrawFn) -> WireContext:
    iat = draw(st.integers(min_value=0, max_value=2**52))
    return WireContext(
        root=draw(span_ids),
        parent=draw(span_ids),
        attrs=draw(st.dictionaries(no_controls, st.text(max_size=200), max_size=8)),
        budget=draw(st.none() | budgets),
        iat=iat,
        exp=iat + draw(st.integers(min_value=0, max_value=300_000)),
        aud=draw(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=256)),
        nonce=draw(st.binary(min_size=16, max_size=16)).hex(),
        kid="k1",
    )


@st.composite
def reports(draw: st.DrawFn) -> WireReport:
    spans = draw(counts)
    return WireReport(
        node=draw(span_ids),
        final=draw(st.booleans()),
        seq=draw(counts),
        cost=draw(st.none() | money),
        source=draw(st.none() | st.sampled_from(["computed", "provider", "manual", "estimated", "remote"])),
        totals=WireTotals(
            cost=draw(money),
            unpriced=draw(st.integers(min_value=0, max_value=spans)),
            spans=spans,
            input_tokens=draw(counts),
            output_tokens=draw(counts),
        ),
        exhausted=draw(st.booleans()),
        iat=draw(counts),
        kid="k1",
    )


# ---------------------------------------------------------------------------------------------------------------------
# round trips and canonical JSON
# ---------------------------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(ctx=contexts())
def test_context_round_trips_through_encode_and_verify(ctx: WireContext) -> None:
    """Any valid context encodes to a token that verifies back to an equal context."""
    check = Verifier(keyring(), audience=ctx.aud, max_bytes=1_000_000, now=Clock(ctx.iat))
    assert check.verify_context(encode_context(ctx, keyring())) == ctx


@settings(max_examples=200, deadline=None)
@given(rep=reports())
def test_report_round_trips_through_encode_and_verify(rep: WireReport) -> None:
    """Any valid report encodes to a token that verifies back to an equal report, for its node."""
    assert verifier().verify_report(encode_report(rep, keyring()), node=rep.node) == rep


def test_report_with_its_tree_round_trips_and_the_tree_parses() -> None:
    """A final report carrying the callee's tree verifies, and its tree rebuilds with the reported totals."""
    tree = sample_tree()
    rep = WireReport.issue(
        keyring(), node=PARENT, final=True, seq=0, totals=WireTotals.from_tree(tree), tree=tree.to_dict()
    )
    got = verifier(max_bytes=65_536).verify_report(encode_report(rep, keyring()))
    assert got == rep
    assert got.tree is not None
    rebuilt = agentcost.CostTree.from_dict(got.tree)
    assert rebuilt.render() == tree.render()
    assert WireTotals.from_tree(rebuilt) == got.totals
    assert got.totals.unpriced == 1
    assert got.totals.spans == 4


def test_a_tree_whose_totals_differ_from_the_report_is_malformed() -> None:
    """A report whose totals are not its tree's totals is refused at construction and when parsed."""
    tree = sample_tree()
    wrong = totals(cost=Decimal("1"), unpriced=0, spans=4)
    with pytest.raises(ValidationError, match="totals are not the totals of tree"):
        report(totals=wrong, tree=tree.to_dict())
    data = payload_of(report())
    data["tree"] = tree.to_dict()
    check = verifier(max_bytes=65_536)
    with pytest.raises(WireMalformed, match="totals are not the totals of tree"):
        check.verify_report(sign(json.dumps(data).encode()))
    data["tree"] = {"format": "agentcost.tree", "version": 1, "spans": []}
    with pytest.raises(WireMalformed, match="not a cost tree"):
        check.verify_report(sign(json.dumps(data).encode()))
    assert check.rejected["malformed"] == 2


def test_issue_fills_nonce_times_and_the_active_key_id() -> None:
    """WireContext.issue draws a fresh 128-bit nonce, sets iat/exp from now and ttl, and names the active key."""
    ring = keyring()
    first = WireContext.issue(ring, root=0x8A3F000000000001, parent=PARENT, aud="svc", now=NOW, ttl_ms=5_000)
    second = WireContext.issue(ring, root=ROOT, parent=PARENT, aud="svc", now=NOW)
    assert first.root == ROOT
    assert (first.iat, first.exp, first.kid) == (NOW, NOW + 5_000, "k1")
    assert len(first.nonce) == 32
    assert first.nonce != second.nonce
    assert first.attrs == {}
    assert first.budget is None


def test_canonical_json_is_sorted_compact_utf8_with_money_strings() -> None:
    """Keys sorted, no whitespace, UTF-8 (not escaped), every field written, money as format(d, 'f')."""
    ctx = context(attrs={"feature": "résumé", "a": "x"}, budget=DelegatedBudget(cost=Decimal("1E-7")))
    text = canonical_json(ctx)
    assert text.startswith(b'{"attrs":{"a":"x","feature":"r\xc3\xa9sum\xc3\xa9"},"aud":"search-agent",')
    assert b'"budget":{"calls":null,"cost":"0.0000001","hard":true,"tokens":null}' in text
    assert b" " not in text
    assert json.loads(text) == json.loads(json.dumps(json.loads(text), sort_keys=True))
    assert (
        canonical_json({"b": Decimal("1E+2"), "a": [Decimal("-0"), Decimal("0.10")]}) == b'{"a":["0","0.10"],"b":"100"}'
    )


@pytest.mark.parametrize(
    "data", [{"x": float("nan")}, {"x": Decimal("-1")}, {"x": Decimal("NaN")}, {"x": {1, 2}}, {"x": "\ud800"}]
)
def test_canonical_json_refuses_what_is_not_wire_json(data: dict[str, Any]) -> None:
    """NaN, negative or non-finite money, non-JSON types and lone surrogates raise WireMalformed."""
    with pytest.raises(WireMalformed):
        canonical_json(data)


def test_money_on_the_wire_reads_as_decimal_and_keeps_its_digits() -> None:
    """A decimal string parses to the exact Decimal, trailing zeros included."""
    data = payload_of(context())
    data["budget"]["cost"] = "0.2500"
    ctx = verifier().verify_context(sign(json.dumps(data).encode()))
    assert ctx.budget is not None
    assert ctx.budget.cost == Decimal("0.25")
    assert str(ctx.budget.cost) == "0.2500"


@pytest.mark.parametrize("value", [0.25, 1.0, float("nan")])
def test_float_money_is_refused_in_python(value: float) -> None:
    """Constructing a model with float money raises (a ValueError), as everywhere in agentcost."""
    with pytest.raises(ValueError, match="float"):
        DelegatedBudget(cost=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("root", "8A3F000000000001"),
        ("root", "0000000000000000"),
        ("parent", "8a3f"),
        ("nonce", "00112233"),
        ("kid", "bad kid"),
        ("aud", ""),
        ("aud", "a\nb"),
        ("iat", -1),
        ("iat", 2**53),
        ("iat", True),
        ("exp", NOW - 1),
        ("attrs", {"": "x"}),
        ("attrs", {"k": "x" * 1025}),
        ("attrs", {f"k{i}": "v" for i in range(65)}),
        ("attrs", {"k": 1}),
        ("attrs", {"k": "\udc80"}),
    ],
)
def test_models_enforce_the_documented_bounds(field: str, value: object) -> None:
    """Ids, nonces, key ids, audiences, integers and attribution outside the spec's bounds are refused."""
    with pytest.raises(ValidationError):
        context(**{field: value})


def test_models_are_frozen_and_refuse_unknown_fields() -> None:
    """Payload models are immutable and reject fields the version does not define."""
    ctx = context()
    with pytest.raises(ValidationError):
        ctx.aud = "other"
    with pytest.raises(ValidationError):
        context(extra="x")
    with pytest.raises(ValidationError, match="unpriced"):
        totals(unpriced=5, spans=4)


# ---------------------------------------------------------------------------------------------------------------------
# every failure mode: its error, its count, and accept_context
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A way a context token goes wrong, the error it must raise and the reason it is counted under."""

    name: str
    token: Callable[[Verifier], str]
    error: type[WireError]


def good_token() -> str:
    return encode_context(context(), keyring())


def _tampered_payload(_: Verifier) -> str:
    """The signed payload with one byte changed (a cost of 0.25 made 9.25), sent with the original signature."""
    _version, body, signature = good_token().split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert payload.count(b'"0.25"') == 1
    tampered = payload.replace(b'"0.25"', b'"9.25"')
    return f"v1.{b64(tampered)}.{signature}"


def _tampered_signature(_: Verifier) -> str:
    token = good_token()
    return flip(token, len(token) - 5)


def _unknown_kid(_: Verifier) -> str:
    ring = Keyring({"k9": OTHER_KEY}, active="k9")
    return encode_context(context(kid="k9"), ring)


def _replayed(check: Verifier) -> str:
    token = good_token()
    check.verify_context(token)
    return token


def _with(**changes: Any) -> Callable[[Verifier], str]:
    """A correctly signed payload with ``changes`` applied to the JSON (None deletes nothing; use _without)."""

    def make(_: Verifier) -> str:
        data = payload_of(context())
        for path, value in changes.items():
            target = data
            *parents, last = path.split("__")
            for part in parents:
                target = target[part]
            target[last] = value
        return signed_json(data)

    return make


CASES = [
    Case("unsigned", lambda _: good_token().rsplit(".", 1)[0], WireMalformed),
    Case("empty signature", lambda _: good_token().rsplit(".", 1)[0] + ".", WireMalformed),
    Case("tampered payload byte", _tampered_payload, WireBadSignature),
    Case("tampered signature", _tampered_signature, WireBadSignature),
    Case(
        "signed with another key of the same id", lambda _: sign(canonical_json(context()), OTHER_KEY), WireBadSignature
    ),
    Case("unknown kid", _unknown_kid, WireUnknownKey),
    Case("expired", lambda _: encode_context(context(iat=NOW - 200_000, exp=NOW - 30_001), keyring()), WireExpired),
    Case(
        "issued in the future",
        lambda _: encode_context(context(iat=NOW + 30_001, exp=NOW + 60_000), keyring()),
        WireExpired,
    ),
    Case("too long-lived", lambda _: encode_context(context(exp=NOW + 300_001), keyring()), WireExpired),
    Case("replayed nonce", _replayed, WireReplayed),
    Case("wrong audience", lambda _: encode_context(context(aud="billing-agent"), keyring()), WireWrongAudience),
    Case(
        "oversized",
        lambda _: encode_context(context(attrs={f"pad{n}": "x" * 1000 for n in range(7)}), keyring()),
        WireTooLarge,
    ),
    Case("oversized garbage", lambda _: "v" * 8193, WireTooLarge),
    Case("float money", _with(budget__cost=0.25), WireMalformed),
    Case("integer money", _with(budget__cost=1), WireMalformed),
    Case("negative money", _with(budget__cost="-0.25"), WireMalformed),
    Case("exponent money", _with(budget__cost="2.5E-1"), WireMalformed),
    Case("unknown field", _with(scope="admin"), WireMalformed),
    Case("unknown budget field", _with(budget__dollars="5"), WireMalformed),
    Case("wrong version", _with(v=2), WireMalformed),
    Case("boolean version", _with(v=True), WireMalformed),
    Case("negative integer", _with(budget__tokens=-1), WireMalformed),
    Case("integer beyond 2**53", _with(budget__tokens=2**53), WireMalformed),
    Case("exp before iat", _with(exp=NOW - 1), WireMalformed),
    Case("token version v2", lambda _: "v2" + good_token()[2:], WireMalformed),
    Case("not a token", lambda _: "hello", WireMalformed),
    Case("JSON array payload", lambda _: sign(b"[1]"), WireMalformed),
    Case("not UTF-8", lambda _: sign(b'{"v":1,"aud":"\xff"}'), WireMalformed),
    Case("not JSON", lambda _: sign(b"{v:1}"), WireMalformed),
    Case("NaN", lambda _: sign(b'{"v":1,"iat":NaN}'), WireMalformed),
    Case("duplicate key", lambda _: sign(canonical_json(context())[:-1] + b',"aud":"search-agent"}'), WireMalformed),
    Case(
        "escaped lone surrogate",
        lambda _: sign(canonical_json(context()).replace(b'"u-42"', b'"\\udc80"')),
        WireMalformed,
    ),
    Case("deeply nested", lambda _: sign(b'{"v":1,"x":' + b"[" * 2500 + b"]" * 2500 + b"}"), WireMalformed),
    Case("padding", lambda _: good_token().replace(".", "=.", 2).replace("=.", ".", 1), WireMalformed),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_failure_raises_its_error_and_is_counted(case: Case) -> None:
    """Every forged, tampered, expired, replayed, misaddressed, oversized or malformed context raises its error."""
    check = verifier()
    token = case.token(check)
    with pytest.raises(WireError) as raised:
        check.verify_context(token)
    assert type(raised.value) is case.error, raised.value
    assert isinstance(raised.value, AgentCostError)
    assert isinstance(raised.value, ValueError)
    assert not isinstance(raised.value, ValidationError)
    expected = dict.fromkeys(REASONS, 0)
    expected[case.error.reason] = 1
    assert dict(check.rejected) == expected


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_accept_context_treats_each_failure_as_no_context(case: Case) -> None:
    """accept_context returns None for every invalid context (counted), and re-raises it with refuse=True."""
    check = verifier()
    token = case.token(check)
    before = sum(check.rejected.values())
    assert accept_context(token, check) is None
    assert check.rejected[case.error.reason] >= 1
    assert sum(check.rejected.values()) == before + 1
    with pytest.raises(case.error):
        accept_context(token, check, refuse=True)


def test_accept_context_passes_valid_contexts_and_ignores_a_missing_one() -> None:
    """A valid token is returned; no token is None without counting anything, even with refuse=True."""
    check = verifier()
    assert accept_context(good_token(), check) == context()
    assert accept_context(None, check) is None
    assert accept_context(None, check, refuse=True) is None
    assert sum(check.rejected.values()) == 0


def test_the_checks_run_in_the_documented_order() -> None:
    """A token wrong in several ways reports the first check it fails: size, shape, key, MAC, time, audience."""
    check = verifier()
    stale_elsewhere = context(iat=NOW - 200_000, exp=NOW - 100_000, aud="other")
    token = encode_context(stale_elsewhere, keyring())
    with pytest.raises(WireExpired):
        check.verify_context(token)
    with pytest.raises(WireBadSignature):
        check.verify_context(flip(token, len(token) - 5))
    with pytest.raises(WireUnknownKey):
        check.verify_context(encode_context(context(kid="k9", aud="other"), Keyring({"k9": OTHER_KEY}, "k9")))
    with pytest.raises(WireTooLarge):
        check.verify_context(token + "A" * 8192)
    with pytest.raises(WireWrongAudience):
        check.verify_context(encode_context(context(aud="other"), keyring()))


def test_expiry_boundaries_are_inclusive() -> None:
    """exp == now - skew, iat == now + skew and exp - iat == max_age are all still accepted."""
    check = verifier()
    for number, (iat, exp) in enumerate(
        [(NOW - 60_000, NOW - 30_000), (NOW + 30_000, NOW + 60_000), (NOW, NOW + 300_000)]
    ):
        nonce = f"{number:032x}"
        assert check.verify_context(encode_context(context(iat=iat, exp=exp, nonce=nonce), keyring())).nonce == nonce


def test_bytes_tokens_are_accepted_and_non_ascii_is_malformed() -> None:
    """A token may arrive as bytes; non-ASCII text or bytes, and other types, are malformed."""
    check = verifier()
    assert check.verify_context(good_token().encode("ascii")) == context()
    for token in (good_token() + "é", good_token().encode() + b"\xff", None, 12):
        with pytest.raises(WireMalformed):
            check.verify_context(token)


def test_a_context_is_not_a_report_and_a_report_is_not_a_context() -> None:
    """A context token presented as a report (or the reverse) is malformed: the two schemas are disjoint."""
    check = verifier()
    with pytest.raises(WireMalformed):
        check.verify_report(good_token())
    with pytest.raises(WireMalformed):
        check.verify_context(encode_report(report(), keyring()))


def test_reports_are_signature_checked_and_bound_to_their_node() -> None:
    """A report verifies any number of times (no nonce), but not tampered, and not for another node."""
    check = verifier()
    token = encode_report(report(), keyring())
    assert check.verify_report(token) == check.verify_report(token, node=PARENT) == report()
    with pytest.raises(WireWrongAudience):
        check.verify_report(token, node=ROOT)
    with pytest.raises(WireBadSignature):
        check.verify_report(flip(token, len(token) - 5))
    with pytest.raises(WireTooLarge):
        check.verify_report("A" * 9000)
    assert check.rejected["wrong_audience"] == 1
    assert check.rejected["bad_signature"] == 1
    assert check.rejected["too_large"] == 1


def test_encode_requires_the_payload_to_name_the_active_key() -> None:
    """Encoding a payload whose kid is not the keyring's active key raises WireError."""
    with pytest.raises(WireError, match="signs with 'k1'"):
        encode_context(context(kid="k2"), keyring())
    with pytest.raises(WireError, match="signs with 'k1'"):
        encode_report(report(kid="k2"), keyring())


# ---------------------------------------------------------------------------------------------------------------------
# keys and rotation
# ---------------------------------------------------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_valid_until_the_old_key_is_removed() -> None:
    """After switching the active key, tokens of the old key still verify; once removed they are unknown_key."""
    ring = keyring()
    check = verifier(ring)
    old = encode_context(context(nonce="0" * 31 + "1"), ring)
    ring.add("k2", OTHER_KEY)
    ring.activate("k2")
    new = encode_context(context(kid="k2", nonce="0" * 31 + "2"), ring)
    assert check.verify_context(old).kid == "k1"
    assert check.verify_context(new).kid == "k2"
    ring.remove("k1")
    assert ring.key_ids == ("k2",)
    with pytest.raises(WireUnknownKey):
        check.verify_context(encode_context(context(nonce="0" * 31 + "3"), Keyring({"k1": KEY}, "k1")))
    assert check.rejected["unknown_key"] == 1


def test_keyring_refuses_short_keys_bad_ids_and_unsafe_changes() -> None:
    """Keys under 16 bytes, malformed ids, a missing active key, and removing or replacing the active key raise."""
    with pytest.raises(WireError, match="at least 16 bytes"):
        Keyring({"k1": b"short"}, active="k1")
    with pytest.raises(WireError, match="key id"):
        Keyring({"k 1": KEY}, active="k 1")
    with pytest.raises(WireError, match="active key id"):
        Keyring({"k1": KEY}, active="k2")
    ring = keyring()
    with pytest.raises(WireError, match="is active"):
        ring.remove("k1")
    with pytest.raises(WireError, match="is active"):
        ring.add("k1", OTHER_KEY)
    with pytest.raises(WireError, match="add it first"):
        ring.activate("k3")
    with pytest.raises(WireError, match="must be bytes"):
        ring.add("k2", "not bytes" * 4)  # type: ignore[arg-type]


def test_keyring_repr_never_shows_keys_and_generate_makes_a_usable_ring() -> None:
    """repr(Keyring) lists key ids only; Keyring.generate() makes a ring that signs and verifies."""
    ring = keyring()
    assert KEY.hex() not in repr(ring)
    assert repr(ring) == "Keyring(key_ids=['k1'], active='k1')"
    fresh = Keyring.generate("test")
    ctx = context(kid="test")
    assert Verifier(fresh, audience="search-agent", now=Clock()).verify_context(encode_context(ctx, fresh)) == ctx


def test_verifier_refuses_nonsensical_settings() -> None:
    """An empty audience, non-positive limits or a non-Keyring are refused at construction."""
    with pytest.raises(WireError):
        Verifier(keyring(), audience="")
    with pytest.raises(WireError):
        Verifier(keyring(), audience="a", max_bytes=0)
    with pytest.raises(WireError):
        Verifier(keyring(), audience="a", replay_window=0)
    with pytest.raises(TypeError):
        Verifier({"k1": KEY}, audience="a")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# replay window
# ---------------------------------------------------------------------------------------------------------------------


def test_a_nonce_is_remembered_until_its_context_expires() -> None:
    """A nonce is refused while its context could still be accepted, and forgotten afterwards."""
    clock = Clock()
    check = verifier(now=clock)
    token = good_token()
    check.verify_context(token)
    clock.now = NOW + 60_000 + 30_000  # exp + skew: still acceptable, so still remembered
    with pytest.raises(WireReplayed):
        check.verify_context(token)
    clock.now += 1
    with pytest.raises(WireExpired):
        check.verify_context(token)
    fresh = encode_context(context(nonce="f" * 32, iat=clock.now, exp=clock.now + 1000), keyring())
    check.verify_context(fresh)
    assert len(check._nonces) == 1  # the expired nonce was dropped


def test_a_full_replay_window_fails_closed() -> None:
    """When the window is full of live nonces the soonest-expiring is evicted, and contexts no later than it are
    refused rather than risk a replay; the window never grows past its size."""
    check = verifier(replay_window=2)
    tokens = [encode_context(context(nonce=f"{n:032x}", exp=NOW + 10_000 * (n + 1)), keyring()) for n in range(4)]
    check.verify_context(tokens[0])
    check.verify_context(tokens[1])
    check.verify_context(tokens[2])  # evicts nonce 0 (exp NOW+10s): the floor is NOW+10s+skew
    assert len(check._nonces) == 2
    with pytest.raises(WireReplayed, match="full"):
        check.verify_context(tokens[0])
    early = encode_context(context(nonce="e" * 32, exp=NOW + 5_000), keyring())
    with pytest.raises(WireReplayed, match="full"):
        check.verify_context(early)
    check.verify_context(tokens[3])
    with pytest.raises(WireReplayed, match="already used"):
        check.verify_context(tokens[3])


def test_concurrent_replays_accept_exactly_one() -> None:
    """Sixteen threads verifying the same token at once: exactly one succeeds, fifteen are counted as replayed."""
    check = verifier()
    token = good_token()
    barrier = threading.Barrier(16)

    def attempt(_: int) -> bool:
        barrier.wait()
        return accept_context(token, check) is not None

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, range(16)))
    assert results.count(True) == 1
    assert check.rejected["replayed"] == 15


def test_rejection_counts_are_exact_under_threads() -> None:
    """Rejections counted from many threads add up exactly."""
    check = verifier()

    def reject(_: int) -> None:
        for _ in range(200):
            accept_context("garbage", check)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(reject, range(8)))
    assert check.rejected["malformed"] == 1600
    assert isinstance(check.rejected, type(check.rejected))
    with pytest.raises(TypeError):
        check.rejected["malformed"] = 0  # type: ignore[index]


# ---------------------------------------------------------------------------------------------------------------------
# budgets: never widen
# ---------------------------------------------------------------------------------------------------------------------


def at_most(result: Decimal | int | None, limit: Decimal | int | None) -> bool:
    """``result`` is no wider than ``limit`` (``None`` is unlimited)."""
    return limit is None or (result is not None and result <= limit)


@settings(max_examples=300, deadline=None)
@given(
    budget=st.none() | budgets,
    cost=st.none() | money,
    tokens=st.none() | counts,
    calls=st.none() | counts,
)
def test_narrow_never_widens(
    budget: DelegatedBudget | None, cost: Decimal | None, tokens: int | None, calls: int | None
) -> None:
    """The sent budget is within both what the caller delegates and what it has left, on every metric."""
    sent = narrow(budget, cost, tokens, calls)
    limits = [(cost, tokens, calls)]
    if budget is not None:
        limits.append((budget.cost, budget.tokens, budget.calls))
    if sent is None:
        assert budget is None
        assert cost is None
        assert tokens is None
        assert calls is None
        return
    for limit_cost, limit_tokens, limit_calls in limits:
        assert at_most(sent.cost, limit_cost)
        assert at_most(sent.tokens, limit_tokens)
        assert at_most(sent.calls, limit_calls)
    # hard is never loosened: a hard budget, or any remaining limit of the caller, makes the sent budget hard
    if (budget is not None and budget.hard) or any(value is not None for value in (cost, tokens, calls)):
        assert sent.hard
    # and nothing is narrowed that did not have to be: each metric is exactly the smaller of the two limits
    wanted = DelegatedBudget() if budget is None else budget
    for mine, left, got in (
        (wanted.cost, cost, sent.cost),
        (wanted.tokens, tokens, sent.tokens),
        (wanted.calls, calls, sent.calls),
    ):
        candidates = [value for value in (mine, left) if value is not None]
        assert got == (min(candidates) if candidates else None)


@settings(max_examples=200, deadline=None)
@given(a=st.none() | budgets, b=st.none() | budgets)
def test_tighter_is_within_both_and_symmetric(a: DelegatedBudget | None, b: DelegatedBudget | None) -> None:
    """tighter(a, b) is no wider than a nor b, and equals tighter(b, a)."""
    both = tighter(a, b)
    assert both == tighter(b, a)
    for side in (a, b):
        if side is None:
            continue
        assert both is not None
        assert at_most(both.cost, side.cost)
        assert at_most(both.tokens, side.tokens)
        assert at_most(both.calls, side.calls)
        assert both.hard or not side.hard


def test_narrow_examples() -> None:
    """The delegated amount is capped by what is left; a soft budget stays soft only when the caller has no limit."""
    soft = DelegatedBudget(cost=Decimal("1"), hard=False)
    assert narrow(soft, None, None, None) == soft
    assert narrow(soft, Decimal("100"), None, None) == DelegatedBudget(cost=Decimal("1"), hard=True)
    assert narrow(soft, Decimal("0.5"), 10, None) == DelegatedBudget(cost=Decimal("0.5"), tokens=10)
    assert narrow(None, None, None, None) is None
    assert narrow(None, Decimal("0"), None, 3) == DelegatedBudget(cost=Decimal("0"), calls=3)


# ---------------------------------------------------------------------------------------------------------------------
# carriers
# ---------------------------------------------------------------------------------------------------------------------


def test_inject_and_extract_round_trip_case_insensitively() -> None:
    """inject puts the token under the header (replacing other-case copies); extract finds it in any case."""
    headers = {"AgentCost-Context": "old", "accept": "*/*"}
    token = good_token()
    inject(headers, token)
    assert headers == {"accept": "*/*", CONTEXT_HEADER: token}
    assert extract({"AGENTCOST-CONTEXT": token}) == token
    assert extract({"x": "y"}) is None
    assert extract({REPORT_HEADER: "abc"}, REPORT_HEADER) == "abc"
    assert extract({CONTEXT_HEADER: f" \t{token}\t "}) == token  # optional whitespace around a field value


@pytest.mark.parametrize(
    "headers",
    [
        {"agentcost-context": "a", "Agentcost-Context": "b"},
        {"agentcost-context": "a, b"},
        {"agentcost-context": "a b"},
        {"agentcost-context": "a\r\nx-injected: 1"},
        {"agentcost-context": ""},
        {"agentcost-context": "é"},
    ],
)
def test_extract_refuses_several_values_whitespace_and_controls(headers: dict[str, str]) -> None:
    """Repeated headers, comma-joined values, inner whitespace, control characters and empty values raise."""
    with pytest.raises(WireMalformed):
        extract(headers)


def test_inject_refuses_values_that_would_break_the_header() -> None:
    """A token with whitespace, a comma or a control character is never written into headers."""
    for token in ("a b", "a,b", "a\nb", ""):
        with pytest.raises(WireMalformed):
            inject({}, token)


# ---------------------------------------------------------------------------------------------------------------------
# traceparent and baggage: correlation only
# ---------------------------------------------------------------------------------------------------------------------


def test_traceparent_pads_the_root_and_round_trips() -> None:
    """traceparent is version 00 with the root zero-padded to 32 hex digits, and parses back to (root, parent)."""
    value = traceparent(ROOT, PARENT)
    assert value == f"00-0000000000000000{ROOT}-{PARENT}-01"
    assert traceparent(ROOT, PARENT, sampled=False).endswith("-00")
    assert parse_traceparent(value) == (ROOT, PARENT)
    with pytest.raises(WireMalformed):
        traceparent("xyz", PARENT)


@pytest.mark.parametrize(
    "value",
    [
        f"ff-0000000000000000{ROOT}-{PARENT}-01",
        f"00-0000000000000000{ROOT.upper()}-{PARENT}-01",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-0000000000000000{ROOT}-{'0' * 16}-01",
        f"00-0000000000000000{ROOT}-{PARENT}-01-extra",
        f"00-0000000000000000{ROOT}-{PARENT}-1",
        f"01-0000000000000000{ROOT}-{PARENT}-01x",
        f"00_0000000000000000{ROOT}-{PARENT}-01",
        f"00-4bf92f3577b34da6a3ce929d0e0e4736-{PARENT}-01",
        "",
        None,
        b"00-",
    ],
)
def test_parse_traceparent_follows_the_w3c_rules(value: object) -> None:
    """Version ff, uppercase, all-zero ids, wrong lengths or separators, and foreign trace ids give None."""
    assert parse_traceparent(value) is None


def test_parse_traceparent_accepts_later_versions_with_more_fields() -> None:
    """A higher version may append dash-separated fields after the flags; the first four are read."""
    assert parse_traceparent(f"01-0000000000000000{ROOT}-{PARENT}-03-future") == (ROOT, PARENT)
    assert parse_traceparent(f"cc-0000000000000000{ROOT}-{PARENT}-00") == (ROOT, PARENT)


def test_baggage_header_is_the_adapters_one() -> None:
    """agentcost.wire re-exports the adapters' W3C baggage builder (attribution for correlation only)."""
    assert baggage_header is agentcost.adapters.baggage_header
    assert baggage_header({"team": "search", "agentcost.node": PARENT}) == f"team=search,agentcost.node={PARENT}"


# ---------------------------------------------------------------------------------------------------------------------
# fuzzing: only WireError leaves a parser
# ---------------------------------------------------------------------------------------------------------------------

GOOD = encode_context(context(), keyring())
GOOD_REPORT = encode_report(report(), keyring())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def parse_all(token: object) -> None:
    """Run every token parser on ``token``: each returns a valid value or raises WireError."""
    check = Verifier(keyring(), audience="search-agent", now=Clock(), replay_window=10)
    for parse in (check.verify_context, check.verify_report):
        with contextlib.suppress(WireError):  # anything else, pydantic's ValidationError included, fails the test
            result = parse(token)
            assert isinstance(result, WireContext | WireReport)
    try:
        found = extract({CONTEXT_HEADER: token})  # type: ignore[dict-item]
    except WireError:
        pass
    else:
        assert found is None or isinstance(found, str)
    parsed = parse_traceparent(token)
    assert parsed is None or isinstance(parsed, tuple)


@settings(max_examples=300, deadline=None)
@given(token=st.text(max_size=300) | st.binary(max_size=300) | st.from_regex(r"v1\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"))
def test_fuzz_arbitrary_text_and_bytes(token: str | bytes) -> None:
    """Arbitrary text, bytes and token-shaped strings never make a parser raise anything but WireError."""
    parse_all(token)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), original=st.sampled_from([GOOD, GOOD_REPORT]))
def test_fuzz_mutated_tokens(data: st.DataObject, original: str) -> None:
    """Flipped, deleted, inserted characters and truncations of valid tokens are rejected with WireError only."""
    token = original
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        index = data.draw(st.integers(min_value=0, max_value=max(0, len(token) - 1)))
        operation = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        char = data.draw(st.characters(max_codepoint=0x3000))
        if operation == "flip":
            token = token[:index] + char + token[index + 1 :]
        elif operation == "delete":
            token = token[:index] + token[index + 1 :]
        elif operation == "insert":
            token = token[:index] + char + token[index:]
        else:
            token = token[:index]
    parse_all(token)
    if token != original:
        check = verifier()
        with pytest.raises(WireError):
            (check.verify_context if original is GOOD else check.verify_report)(token)


@settings(max_examples=300, deadline=None)
@given(payload=json_values, field=st.sampled_from(sorted(payload_of(context()))), value=json_values)
def test_fuzz_signed_payloads(payload: object, field: str, value: object) -> None:
    """Correctly signed arbitrary JSON, and valid payloads with one field replaced, parse or raise WireError."""
    for data in (payload, {**payload_of(context()), field: value}, {**payload_of(report()), field: value}):
        try:
            token = sign(json.dumps(data).encode("utf-8"))
        except ValueError:  # NaN in the strategy's floats is fine for json.dumps; lone surrogates are not
            continue
        parse_all(token)


@settings(max_examples=200, deadline=None)
@given(headers=st.dictionaries(st.text(max_size=20) | st.just("AgentCost-Context"), st.text(max_size=50)))
def test_fuzz_extract(headers: dict[str, str]) -> None:
    """extract on arbitrary header mappings returns None, a clean token, or raises WireMalformed."""
    try:
        found = extract(headers)
    except WireMalformed:
        return
    assert found is None or (found and " " not in found and "," not in found)
