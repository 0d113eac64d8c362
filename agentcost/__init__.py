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

from agentcost._context import CostContext, run
from agentcost._errors import (
    AgentCostError,
    InvalidAttribute,
    InvalidAttributeType,
    InvalidMoney,
    InvalidMoneyType,
    InvalidUsage,
    PricingError,
    TreeFormatError,
)
from agentcost._pricing import CustomPrice, PriceBook, Quote
from agentcost._span import Span, format_span_id, parse_span_id
from agentcost._tree import CostTotal, CostTree
from agentcost._usage import Usage

__version__ = "0.1.0"

__all__ = [
    "AgentCostError",
    "CostContext",
    "CostTotal",
    "CostTree",
    "CustomPrice",
    "InvalidAttribute",
    "InvalidAttributeType",
    "InvalidMoney",
    "InvalidMoneyType",
    "InvalidUsage",
    "PriceBook",
    "PricingError",
    "Quote",
    "Span",
    "TreeFormatError",
    "Usage",
    "__version__",
    "format_span_id",
    "parse_span_id",
    "run",
]
