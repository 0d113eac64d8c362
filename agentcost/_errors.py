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

__all__ = [
    "AgentCostError",
    "InvalidAttribute",
    "InvalidAttributeType",
    "InvalidMoney",
    "InvalidMoneyType",
    "InvalidUsage",
    "PricingError",
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
