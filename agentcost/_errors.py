"""Exceptions raised by agentcost.

The hierarchy::

    AgentCostError                 base of every agentcost error
    ├── InvalidMoney               (also TypeError/ValueError) money that is a float, NaN, infinite or negative
    ├── InvalidUsage               (also ValueError) negative, non-integer or inconsistent token counts
    ├── InvalidAttribute           (also TypeError/ValueError) non-string keys or values, replaced inheritance
    ├── PricingError               (also ValueError) a price file or override that cannot be used
    └── TreeFormatError            (also ValueError) a serialized tree that does not parse

Errors about the *type* of a value derive from ``TypeError`` and errors about its *value* from ``ValueError``, so
``except ValueError`` keeps working for callers that do not know agentcost's own classes.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "AgentCostError",
    "BudgetError",
    "BudgetExceeded",
    "InvalidAttribute",
    "InvalidAttributeType",
    "InvalidMoney",
    "InvalidMoneyType",
    "InvalidUsage",
    "PricingError",
    "ReservationError",
    "StoreUnavailable",
    "TreeFormatError",
]


class AgentCostError(Exception):
    """Base class of every error agentcost raises on purpose."""


class InvalidMoney(AgentCostError, ValueError):
    """A money value that is not a finite, non-negative decimal amount."""


class InvalidMoneyType(InvalidMoney, TypeError):
    """A money value of the wrong type: a float, or anything that is not ``Decimal``, ``int`` or ``str``."""


class InvalidUsage(AgentCostError, ValueError):
    """Token or unit counts that are negative, not integers, or inconsistent with each other."""


class InvalidAttribute(AgentCostError, ValueError):
    """An attribution attribute that would replace an inherited value."""


class InvalidAttributeType(InvalidAttribute, TypeError):
    """An attribution key or value that is not a string."""


class PricingError(AgentCostError, ValueError):
    """A price override or price file that cannot be used."""


class TreeFormatError(AgentCostError, ValueError):
    """A serialized cost tree that is malformed."""


class BudgetError(AgentCostError, ValueError):
    """A budget, limit, window or degradation policy that cannot be used (negative limits, cycles, ...)."""


class BudgetExceeded(AgentCostError):
    """A call was refused before it was made: the requested amount does not fit a hard budget or limit.

    Attributes say which node or limit refused, on which metric, and the numbers.
    """

    def __init__(
        self,
        *,
        node: str,
        limit: str,
        metric: str,
        requested: Decimal | int,
        remaining: Decimal | int,
        reasons: tuple[str, ...] = (),
    ) -> None:
        self.node = node
        """The node (``agent 'researcher'``) or scoped limit (``limit team=search/day``) that refused."""
        self.limit = limit
        """The limit that refused, e.g. ``max_cost=0.50``."""
        self.metric = metric
        """``cost``, ``tokens`` or ``calls``."""
        self.requested = requested
        """What the call asked for on that metric."""
        self.remaining = remaining
        """What was left on that metric (never negative)."""
        self.reasons = reasons
        """What the degradation ladder tried before giving up, if it ran."""
        # The message is built only when shown: the degradation ladder creates and drops these on its hot path.
        super().__init__()

    def __str__(self) -> str:
        metric = self.metric

        def show(value: Decimal | int) -> str:
            return f"${Decimal(value).normalize():f}" if metric == "cost" else str(value)

        tried = f"; tried: {'; '.join(self.reasons)}" if self.reasons else ""
        return (
            f"budget exceeded at {self.node}: {metric} requested {show(self.requested)}, remaining "
            f"{show(self.remaining)} ({self.limit}){tried}"
        )

    def __repr__(self) -> str:
        return f"BudgetExceeded({self})"

    def __reduce__(self) -> tuple[object, ...]:
        fields = {
            "node": self.node,
            "limit": self.limit,
            "metric": self.metric,
            "requested": self.requested,
            "remaining": self.remaining,
            "reasons": self.reasons,
        }
        return (_rebuild_budget_exceeded, (fields,))


def _rebuild_budget_exceeded(fields: dict[str, object]) -> BudgetExceeded:
    return BudgetExceeded(**fields)  # type: ignore[arg-type]


class ReservationError(AgentCostError):
    """A reservation was resolved twice, or committed after it was released."""


class StoreUnavailable(AgentCostError):
    """The budget store cannot be reached and is configured to fail closed: the call is refused."""
