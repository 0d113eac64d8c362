"""The wire format: signed cost contexts (caller to callee) and cost reports (callee to caller).

Pure data and crypto, no I/O: pydantic models of the two payloads, their canonical JSON, HMAC-SHA256 tokens with key
ids and rotation, a verifier (size, structure, key, signature, expiry, audience, replay), header carriers and W3C
``traceparent`` for correlation. ``docs/wire-format.md`` is the normative specification; this module implements it.

A caller issues a context for the remote call and sends its token::

    keyring = Keyring({"k1": key}, active="k1")
    left = node.remaining()  # node: the CostContext the remote call hangs under
    budget = narrow(DelegatedBudget(cost=Decimal("0.50")), left.cost, left.tokens, left.calls)
    ctx = WireContext.issue(keyring, root=node.tree.root.id, parent=node.span.id, aud="search-agent", budget=budget)
    inject(headers, encode_context(ctx, keyring))

and the callee accepts it, treating anything invalid as no context (``refuse=True`` re-raises instead)::

    verifier = Verifier(keyring, audience="search-agent")
    received = accept_context(extract(request.headers), verifier)

The errors, all raised by parsers as these classes only::

    AgentCostError
    └── WireError                  (also ValueError) base of every error of this module
        ├── WireTooLarge           the token is longer than the verifier's max_bytes
        ├── WireMalformed          not a token, not JSON, not the schema, an unknown version or field
        ├── WireUnknownKey         signed with a key id the keyring does not hold
        ├── WireBadSignature       the MAC does not match
        ├── WireExpired            expired, issued in the future, or valid for longer than max_age_ms
        ├── WireWrongAudience      a context for another callee (or a report for another node)
        └── WireReplayed           a context nonce already seen within the replay window
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from agentcost._errors import AgentCostError
from agentcost._money import to_money
from agentcost._span import format_span_id
from agentcost._tree import CostTree

__all__ = [
    "CONTEXT_HEADER",
    "REPORT_HEADER",
    "DelegatedBudget",
    "Keyring",
    "Verifier",
    "WireBadSignature",
    "WireContext",
    "WireError",
    "WireExpired",
    "WireMalformed",
    "WireReplayed",
    "WireReport",
    "WireTooLarge",
    "WireTotals",
    "WireUnknownKey",
    "WireWrongAudience",
    "accept_context",
    "baggage_header",
    "canonical_json",
    "encode_context",
    "encode_report",
    "extract",
    "inject",
    "narrow",
    "parse_traceparent",
    "tighter",
    "traceparent",
]

CONTEXT_HEADER: Final = "agentcost-context"
"""The HTTP header that carries a context token (caller to callee)."""
REPORT_HEADER: Final = "agentcost-report"
"""The HTTP header that carries a report token (callee to caller)."""

VERSION: Final = 1
TOKEN_PREFIX: Final = "v1."
MAC_PREFIX: Final = b"agentcost.v1."
"""Prepended to the payload's base64url text to form the MAC input (domain separation from other HMAC uses)."""
MIN_KEY_BYTES: Final = 16
MAX_INT: Final = 2**53 - 1
"""Every integer on the wire is at most this: exactly representable as an IEEE double, so any JSON parser reads it."""
MAX_ATTRS: Final = 64
MAX_ATTR_KEY: Final = 128
MAX_ATTR_VALUE: Final = 1024
MAX_AUDIENCE: Final = 256
MAX_SOURCE: Final = 64
MAX_MONEY_PLACES: Final = 64
MAX_TREE_DEPTH: Final = 16
DEFAULT_TTL_MS: Final = 60_000


# -- errors --------------------------------------------------------------------------------------------------------


class WireError(AgentCostError, ValueError):
    """Base class of the wire format's errors: a token, payload, key or header that cannot be used."""

    reason: ClassVar[str] = "error"
    """The key under which a :class:`Verifier` counts this rejection."""


class WireTooLarge(WireError):
    """The token is longer than the verifier's ``max_bytes`` (checked before anything is parsed)."""

    reason = "too_large"


class WireMalformed(WireError):
    """Not a token of a known version, not base64url or JSON, or not the payload's schema (unknown fields too)."""

    reason = "malformed"


class WireUnknownKey(WireError):
    """The payload names a key id the keyring does not hold (never issued, or removed after rotation)."""

    reason = "unknown_key"


class WireBadSignature(WireError):
    """The MAC does not match the payload: forged, tampered with, or signed with another key of the same id."""

    reason = "bad_signature"


class WireExpired(WireError):
    """Expired, issued in the future, or valid for longer than the verifier allows (clock skew included)."""

    reason = "expired"


class WireWrongAudience(WireError):
    """A context addressed to another callee, or a report for another node than the one expected."""

    reason = "wrong_audience"


class WireReplayed(WireError):
    """A context whose nonce the verifier has already accepted within its replay window."""

    reason = "replayed"


_REASONS: Final = tuple(
    cls.reason
    for cls in (
        WireTooLarge,
        WireMalformed,
        WireUnknownKey,
        WireBadSignature,
        WireExpired,
        WireWrongAudience,
        WireReplayed,
    )
)


# -- field validators ------------------------------------------------------------------------------------------------
# Every field is checked by a plain Python function, so that what is accepted is exactly what the spec says (no
# pydantic coercion: no bool for an int, no number for money, no bytes for a str) in Python and on the wire alike.

_WIRE: Final = {"wire": True}
"""Validation context of payloads parsed from a token: money must then be a decimal string."""

_MONEY_TEXT = re.compile(r"(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,64})?")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("wire", message)


def _is_wire(info: Any) -> bool:
    context = getattr(info, "context", None)
    return context is _WIRE


def _unicode(value: str) -> bool:
    """Whether ``value`` is a sequence of Unicode scalar values (no lone surrogates), so UTF-8 can encode it."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _money_text(amount: Decimal) -> str:
    """The wire spelling of a validated amount: ``format(amount, "f")``."""
    return format(amount, "f")


def _check_money(value: object, info: Any) -> Decimal:
    if _is_wire(info):
        if type(value) is not str:
            raise _invalid(f"money must be a decimal string, not a JSON {_json_type(value)}")
        if not _MONEY_TEXT.fullmatch(value):
            raise _invalid("money must be a plain decimal string such as '0.0025' (no sign, exponent or spaces)")
        amount = Decimal(value)
    else:
        try:
            amount = to_money(value)
        except AgentCostError as error:
            raise _invalid(str(error)) from None
        if amount.is_signed():  # -0: the only signed amount to_money lets through
            amount = amount.copy_abs()
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MAX_MONEY_PLACES:
            raise _invalid(f"money has more than {MAX_MONEY_PLACES} decimal places: {amount}")
    try:
        return to_money(amount)
    except AgentCostError as error:
        raise _invalid(str(error)) from None


def _check_optional_money(value: object, info: Any) -> Decimal | None:
    return None if value is None else _check_money(value, info)


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _check_count(value: object) -> int:
    if type(value) is not int:
        raise _invalid(f"expected an integer, got {_json_type(value)}")
    if not 0 <= value <= MAX_INT:
        raise _invalid(f"integers must be between 0 and 2**53 - 1, got {value}")
    return value


def _check_optional_count(value: object) -> int | None:
    return None if value is None else _check_count(value)


def _check_bool(value: object) -> bool:
    if type(value) is not bool:
        raise _invalid(f"expected a boolean, got {_json_type(value)}")
    return value


def _check_version(value: object) -> Literal[1]:
    if type(value) is not int or value != VERSION:
        raise _invalid(f"unsupported version {value!r}: this implementation reads version {VERSION}")
    return 1


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if type(value) is not str or not regex.fullmatch(value):
            raise _invalid(f"{what}, got {_short(value)}")
        return value

    return check


def _check_span_id(value: object) -> str:
    if type(value) is not str or not _SPAN_ID.fullmatch(value) or value == "0" * 16:
        raise _invalid(f"a span id is 16 lowercase hexadecimal digits, not all zero, got {_short(value)}")
    return value


def _text(low: int, high: int, what: str, *, controls: bool) -> Callable[[object], str]:
    def check(value: object) -> str:
        if type(value) is not str:
            raise _invalid(f"{what} must be a string, got {_json_type(value)}")
        if not low <= len(value) <= high:
            raise _invalid(f"{what} must be {low} to {high} characters long, got {len(value)}")
        if not _unicode(value):
            raise _invalid(f"{what} contains a lone surrogate (not a Unicode scalar value)")
        if not controls and _CONTROL.search(value):
            raise _invalid(f"{what} must not contain control characters")
        return value

    return check


def _optional(check: Callable[[object], str]) -> Callable[[object], str | None]:
    def optional(value: object) -> str | None:
        return None if value is None else check(value)

    return optional


_check_attr_key = _text(1, MAX_ATTR_KEY, "an attribute key", controls=False)
_check_attr_value = _text(0, MAX_ATTR_VALUE, "an attribute value", controls=True)


def _check_attrs(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _invalid(f"attrs must be an object of strings, got {_json_type(value)}")
    if len(value) > MAX_ATTRS:
        raise _invalid(f"attrs may have at most {MAX_ATTRS} keys, got {len(value)}")
    return {_check_attr_key(key): _check_attr_value(item) for key, item in value.items()}


def _check_json_value(value: object, depth: int) -> None:
    """``value`` is JSON data (objects with string keys, arrays, strings, finite numbers, booleans, null)."""
    if depth > MAX_TREE_DEPTH:
        raise _invalid(f"tree is nested deeper than {MAX_TREE_DEPTH} levels")
    if value is None or type(value) is bool:
        return
    if type(value) is str:
        if not _unicode(value):
            raise _invalid("tree contains a lone surrogate")
    elif type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or not _unicode(key):
                raise _invalid("tree object keys must be strings")
            _check_json_value(item, depth + 1)
    elif type(value) is list:
        for item in value:
            _check_json_value(item, depth + 1)
    elif type(value) is float:
        if not math.isfinite(value):
            raise _invalid("tree contains a non-finite number")
    elif type(value) is int:
        if abs(value) > MAX_INT:
            raise _invalid("tree contains an integer beyond 2**53 - 1")
    else:
        raise _invalid(f"tree contains a {type(value).__name__}, which is not JSON")


def _check_tree(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise _invalid(f"tree must be an object (CostTree.to_dict()), got {_json_type(value)}")
    _check_json_value(value, 1)
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_Money = Annotated[Decimal, PlainValidator(_check_money), PlainSerializer(_money_text, when_used="json")]
_OptionalMoney = Annotated[
    Decimal | None,
    PlainValidator(_check_optional_money),
    PlainSerializer(lambda amount: None if amount is None else _money_text(amount), when_used="json"),
]
_Count = Annotated[int, PlainValidator(_check_count)]
_OptionalCount = Annotated[int | None, PlainValidator(_check_optional_count)]
_Bool = Annotated[bool, PlainValidator(_check_bool)]
_Version = Annotated[Literal[1], PlainValidator(_check_version)]
_SpanIdText = Annotated[str, PlainValidator(_check_span_id)]
_NonceText = Annotated[str, PlainValidator(_pattern(_NONCE, "a nonce is 32 lowercase hexadecimal digits"))]
_KeyIdText = Annotated[str, PlainValidator(_pattern(_KID, "a key id is 1 to 64 characters of A-Z a-z 0-9 . _ -"))]
_Audience = Annotated[str, PlainValidator(_text(1, MAX_AUDIENCE, "aud", controls=False))]
_Source = Annotated[str | None, PlainValidator(_optional(_text(1, MAX_SOURCE, "source", controls=False)))]
_Attrs = Annotated[dict[str, str], PlainValidator(_check_attrs)]
_Tree = Annotated[dict[str, Any] | None, PlainValidator(_check_tree)]

_MODEL_CONFIG: Final = ConfigDict(frozen=True, extra="forbid")


# -- models -----------------------------------------------------------------------------------------------------------


class DelegatedBudget(BaseModel):
    """What the callee may spend, for its whole subtree: ``None`` on a metric means that metric is not limited."""

    model_config = _MODEL_CONFIG

    cost: _OptionalMoney = None
    """US dollars; a decimal string on the wire."""
    tokens: _OptionalCount = None
    """Input plus output tokens."""
    calls: _OptionalCount = None
    """Recorded calls (attempts)."""
    hard: _Bool = True
    """A hard budget refuses calls that do not fit; a soft one only warns."""


class WireContext(BaseModel):
    """The context a caller sends with a remote call: where the remote work hangs, who pays, what it may spend."""

    model_config = _MODEL_CONFIG

    v: _Version = 1
    """Format version; always 1."""
    root: _SpanIdText
    """The caller's run root: 16 lowercase hex digits."""
    parent: _SpanIdText
    """The caller's node the remote work hangs under (its reports name it as ``node``)."""
    attrs: _Attrs = {}
    """Attribution the callee inherits."""
    budget: DelegatedBudget | None = None
    """The budget delegated to the callee; ``None``: none."""
    iat: _Count
    """Issued at, Unix time in milliseconds."""
    exp: _Count
    """Expires at, Unix time in milliseconds (not before ``iat``)."""
    aud: _Audience
    """Audience: the name of the callee the context is for."""
    nonce: _NonceText
    """32 random lowercase hex digits (128 bits); a verifier accepts each nonce once."""
    kid: _KeyIdText
    """The id of the key that signs the token."""

    @model_validator(mode="after")
    def _exp_not_before_iat(self) -> WireContext:
        if self.exp < self.iat:
            raise _invalid(f"exp ({self.exp}) is before iat ({self.iat})")
        return self

    @classmethod
    def issue(
        cls,
        keyring: Keyring,
        *,
        root: str | int,
        parent: str | int,
        aud: str,
        attrs: Mapping[str, str] | None = None,
        budget: DelegatedBudget | None = None,
        ttl_ms: int = DEFAULT_TTL_MS,
        now: int | None = None,
    ) -> WireContext:
        """A new context naming ``keyring``'s active key: a fresh nonce, ``iat`` now (Unix ms, or ``now``) and
        ``exp`` ``ttl_ms`` later. Span ids may be given as ints (``span.id``) or 16-hex strings."""
        issued = _now_ms() if now is None else now
        return cls(
            root=_span_id_text(root),
            parent=_span_id_text(parent),
            attrs=dict(attrs) if attrs else {},
            budget=budget,
            iat=issued,
            exp=issued + ttl_ms,
            aud=aud,
            nonce=secrets.token_hex(16),
            kid=keyring.active,
        )


class WireTotals(BaseModel):
    """Totals of the callee's subtree: the priced cost, the unpriced and all spans, and the tokens."""

    model_config = _MODEL_CONFIG

    cost: _Money
    """Priced total of the subtree, US dollars (unpriced spans are counted in ``unpriced``, not as zero)."""
    unpriced: _Count
    """Spans of the subtree that could not be priced (at most ``spans``)."""
    spans: _Count
    """Spans in the subtree, its root included."""
    input_tokens: _Count
    """Input tokens of the subtree."""
    output_tokens: _Count
    """Output tokens of the subtree."""

    @model_validator(mode="after")
    def _unpriced_within_spans(self) -> WireTotals:
        if self.unpriced > self.spans:
            raise _invalid(f"unpriced ({self.unpriced}) exceeds spans ({self.spans})")
        return self

    @classmethod
    def from_tree(cls, tree: CostTree) -> WireTotals:
        """The totals of a whole cost tree."""
        usage = tree.total_usage()
        return cls(
            cost=tree.total_cost,
            unpriced=tree.unpriced,
            spans=len(tree),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )


class WireReport(BaseModel):
    """What a callee reports back about the work done for one context: running totals, then one final report."""

    model_config = _MODEL_CONFIG

    v: _Version = 1
    """Format version; always 1."""
    node: _SpanIdText
    """The context's ``parent``: the caller's node this report is for."""
    final: _Bool
    """The last report for this node: the caller grafts it exactly once."""
    seq: _Count
    """0, 1, 2, ...: the caller keeps the report with the highest ``seq``."""
    cost: _OptionalMoney = None
    """The callee's own (self) cost, US dollars; ``None``: unknown."""
    source: _Source = None
    """Where ``cost`` came from (``computed``, ``provider``, ``manual``, ...)."""
    totals: WireTotals
    """Totals of the callee's subtree."""
    tree: _Tree = None
    """The callee's tree as ``CostTree.to_dict()``; when present, ``totals`` must be its totals."""
    exhausted: _Bool = False
    """The delegated budget ran out (a call was refused, skipped or degraded for lack of budget)."""
    iat: _Count
    """Issued at, Unix time in milliseconds."""
    kid: _KeyIdText
    """The id of the key that signs the token."""

    @model_validator(mode="after")
    def _tree_matches_totals(self) -> WireReport:
        if self.tree is not None:
            try:
                parsed = CostTree.from_dict(self.tree)
            except (AgentCostError, TypeError, ValueError) as error:
                raise _invalid(f"tree is not a cost tree: {error}") from None
            if WireTotals.from_tree(parsed) != self.totals:
                raise _invalid("totals are not the totals of tree")
        return self

    @classmethod
    def issue(
        cls,
        keyring: Keyring,
        *,
        node: str | int,
        final: bool,
        seq: int,
        totals: WireTotals,
        cost: Decimal | None = None,
        source: str | None = None,
        tree: Mapping[str, Any] | None = None,
        exhausted: bool = False,
        now: int | None = None,
    ) -> WireReport:
        """A new report to be signed by ``keyring``'s active key, issued now (Unix ms, or ``now``)."""
        return cls(
            node=_span_id_text(node),
            final=final,
            seq=seq,
            cost=cost,
            source=source,
            totals=totals,
            tree=None if tree is None else dict(tree),
            exhausted=exhausted,
            iat=_now_ms() if now is None else now,
            kid=keyring.active,
        )


def _span_id_text(value: str | int) -> str:
    if type(value) is int and 0 < value < 2**64:
        return format_span_id(value)
    return value  # type: ignore[return-value]  # validated by the model


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- canonical JSON ---------------------------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        try:
            amount = to_money(value)
        except AgentCostError as error:
            raise WireMalformed(str(error)) from None
        return _money_text(amount.copy_abs() if amount.is_signed() else amount)
    raise WireMalformed(f"{type(value).__name__} is not JSON data")


def canonical_json(value: BaseModel | Mapping[str, Any]) -> bytes:
    """The canonical JSON of a payload: UTF-8, keys sorted by code point, no whitespace, money as
    ``format(amount, "f")``, every field written (``null`` included). See docs/wire-format.md."""
    data = value.model_dump(mode="python") if isinstance(value, BaseModel) else value
    try:
        text = json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        )
        return text.encode("utf-8")
    except WireError:
        raise
    except (TypeError, ValueError, RecursionError) as error:  # NaN, non-str keys, lone surrogates, cycles
        raise WireMalformed(f"not canonical JSON data: {error}") from None


# -- keys and tokens --------------------------------------------------------------------------------------------------


class Keyring:
    """HMAC keys by key id. Signing uses the ``active`` key; verification accepts any key the ring holds.

    Rotation: :meth:`add` the new key everywhere, then :meth:`activate` it on the signers, then :meth:`remove` the
    old key once every token signed with it has expired (``max_age_ms`` plus the clock skew). Changes are atomic
    and visible at once to every :class:`Verifier` sharing the ring.
    """

    __slots__ = ("_active", "_keys", "_lock")

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        checked = {_check_kid(kid): _check_key(kid, key) for kid, key in keys.items()}
        if active not in checked:
            raise WireError(f"the active key id {active!r} is not one of the keyring's keys")
        self._lock = threading.Lock()
        self._keys: Mapping[str, bytes] = MappingProxyType(checked)
        self._active: tuple[str, bytes] = (active, checked[active])

    @classmethod
    def generate(cls, kid: str = "k1") -> Keyring:
        """A keyring of one fresh random 32-byte key (for tests and examples)."""
        return cls({kid: secrets.token_bytes(32)}, active=kid)

    @property
    def active(self) -> str:
        """The id of the key that signs."""
        return self._active[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key that verifies, sorted."""
        return tuple(sorted(self._keys))

    def add(self, kid: str, key: bytes) -> None:
        """Add (or replace) a key; it verifies at once, and signs only once activated."""
        checked = _check_key(_check_kid(kid), key)
        with self._lock:
            if kid == self._active[0]:
                raise WireError(f"key {kid!r} is active: add the new key under a new id, then activate it")
            self._keys = MappingProxyType({**self._keys, kid: checked})

    def activate(self, kid: str) -> None:
        """Sign with key ``kid`` from now on (it must have been added)."""
        with self._lock:
            key = self._keys.get(kid)
            if key is None:
                raise WireError(f"no key {kid!r} in the keyring: add it first")
            self._active = (kid, key)

    def remove(self, kid: str) -> None:
        """Stop accepting tokens signed with ``kid`` (not the active key)."""
        with self._lock:
            if kid == self._active[0]:
                raise WireError(f"key {kid!r} is active: activate another key before removing it")
            self._keys = MappingProxyType({k: v for k, v in self._keys.items() if k != kid})

    def _signing_key(self) -> tuple[str, bytes]:
        return self._active

    def _key(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={list(self.key_ids)!r}, active={self.active!r})"


def _check_kid(kid: object) -> str:
    if type(kid) is not str or not _KID.fullmatch(kid):
        raise WireError(f"a key id is 1 to 64 characters of A-Z a-z 0-9 . _ -, got {_short(kid)}")
    return kid


def _check_key(kid: str, key: object) -> bytes:
    if not isinstance(key, bytes | bytearray):
        raise WireError(f"key {kid!r} must be bytes, got {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise WireError(f"key {kid!r} is {len(key)} bytes; keys must be at least {MIN_KEY_BYTES} bytes")
    return bytes(key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(key: bytes, payload_b64: bytes) -> str:
    return _b64(hmac.new(key, MAC_PREFIX + payload_b64, hashlib.sha256).digest())


def _encode(payload: WireContext | WireReport, keyring: Keyring) -> str:
    kid, key = keyring._signing_key()
    if payload.kid != kid:
        raise WireError(f"the payload names key {payload.kid!r} but the keyring signs with {kid!r}")
    body = _b64(canonical_json(payload))
    return f"{TOKEN_PREFIX}{body}.{_mac(key, body.encode('ascii'))}"


def encode_context(ctx: WireContext, keyring: Keyring) -> str:
    """The token of a context, signed with the keyring's active key (``ctx.kid`` must name it)."""
    return _encode(ctx, keyring)


def encode_report(report: WireReport, keyring: Keyring) -> str:
    """The token of a report, signed with the keyring's active key (``report.kid`` must name it)."""
    return _encode(report, keyring)


# -- verification -----------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"v1\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})")
_SIGNATURE_CHARS: Final = 43
_ModelT = TypeVar("_ModelT", WireContext, WireReport)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return data


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
"""Strict JSON: duplicate keys and NaN/Infinity refused (made once: a decoder per call costs more than the parse)."""


def _describe(error: ValidationError) -> str:
    parts = []
    for detail in error.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in detail["loc"]) or "payload"
        parts.append(f"{where}: {detail['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _split(token: object, max_bytes: int) -> tuple[str, str]:
    """The payload and signature parts of a well-formed token (size first, then shape)."""
    if isinstance(token, bytes | bytearray):
        if len(token) > max_bytes:
            raise WireTooLarge(f"token is {len(token)} bytes; the limit is {max_bytes}")
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise WireMalformed("a token is ASCII text") from None
    elif type(token) is str:
        if len(token) > max_bytes:  # characters never outnumber UTF-8 bytes
            raise WireTooLarge(f"token is {len(token)} characters; the limit is {max_bytes} bytes")
    elif token is None:
        raise WireMalformed("no token")
    else:
        raise WireMalformed(f"a token is a str or bytes, not {type(token).__name__}")
    assert isinstance(token, str)
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise WireMalformed(_shape_problem(token))
    return match.group(1), match.group(2)


def _shape_problem(token: str) -> str:
    if not token.isascii():
        return "a token is ASCII text"
    parts = token.split(".")
    if parts[0] != "v1":
        return f"unknown token version {_short(parts[0])}: this implementation reads v1"
    if len(parts) == 2 or (len(parts) == 3 and not parts[2]):
        return "unsigned token: the signature part is missing"
    if len(parts) != 3:
        return f"a token has 3 dot-separated parts, got {len(parts)}"
    if len(parts[2]) != _SIGNATURE_CHARS:
        return f"the signature part is {_SIGNATURE_CHARS} base64url characters, got {len(parts[2])}"
    return "a token's parts are base64url without padding"


def _decode_payload(body: str) -> dict[str, Any]:
    if len(body) % 4 == 1:
        raise WireMalformed("the payload part is not base64url (impossible length)")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise WireMalformed("the payload part is not base64url") from None
    if _b64(raw) != body:
        raise WireMalformed("the payload part is not canonical base64url (non-zero trailing bits)")
    try:
        text = raw.decode("utf-8")
        data = _DECODER.decode(text)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise WireMalformed(f"the payload is not UTF-8 JSON: {error}") from None
    if type(data) is not dict:
        raise WireMalformed(f"the payload is a JSON object, not {_json_type(data)}")
    version = data.get("v")
    if type(version) is not int or version != VERSION:
        raise WireMalformed(f"unsupported payload version {_short(version)}: this implementation reads {VERSION}")
    return data


def _parse(model: type[_ModelT], body: str) -> _ModelT:
    data = _decode_payload(body)
    try:
        return model.model_validate(data, context=_WIRE)
    except ValidationError as error:
        raise WireMalformed(f"not a valid {model.__name__}: {_describe(error)}") from None
    except (TypeError, ValueError, RecursionError) as error:  # defensive: nothing but WireError leaves a parser
        raise WireMalformed(f"not a valid {model.__name__}: {error}") from None


class _NonceWindow:
    """Nonces of accepted contexts, each kept until its context can no longer be accepted (exp + clock skew).

    Bounded: when full of live nonces, the one forgotten soonest is evicted and its forget time becomes a floor:
    contexts that would be forgotten at or before the floor are refused (their nonce might be one evicted), so a
    full window fails closed rather than letting a replay through.
    """

    __slots__ = ("_capacity", "_floor", "_forget_at", "_heap", "_lock")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._forget_at: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self._floor = -1
        self._lock = threading.Lock()

    def admit(self, nonce: str, forget_at: int, now: int) -> str | None:
        """Remember ``nonce`` until ``forget_at``; return why it is refused, or ``None``."""
        with self._lock:
            heap = self._heap
            while heap and heap[0][0] < now:
                del self._forget_at[heapq.heappop(heap)[1]]
            if nonce in self._forget_at:
                return "nonce already used"
            if forget_at <= self._floor:
                return "the replay window is full and cannot tell whether this nonce was used"
            if len(heap) >= self._capacity:
                evicted_at, evicted = heapq.heappop(heap)
                del self._forget_at[evicted]
                self._floor = max(self._floor, evicted_at)
            heapq.heappush(heap, (forget_at, nonce))
            self._forget_at[nonce] = forget_at
            return None

    def __len__(self) -> int:
        return len(self._heap)


class Verifier:
    """Checks tokens for one callee (``audience``), in the documented order, and counts what it rejects.

    ``now`` returns the current Unix time in milliseconds (default: the system clock). Thread-safe.
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        audience: str,
        max_bytes: int = 8192,
        max_age_ms: int = 300_000,
        clock_skew_ms: int = 30_000,
        replay_window: int = 100_000,
        now: Callable[[], int] | None = None,
    ) -> None:
        if not isinstance(keyring, Keyring):
            raise TypeError(f"keyring must be a Keyring, got {type(keyring).__name__}")
        if type(audience) is not str or not audience:
            raise WireError("audience must be a non-empty string")
        for name, value in (
            ("max_bytes", max_bytes),
            ("max_age_ms", max_age_ms),
            ("clock_skew_ms", clock_skew_ms),
            ("replay_window", replay_window),
        ):
            smallest = 0 if name == "clock_skew_ms" else 1
            if type(value) is not int or value < smallest:
                raise WireError(f"{name} must be an int of at least {smallest}, got {value!r}")
        self.keyring = keyring
        self.audience = audience
        self.max_bytes = max_bytes
        self.max_age_ms = max_age_ms
        self.clock_skew_ms = clock_skew_ms
        self._now = _now_ms if now is None else now
        self._nonces = _NonceWindow(replay_window)
        self._lock = threading.Lock()
        self._rejected = dict.fromkeys(_REASONS, 0)

    @property
    def rejected(self) -> Mapping[str, int]:
        """Rejections so far by reason: ``too_large``, ``malformed``, ``unknown_key``, ``bad_signature``,
        ``expired``, ``wrong_audience``, ``replayed`` (a snapshot)."""
        with self._lock:
            return MappingProxyType(dict(self._rejected))

    def _count(self, error: WireError) -> None:
        with self._lock:
            self._rejected[error.reason] = self._rejected.get(error.reason, 0) + 1

    def _authentic(self, model: type[_ModelT], token: object) -> _ModelT:
        body, signature = _split(token, self.max_bytes)
        payload = _parse(model, body)
        key = self.keyring._key(payload.kid)
        if key is None:
            raise WireUnknownKey(f"unknown key id {payload.kid!r}")
        if not hmac.compare_digest(_mac(key, body.encode("ascii")), signature):
            raise WireBadSignature("the signature does not match the payload")
        return payload

    def verify_context(self, token: object) -> WireContext:
        """The context of ``token``, or a :class:`WireError` saying why it cannot be trusted (and counted)."""
        try:
            ctx = self._authentic(WireContext, token)
            now = int(self._now())
            skew = self.clock_skew_ms
            if ctx.exp < now - skew:
                raise WireExpired(f"expired {now - ctx.exp} ms ago")
            if ctx.iat > now + skew:
                raise WireExpired(f"issued {ctx.iat - now} ms in the future")
            if ctx.exp - ctx.iat > self.max_age_ms:
                raise WireExpired(f"valid for {ctx.exp - ctx.iat} ms; this verifier allows {self.max_age_ms}")
            if ctx.aud != self.audience:
                raise WireWrongAudience(f"the context is for {_short(ctx.aud)}, not {self.audience!r}")
            refused = self._nonces.admit(ctx.nonce, ctx.exp + skew, now)
            if refused is not None:
                raise WireReplayed(refused)
        except WireError as error:
            self._count(error)
            raise
        return ctx

    def verify_report(self, token: object, *, node: str | None = None) -> WireReport:
        """The report of ``token`` (size, structure, key and signature checked; reports carry no nonce and no
        expiry). With ``node``, a report for any other node raises :class:`WireWrongAudience`."""
        try:
            report = self._authentic(WireReport, token)
            if node is not None and report.node != node:
                raise WireWrongAudience(f"the report is for node {report.node}, not {node}")
        except WireError as error:
            self._count(error)
            raise
        return report


def accept_context(token: object, verifier: Verifier, *, refuse: bool = False) -> WireContext | None:
    """The policy for inbound contexts: a valid one is returned; an invalid one is counted by the verifier and
    treated as no context (``None``), or re-raised with ``refuse=True``. No token at all is ``None`` either way."""
    if token is None:
        return None
    try:
        return verifier.verify_context(token)
    except WireError:
        if refuse:
            raise
        return None


# -- budgets ----------------------------------------------------------------------------------------------------------

_N = TypeVar("_N", Decimal, int)


def _smaller(a: _N | None, b: _N | None) -> _N | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b < a else a


def tighter(a: DelegatedBudget | None, b: DelegatedBudget | None) -> DelegatedBudget | None:
    """The budget no wider than either: the smaller limit on each metric (``None`` is unlimited), hard if either
    is hard."""
    if a is None:
        return b
    if b is None:
        return a
    return DelegatedBudget(
        cost=_smaller(a.cost, b.cost),
        tokens=_smaller(a.tokens, b.tokens),
        calls=_smaller(a.calls, b.calls),
        hard=a.hard or b.hard,
    )


def narrow(
    budget: DelegatedBudget | None,
    remaining_cost: Decimal | None,
    remaining_tokens: int | None,
    remaining_calls: int | None,
) -> DelegatedBudget | None:
    """The budget to send: what the caller wants to delegate, narrowed to what it has left (``None``: unlimited).

    The remaining amounts are the caller's hard limits (``CostContext.remaining()``), so when any is given the
    result is hard: a soft budget could let the callee spend past them. A context never widens a budget.
    """
    if remaining_cost is None and remaining_tokens is None and remaining_calls is None:
        return budget
    left = DelegatedBudget(cost=remaining_cost, tokens=remaining_tokens, calls=remaining_calls, hard=True)
    return tighter(budget, left)


# -- carriers ---------------------------------------------------------------------------------------------------------

_HEADER_VALUE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
"""Visible ASCII except the comma (which joins repeated headers): a token's characters and nothing that would
need quoting."""


def inject(headers: MutableMapping[str, str], token: str, header: str = CONTEXT_HEADER) -> None:
    """Put ``token`` in ``headers`` under ``header``, replacing any value under the same name in another case."""
    if type(token) is not str or not _HEADER_VALUE.fullmatch(token):
        raise WireMalformed("a token header value is visible ASCII without spaces or commas")
    wanted = header.lower()
    for name in [name for name in headers if name.lower() == wanted]:
        del headers[name]
    headers[header] = token


def extract(headers: Mapping[str, str], header: str = CONTEXT_HEADER) -> str | None:
    """The token under ``header`` (any case), ``None`` when absent; several values, or one with whitespace, commas
    or control characters, raise :class:`WireMalformed`. Surrounding spaces and tabs (HTTP's OWS) are ignored."""
    wanted = header.lower()
    found: list[object] = []
    try:
        for name, value in headers.items():
            if isinstance(name, str) and name.lower() == wanted:
                found.append(value)
    except (TypeError, ValueError, AttributeError) as error:
        raise WireMalformed(f"headers cannot be read: {error}") from None
    if not found:
        return None
    if len(found) > 1:
        raise WireMalformed(f"{len(found)} {header} headers; a request carries one")
    raw = found[0]
    if type(raw) is not str:
        raise WireMalformed(f"the {header} header is not a string")
    value = raw.strip(" \t")
    if not _HEADER_VALUE.fullmatch(value):
        raise WireMalformed(f"the {header} header holds whitespace, commas, control characters or nothing")
    return value


# -- W3C trace context: correlation only -----------------------------------------------------------------------------

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ROOT_PAD: Final = "0" * 16


_BAGGAGE_MAX_BYTES = 8192
_BAGGAGE_MAX_MEMBERS = 64


def baggage_header(entries: Mapping[str, str]) -> str:
    """A W3C ``baggage`` header value: ``key=value`` members, percent-encoded, within the spec's size limits
    (members that would exceed them are left out)."""
    members: list[str] = []
    size = 0
    for key, value in entries.items():
        member = f"{quote(key, safe='')}={quote(value, safe='')}"
        if len(members) >= _BAGGAGE_MAX_MEMBERS or size + len(member) + 1 > _BAGGAGE_MAX_BYTES:
            break
        members.append(member)
        size += len(member) + 1
    return ",".join(members)


def traceparent(root: str, parent: str, sampled: bool = True) -> str:
    """A W3C ``traceparent`` (version 00) correlating with agentcost ids: the trace id is the run root's 16 hex
    digits left-padded with zeros to 32, the parent id is the node's. It never carries a budget."""
    try:
        _check_span_id(root)
        _check_span_id(parent)
    except PydanticCustomError as error:
        raise WireMalformed(str(error)) from None
    return f"00-{_ROOT_PAD}{root}-{parent}-{'01' if sampled else '00'}"


def parse_traceparent(value: object) -> tuple[str, str] | None:
    """``(root, parent)`` from a ``traceparent`` made by :func:`traceparent`; ``None`` for anything malformed under
    the W3C rules (and for valid trace ids that are not zero-padded agentcost roots). Never raises."""
    if type(value) is not str:
        return None
    value = value.strip(" \t")
    if len(value) < 55:
        return None
    match = _TRACEPARENT.fullmatch(value, 0, 55)
    if match is None:
        return None
    version, trace_id, parent, _flags = match.groups()
    if version == "ff":
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":  # a later version may append fields after a dash
        return None
    if trace_id == "0" * 32 or parent == "0" * 16:
        return None
    if not trace_id.startswith(_ROOT_PAD):
        return None
    return trace_id[16:], parent
