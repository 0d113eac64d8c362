"""agentcost for the openai SDK and OpenAI-compatible gateways.

:func:`wrap` returns a client of the same class, sharing the original's connection pool, whose chat completions,
responses and embeddings calls (streaming included) are admitted against the budget before any HTTP request and
recorded on the context, one span per HTTP attempt::

    import agentcost
    import agentcost_openai
    from openai import OpenAI

    with agentcost.run("answer") as ctx:
        client = agentcost_openai.wrap(OpenAI(), ctx)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    print(ctx.tree.render())
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

try:
    from openai import AsyncOpenAI, OpenAI
except ImportError as error:  # pragma: no cover - exercised only without the SDK
    raise ImportError(
        "agentcost_openai needs the openai SDK: pip install agentcost-openai (or: pip install 'openai>=3.50')"
    ) from error

from agentcost import CostContext
from agentcost.adapters import GatewayHeaders, rebind, wrap_client
from agentcost_openai._apis import APIS

__version__ = "0.1.0"

__all__ = ["GatewayHeaders", "__version__", "rebind", "wrap"]

ClientT = TypeVar("ClientT", bound=OpenAI | AsyncOpenAI)


def wrap(
    client: ClientT,
    ctx: CostContext,
    *,
    provider: str | None = "openai",
    fallbacks: Sequence[str] | None = None,
    gateway: GatewayHeaders | None = None,
) -> ClientT:
    """A copy of ``client`` (``OpenAI``, ``AsyncOpenAI`` or a subclass) that records every chat completion,
    response and embedding call on ``ctx``.

    ``provider`` names the price book's provider for the models (``None`` for a gateway that serves several
    vendors' models: they are priced by name). ``fallbacks`` replaces the budget policy's chain of cheaper models
    the adapter may switch a call to. ``gateway`` sends the context's attribution as LiteLLM-style headers and W3C
    ``baggage``. Wrapping a wrapped client binds it to ``ctx`` with the new settings; :func:`rebind` keeps them.
    """
    if not isinstance(client, OpenAI | AsyncOpenAI):
        raise TypeError(f"wrap() takes an openai.OpenAI or openai.AsyncOpenAI client, got {type(client).__name__}")
    return wrap_client(client, ctx, APIS, provider=provider, fallbacks=fallbacks, gateway=gateway)
