"""agentcost: hierarchical cost contexts and budgets for AI agents.

Wrap a request in :func:`run`, record every LLM call, tool call and sub-agent on the :class:`CostContext` you are
handed (or let an adapter do it), and read the :class:`CostTree` afterwards::

    import agentcost
    from agentcost import Usage

    with agentcost.run("answer", attrs={"team": "search"}) as ctx:
        with ctx.child("researcher") as researcher:
            researcher.record_llm(model="gpt-4o", provider="openai",
                                  usage=Usage(input_tokens=1200, output_tokens=300))
    print(ctx.tree.render())
"""

from agentcost._budget import Budget, BudgetEvent, Decision, DegradePolicy, Remaining, Reservation
from agentcost._context import CostContext, run
from agentcost._errors import (
    AgentCostError,
    BudgetError,
    BudgetExceeded,
    InvalidAttribute,
    InvalidAttributeType,
    InvalidMoney,
    InvalidMoneyType,
    InvalidUsage,
    PricingError,
    ReservationError,
    StoreUnavailable,
    TreeFormatError,
)
from agentcost._money import format_usd, to_money
from agentcost._pricing import CustomPrice, PriceBook, Quote
from agentcost._retry import retry_call, stop_when_unaffordable
from agentcost._sink import SpanSink, add_sink, remove_sink
from agentcost._span import Span, format_span_id, parse_span_id
from agentcost._store import Amount, BudgetStore, Limit, LimitUsage, MemoryStore
from agentcost._store_redis import RedisStore
from agentcost._store_sqlite import SQLiteStore
from agentcost._tree import CostTotal, CostTree
from agentcost._usage import Usage

__version__ = "0.1.0"

__all__ = [
    "AgentCostError",
    "Amount",
    "Budget",
    "BudgetError",
    "BudgetEvent",
    "BudgetExceeded",
    "BudgetStore",
    "CostContext",
    "CostTotal",
    "CostTree",
    "CustomPrice",
    "Decision",
    "DegradePolicy",
    "InvalidAttribute",
    "InvalidAttributeType",
    "InvalidMoney",
    "InvalidMoneyType",
    "InvalidUsage",
    "Limit",
    "LimitUsage",
    "MemoryStore",
    "PriceBook",
    "PricingError",
    "Quote",
    "RedisStore",
    "Remaining",
    "Reservation",
    "ReservationError",
    "SQLiteStore",
    "Span",
    "SpanSink",
    "StoreUnavailable",
    "TreeFormatError",
    "Usage",
    "__version__",
    "add_sink",
    "format_span_id",
    "format_usd",
    "parse_span_id",
    "remove_sink",
    "retry_call",
    "run",
    "stop_when_unaffordable",
    "to_money",
]
