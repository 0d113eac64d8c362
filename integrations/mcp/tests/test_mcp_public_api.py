"""The adapter's public surface is locked, and it is a separate distribution from the core."""

from __future__ import annotations

import importlib.metadata

import agentcost_mcp


def test_public_names() -> None:
    """__all__ is locked, and the meta keys are namespaced outside MCP's reserved prefixes."""
    assert agentcost_mcp.__all__ == [
        "CONTEXT_META_KEY",
        "DEFAULT_MAX_REPORT_BYTES",
        "REPORT_META_KEY",
        "__version__",
        "call_tool",
        "context_token",
        "cost_aware",
        "graft",
        "with_report",
    ]
    for name in agentcost_mcp.__all__:
        assert getattr(agentcost_mcp, name) is not None
    assert agentcost_mcp.CONTEXT_META_KEY == "dev.agentcost/context"
    assert agentcost_mcp.REPORT_META_KEY == "dev.agentcost/report"


def test_distribution_and_its_dependencies() -> None:
    """The adapter is its own distribution, depending on the core and the mcp SDK only."""
    assert importlib.metadata.version("agentcost-mcp") == agentcost_mcp.__version__ == "0.1.0"
    requires = importlib.metadata.requires("agentcost-mcp") or []
    names = {requirement.split(">")[0].split("<")[0].split("=")[0].strip() for requirement in requires}
    assert names == {"agentcost-sdk", "mcp"}
