"""The adapter's public surface is locked, and it is a separate distribution from the core."""

from __future__ import annotations

import importlib.metadata

import agentcost_anthropic

from agentcost.adapters import GatewayHeaders, rebind


def test_public_names() -> None:
    """__all__ is locked, and the adapter re-exports the shared engine's GatewayHeaders and rebind."""
    assert agentcost_anthropic.__all__ == ["GatewayHeaders", "__version__", "rebind", "wrap"]
    for name in agentcost_anthropic.__all__:
        assert getattr(agentcost_anthropic, name) is not None
    # the shared engine's own objects, re-exported: one GatewayHeaders and one rebind for every adapter
    assert agentcost_anthropic.GatewayHeaders is GatewayHeaders
    assert agentcost_anthropic.rebind is rebind


def test_distribution_and_its_dependencies() -> None:
    """The adapter is its own distribution, depending on the core and its SDK only."""
    assert importlib.metadata.version("agentcost-anthropic") == agentcost_anthropic.__version__ == "0.1.0"
    requires = importlib.metadata.requires("agentcost-anthropic") or []
    names = {requirement.split(">")[0].split("<")[0].split("=")[0].strip() for requirement in requires}
    assert names == {"agentcost-sdk", "anthropic"}
