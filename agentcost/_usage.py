"""Usage: what one call (or a sum of calls) consumed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from agentcost._errors import InvalidUsage
from agentcost._money import EXACT

__all__ = ["Unit", "Usage"]

Unit = int | Decimal
"""The value of a named extra unit: a whole count, or an exact decimal quantity such as GPU-seconds."""

_TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _bad_count(name: str, value: object) -> InvalidUsage:
    return InvalidUsage(f"{name} must be a non-negative int, got {value!r} ({type(value).__name__})")


def _unit_value(name: str, value: object) -> Unit:
    if type(value) is int:
        if value < 0:
            raise InvalidUsage(f"unit {name!r} must not be negative, got {value}")
        return value
    if isinstance(value, bool):
        raise InvalidUsage(f"unit {name!r} must be an int or Decimal, not bool")
    if isinstance(value, float):
        # Quantities, not money: accept a float the way genai-prices does, by its shortest repr, so 1.5 is 1.5.
        if not math.isfinite(value):
            raise InvalidUsage(f"unit {name!r} must be finite, got {value!r}")
        value = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            value = Decimal(value)
        except InvalidOperation:
            raise InvalidUsage(f"unit {name!r} must be a number, got {value!r}") from None
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0:
            raise InvalidUsage(f"unit {name!r} must be a finite non-negative number, got {value}")
        return value
    if isinstance(value, int):
        return _unit_value(name, int(value))
    raise InvalidUsage(f"unit {name!r} must be an int or Decimal, got {type(value).__name__}")


def _checked_counts(*values: object) -> tuple[int, int, int, int, int, int]:
    """The slow path of ``Usage.__init__``: accept int subclasses (not bool), or say exactly what is wrong."""
    counts: list[int] = []
    for name, value in zip((*_TOKEN_FIELDS, "requests"), values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_count(name, value)
        if value < 0:
            raise _bad_count(name, value)
        counts.append(int(value))
    inp, out, cache_read, cache_write, reasoning, requests = counts
    if cache_read + cache_write > inp:
        raise InvalidUsage(
            f"input_tokens ({inp}) must include cache_read_tokens ({cache_read}) and cache_write_tokens "
            f"({cache_write}): input_tokens counts every prompt token, cached or not"
        )
    if reasoning > out:
        raise InvalidUsage(
            f"output_tokens ({out}) must include reasoning_tokens ({reasoning}): output_tokens counts every "
            "generated token"
        )
    return inp, out, cache_read, cache_write, reasoning, requests


class Usage:
    """Resources consumed by one call, or by several calls added together with ``+``.

    Token fields follow the OpenAI / OpenTelemetry convention: ``input_tokens`` *includes* cache reads and cache
    writes, ``output_tokens`` *includes* reasoning tokens. Treat a ``Usage`` as immutable; ``+`` returns a new one.
    """

    __slots__ = (
        "cache_read_tokens",
        "cache_write_tokens",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "requests",
        "units",
    )

    input_tokens: int
    """Prompt tokens, including cache reads and cache writes."""
    output_tokens: int
    """Completion tokens, including reasoning tokens."""
    cache_read_tokens: int
    """Input tokens served from the provider's prompt cache (a part of ``input_tokens``)."""
    cache_write_tokens: int
    """Input tokens written to the provider's prompt cache (a part of ``input_tokens``)."""
    reasoning_tokens: int
    """Output tokens spent on hidden reasoning (a part of ``output_tokens``)."""
    requests: int
    """Number of requests made: 1 for one call."""
    units: Mapping[str, Unit] | None
    """Named extra units, e.g. ``{"web_searches": 2}`` or ``{"gpu_seconds": Decimal("3.5")}``; ``None`` if none."""

    def __init__(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        requests: int = 1,
        units: Mapping[str, Any] | None = None,
    ) -> None:
        # One combined check keeps the common, valid case to a handful of comparisons.
        if not (
            type(input_tokens) is int
            and type(output_tokens) is int
            and type(cache_read_tokens) is int
            and type(cache_write_tokens) is int
            and type(reasoning_tokens) is int
            and type(requests) is int
            and input_tokens >= cache_read_tokens + cache_write_tokens
            and output_tokens >= reasoning_tokens
            and cache_read_tokens >= 0
            and cache_write_tokens >= 0
            and reasoning_tokens >= 0
            and requests >= 0
        ):
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, requests = (
                _checked_counts(
                    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, requests
                )
            )
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cache_read_tokens = cache_read_tokens
        self.cache_write_tokens = cache_write_tokens
        self.reasoning_tokens = reasoning_tokens
        self.requests = requests
        if units:
            if not isinstance(units, Mapping):
                raise InvalidUsage(f"units must be a mapping of unit name to amount, got {type(units).__name__}")
            checked: dict[str, Unit] = {}
            for name, amount in units.items():
                if type(name) is not str or not name:
                    raise InvalidUsage(f"unit names must be non-empty strings, got {name!r}")
                checked[name] = _unit_value(name, amount)
            self.units = checked
        else:
            self.units = None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        units: dict[str, Unit] | None = None
        if self.units or other.units:
            units = dict(self.units or {})
            for name, amount in (other.units or {}).items():
                before = units.get(name, 0)
                units[name] = (
                    before + amount if type(before) is int and type(amount) is int else EXACT.add(before, amount)
                )
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.requests + other.requests,
            units,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Usage):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        units = tuple(sorted(self.units.items())) if self.units else ()
        return (
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.requests,
            units,
        )

    def __repr__(self) -> str:
        parts = [f"{name}={getattr(self, name)}" for name in _TOKEN_FIELDS if getattr(self, name)]
        if self.requests != 1:
            parts.append(f"requests={self.requests}")
        if self.units:
            parts.append(f"units={dict(self.units)!r}")
        return f"Usage({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: counts as ints, decimal units as strings; zero fields are left out."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _TOKEN_FIELDS if getattr(self, name)}
        if self.requests != 1:
            data["requests"] = self.requests
        if self.units:
            data["units"] = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in self.units.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """The inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping):
            raise InvalidUsage(f"usage must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {*_TOKEN_FIELDS, "requests", "units"}
        if unknown:
            raise InvalidUsage(f"unknown usage fields: {', '.join(sorted(unknown))}")
        units = data.get("units")
        if units is not None and not isinstance(units, Mapping):
            raise InvalidUsage(f"units must be a mapping of unit name to amount, got {type(units).__name__}")
        return cls(
            data.get("input_tokens", 0),
            data.get("output_tokens", 0),
            data.get("cache_read_tokens", 0),
            data.get("cache_write_tokens", 0),
            data.get("reasoning_tokens", 0),
            data.get("requests", 1),
            {k: (Decimal(v) if isinstance(v, str) else v) for k, v in units.items()} if units else None,
        )


EMPTY_USAGE = Usage(requests=0)
"""Shared usage of spans that consumed nothing themselves (agents, runs)."""
ONE_REQUEST = Usage()
"""Shared usage of a call that reported no usage of its own (most tool calls): one request."""
