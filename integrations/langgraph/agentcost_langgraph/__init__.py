"""agentcost for LangGraph and LangChain.

Pass a :class:`CostCallbackHandler` in a graph's callbacks and the run becomes a cost tree: the graph, its nodes and
subgraphs as agent spans, chat model calls, tools and retrievers as leaves, every call priced and checked against the
budgets before it is made::

    import agentcost
    from agentcost_langgraph import CostCallbackHandler

    with agentcost.run("answer", attrs={"team": "support"}) as ctx:
        graph.invoke(inputs, config={"callbacks": [CostCallbackHandler(ctx)]})
    print(ctx.tree.render())

For graceful degradation inside the graph: :class:`BudgetedChatModel` (cheaper model, capped output, early finish),
:func:`optional_tool` (skipped when the budget cannot pay), :func:`finish_when_low` (route to a wrap-up node).
"""

from agentcost_langgraph._handler import DEFAULT_ATTRIBUTION, CostCallbackHandler, estimate_tokens
from agentcost_langgraph._model import BudgetedChatModel
from agentcost_langgraph._routing import finish_when_low
from agentcost_langgraph._tools import node_context, optional_tool, priced_tool

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ATTRIBUTION",
    "BudgetedChatModel",
    "CostCallbackHandler",
    "__version__",
    "estimate_tokens",
    "finish_when_low",
    "node_context",
    "optional_tool",
    "priced_tool",
]
