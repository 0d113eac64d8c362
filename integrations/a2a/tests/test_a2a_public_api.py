"""The adapter's public surface is locked, and it is a separate distribution from the core."""

from __future__ import annotations

import importlib.metadata

import agentcost_a2a


def test_public_names() -> None:
    """__all__ is locked, and the extension is declared optional under its URI."""
    assert agentcost_a2a.__all__ == [
        "DEFAULT_MAX_REPORT_BYTES",
        "EXTENSION_URI",
        "CostAwareExecutor",
        "__version__",
        "attach_report",
        "context_token",
        "cost_context",
        "extension",
        "graft",
        "report_token",
        "send_message",
    ]
    for name in agentcost_a2a.__all__:
        assert getattr(agentcost_a2a, name) is not None
    assert agentcost_a2a.EXTENSION_URI == "https://agentcost.dev/a2a/cost/v1"
    declared = agentcost_a2a.extension()
    assert (declared.uri, declared.required) == (agentcost_a2a.EXTENSION_URI, False)


def test_distribution_and_its_dependencies() -> None:
    """The adapter is its own distribution, depending on the core and the a2a SDK only."""
    assert importlib.metadata.version("agentcost-a2a") == agentcost_a2a.__version__ == "0.1.0"
    requires = importlib.metadata.requires("agentcost-a2a") or []
    names = {requirement.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() for requirement in requires}
    assert names == {"agentcost-sdk", "a2a-sdk"}
