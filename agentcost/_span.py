"""Span: one node of a cost tree."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal

from agentcost._errors import InvalidAttribute, InvalidAttributeType
from agentcost._money import ZERO
from agentcost._usage import Usage

__all__ = [
    "COST_SOURCES",
    "KINDS",
    "STATUSES",
    "CostSource",
    "Kind",
    "Span",
    "format_span_id",
    "merge_attrs",
    "new_span_id",
    "parse_span_id",
]

Kind = Literal["run", "agent", "llm", "tool", "retrieval", "embedding", "http", "custom"]
KINDS: Final = frozenset(("run", "agent", "llm", "tool", "retrieval", "embedding", "http", "custom"))
CostSource = Literal["provider", "computed", "estimated", "manual", "remote"]
COST_SOURCES: Final = frozenset(("provider", "computed", "estimated", "manual", "remote"))

STATUSES: Final = frozenset(("ok", "error", "degraded", "skipped", "cancelled"))

NO_CHILDREN: tuple[Span, ...] = ()
NO_ATTRS: dict[str, str] = {}
REPLACEABLE_ATTRS: Final = frozenset(("agent",))
"""Keys a child may replace: ``agent`` names the innermost agent. Every other key is fixed once an ancestor sets it,
so a sub-agent can never move spend to another team, user or tenant."""


class _Ids:
    """Span ids are 64-bit ints, like OpenTelemetry's: 31 random bits per process, then a 32-bit counter.

    Unique across threads (``next`` on ``itertools.count`` is atomic under the GIL), across forks (reset in the
    child) and, with overwhelming probability, across processes and hosts; and far cheaper than a random id or a
    formatted string per span. On the wire an id is 16 hexadecimal digits (:func:`format_span_id`).
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.base = (secrets.randbits(31) | 1 << 31) << 32  # never 0, never above 2**63
        self.next = itertools.count(1).__next__


_ids = _Ids()


def new_span_id() -> int:
    """A new span id."""
    return _ids.base + _ids.next()


def format_span_id(span_id: int) -> str:
    """A span id as 16 lowercase hexadecimal digits."""
    return f"{span_id:016x}"


def parse_span_id(text: object) -> int:
    """The inverse of :func:`format_span_id`; raises ``ValueError`` for anything else."""
    if type(text) is not str or len(text) != 16:
        raise ValueError(f"a span id is 16 hexadecimal digits, got {text!r}")
    try:
        value = int(text, 16)
    except ValueError:
        raise ValueError(f"a span id is 16 hexadecimal digits, got {text!r}") from None
    if value == 0:
        raise ValueError("a span id must not be 0")
    return value


def merge_attrs(inherited: dict[str, str], own: Mapping[str, str] | None) -> dict[str, str]:
    """The attribution of a child: ``inherited`` plus ``own``, which may add keys but not change inherited values.

    Returns ``inherited`` itself when ``own`` adds nothing, so a subtree with no attributes of its own shares one
    dict (attribution costs no memory per span).
    """
    if not own:
        return inherited
    if not isinstance(own, Mapping):
        raise InvalidAttributeType(f"attrs must be a mapping of str to str, got {type(own).__name__}")
    merged: dict[str, str] | None = None
    for key, value in own.items():
        if type(key) is not str:
            raise InvalidAttributeType(f"attribute keys must be str, got {key!r} ({type(key).__name__})")
        if type(value) is not str:
            raise InvalidAttributeType(
                f"attribute {key!r} must be a str, got {value!r} ({type(value).__name__}); convert it with str()"
            )
        current = inherited.get(key)
        if current == value:
            continue
        if current is not None and key not in REPLACEABLE_ATTRS:
            raise InvalidAttribute(
                f"attribute {key!r} is {current!r} on an ancestor and cannot be replaced by {value!r}: children may "
                "add attribution, not change it"
            )
        if merged is None:
            merged = dict(inherited)
        merged[key] = value
    return inherited if merged is None else merged


class Span:
    """One node of a cost tree: a run, an agent, or one call (LLM, tool, retrieval, ...).

    ``cost`` is what the span itself incurred (``None`` when it could not be priced); ``total_cost`` is ``cost``
    plus every descendant's, and ``total_unpriced`` counts the unpriced spans in the subtree, self included. Spans are
    created by a :class:`~agentcost.CostContext`; read them, do not mutate them.
    """

    __slots__ = (
        "_attrs",
        "children",
        "cost",
        "cost_source",
        "ended_at",
        "error",
        "id",
        "kind",
        "model",
        "name",
        "notes",
        "parent",
        "provider",
        "requested_model",
        "started_at",
        "status",
        "total_cost",
        "total_unpriced",
        "usage",
    )

    id: int
    """Unique 64-bit id of the span (16 hex digits in JSON and on the wire)."""
    parent: Span | None
    """The parent span; ``None`` for the root."""
    kind: str
    """One of ``run``, ``agent``, ``llm``, ``tool``, ``retrieval``, ``embedding``, ``http``, ``custom``."""
    name: str
    """Name: the agent's or tool's name, or the model for an LLM call."""
    usage: Usage
    """What the span itself consumed."""
    cost: Decimal | None
    """Self cost in US dollars; ``None`` when it could not be priced."""
    total_cost: Decimal
    """Self cost plus every descendant's (unpriced spans count as nothing here, and in ``total_unpriced``)."""
    total_unpriced: int
    """Number of unpriced spans in this subtree, self included."""
    cost_source: str | None
    """Where ``cost`` came from: ``provider``, ``computed``, ``estimated``, ``manual`` or ``remote``."""
    model: str | None
    """The model that served the call."""
    requested_model: str | None
    """The model the caller asked for, when a gateway or a degradation served another one."""
    provider: str | None
    """The provider or gateway that served the call."""
    status: str
    """``ok``, ``error``, ``degraded``, ``skipped`` or ``cancelled``."""
    error: str | None
    """What went wrong, for failed spans."""
    started_at: float
    """Start, in seconds since the epoch."""
    ended_at: float | None
    """End, in seconds since the epoch; ``None`` while the span is open."""
    children: Sequence[Span]
    """Child spans, in the order they were attached."""
    notes: tuple[str, ...]
    """Why the budget degraded, skipped or flagged this call (empty for most spans)."""

    def __init__(
        self,
        span_id: int,
        parent: Span | None,
        kind: str,
        name: str,
        attrs: dict[str, str],
        usage: Usage,
        cost: Decimal | None,
        cost_source: str | None,
        started_at: float,
        ended_at: float | None,
        model: str | None = None,
        requested_model: str | None = None,
        provider: str | None = None,
        status: str = "ok",
        error: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        # positional on purpose: this runs once per recorded call, and keyword passing costs measurable time here
        self.id = span_id
        self.parent = parent
        self.kind = kind
        self.name = name
        self._attrs = attrs
        self.usage = usage
        self.cost = cost
        if cost is None:
            self.total_cost = ZERO
            self.total_unpriced = 1
        else:
            self.total_cost = cost
            self.total_unpriced = 0
        self.cost_source = cost_source
        self.model = model
        self.requested_model = requested_model
        self.provider = provider
        self.status = status
        self.error = error
        self.started_at = started_at
        self.ended_at = ended_at
        self.children = NO_CHILDREN
        self.notes = notes

    @property
    def parent_id(self) -> int | None:
        """The parent's id; ``None`` for the root."""
        return None if self.parent is None else self.parent.id

    @property
    def attrs(self) -> Mapping[str, str]:
        """Attribution: the span's own attributes merged with everything it inherited."""
        return MappingProxyType(self._attrs)

    @property
    def duration(self) -> float | None:
        """Seconds between start and end; ``None`` while open."""
        return None if self.ended_at is None else self.ended_at - self.started_at

    @property
    def depth(self) -> int:
        """Number of ancestors."""
        depth = 0
        node = self.parent
        while node is not None:
            depth += 1
            node = node.parent
        return depth

    def walk(self) -> list[Span]:
        """This span and all its descendants, depth first, parents before children."""
        out: list[Span] = []
        stack: list[Span] = [self]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(node.children))
        return out

    def __repr__(self) -> str:
        cost = "unpriced" if self.cost is None else f"${self.cost}"
        return (
            f"<Span {self.kind} {self.name!r} id={self.id:016x} cost={cost} total=${self.total_cost}"
            f"{f' +{self.total_unpriced} unpriced' if self.total_unpriced else ''} status={self.status}>"
        )
