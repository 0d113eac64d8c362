"""The adapter's public surface is locked, and it is a separate distribution from the core."""

from __future__ import annotations

import importlib.metadata

import agentcost_langgraph
import agentcost_langgraph.testing


def test_public_names() -> None:
    assert agentcost_langgraph.__all__ == [
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
    assert agentcost_langgraph.testing.__all__ == ["ScriptedChatModel", "reply", "usage_metadata"]
    for name in agentcost_langgraph.__all__:
        assert getattr(agentcost_langgraph, name) is not None


def test_distribution_and_its_dependencies() -> None:
    assert importlib.metadata.version("agentcost-langgraph") == agentcost_langgraph.__version__
    requires = importlib.metadata.requires("agentcost-langgraph") or []
    names = {requirement.split(">")[0].split("<")[0].split("=")[0].strip() for requirement in requires}
    assert names == {"agentcost-sdk", "langgraph", "langchain-core"}
