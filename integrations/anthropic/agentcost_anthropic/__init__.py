"""agentcost for the anthropic SDK.

:func:`wrap` returns a client of the same class, sharing the original's connection pool, whose ``messages.create``
and ``messages.stream`` calls are admitted against the budget before any HTTP request and recorded on the context,
one span per HTTP attempt, with prompt-cache tokens and server tool use (web search) priced::

    import agentcost
    import agentcost_anthropic
    from anthropic import Anthropic

    with agentcost.run("answer") as ctx:
        client = agentcost_anthropic.wrap(Anthropic(), ctx)
        client.messages.create(model="claude-sonnet-4-6", max_tokens=512, messages=[{"role": "user", "content": "Hi"}])
    print(ctx.tree.render())
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

try:
    from anthropic import Anthropic, AsyncAnthropic
except ImportError as error:  # pragma: no cover - exercised only without the SDK
    raise ImportError(
        "agentcost_anthropic needs the anthropic SDK: pip install agentcost-anthropic "
        "(or: pip install 'anthropic>=2.10')"
    ) from error

from agentcost import CostContext
from agentcost.adapters import GatewayHeaders, rebind, wrap_client
from agentcost_anthropic._apis import APIS

__version__ = "0.1.0"

__all__ = ["GatewayHeaders", "__version__", "rebind", "wrap"]

ClientT = TypeVar("ClientT", bound=Anthropic | AsyncAnthropic)


def wrap(
    client: ClientT,
    ctx: CostContext,
    *,
    provider: str | None = "anthropic",
    fallbacks: Sequence[str] | None = None,
    gateway: GatewayHeaders | None = None,
) -> ClientT:
    """A copy of ``client`` (``Anthropic``, ``AsyncAnthropic`` or a subclass) that records every message call on
    ``ctx``.

    ``provider`` names the price book's provider for the models (``None`` for a gateway that serves several
    vendors' models). ``fallbacks`` replaces the budget policy's chain of cheaper models the adapter may switch a
    call to. ``gateway`` sends the context's attribution as LiteLLM-style headers and W3C ``baggage``. Wrapping a
    wrapped client binds it to ``ctx`` with the new settings; :func:`rebind` keeps them.
    """
    if not isinstance(client, Anthropic | AsyncAnthropic):
        raise TypeError(
            f"wrap() takes an anthropic.Anthropic or anthropic.AsyncAnthropic client, got {type(client).__name__}"
        )
    return wrap_client(client, ctx, APIS, provider=provider, fallbacks=fallbacks, gateway=gateway)
