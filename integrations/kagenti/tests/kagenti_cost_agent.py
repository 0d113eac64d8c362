"""A kagenti-adk agent for the loopback tests, run in kagenti-adk's own environment: ``python kagenti_cost_agent.py``.

It serves kagenti-adk's A2A app on 127.0.0.1 at the port in ``PORT``, signs with the hex
key in ``AGENTCOST_KAGENTI_TEST_KEY``, and calls the fake provider at ``AGENTCOST_KAGENTI_PROVIDER_URL`` through the
real openai client wrapped by agentcost. It answers by the first word of the message: ``research`` makes one chat
completion and one paid lookup; ``summarize`` asks for an expensive call, optional, and answers "skipped: budget"
when it does not fit; anything else says which tenant it works for and what budget it has left.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Annotated

from a2a.types import Message
from agentcost_kagenti import CostExtensionServer, CostExtensionSpec, Serving
from agentcost_openai import wrap
from kagenti_adk.a2a.types import RunYield, RunYieldResume
from kagenti_adk.server import Server
from openai import AsyncOpenAI

from agentcost import Budget, Usage
from agentcost.wire import Keyring, Verifier

KEYRING = Keyring({"k1": bytes.fromhex(os.environ["AGENTCOST_KAGENTI_TEST_KEY"])}, active="k1")
SERVING = Serving(
    keyring=KEYRING,
    verifier=Verifier(KEYRING, audience="kagenti-researcher"),
    name="kagenti-researcher",
    attrs={"agent": "kagenti-researcher"},
    budget=Budget(max_cost=Decimal("0.50")),  # this agent's own cap: a caller's budget is narrowed by it
)
PROVIDER = AsyncOpenAI(
    base_url=os.environ["AGENTCOST_KAGENTI_PROVIDER_URL"] + "/v1", api_key="test", max_retries=0, timeout=10
)

server = Server()


@server.agent(  # type: ignore[call-arg]  # kagenti types Server.agent as functools.wraps of a free function
    name="kagenti-researcher", description="Researches with an LLM, paying its way with agentcost."
)
async def researcher(
    message: Message, cost: Annotated[CostExtensionServer, CostExtensionSpec(), SERVING]
) -> AsyncGenerator[RunYield, RunYieldResume]:
    text = "".join(part.text for part in message.parts)
    ctx = cost.context
    llm = wrap(PROVIDER, ctx)
    if text.startswith("research"):
        reply = await llm.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}], max_tokens=200
        )
        ctx.record_tool("paper-index", cost="0.003")
        yield f"found: {reply.choices[0].message.content}"
    elif text.startswith("summarize"):
        with ctx.guard(
            model="gpt-4o", provider="openai", input_tokens=100_000, max_output_tokens=4000, optional=True
        ) as decision:
            if decision.admitted:  # the guard holds the budget: the call goes through the plain client
                summary = await PROVIDER.chat.completions.create(
                    model=decision.model,
                    messages=[{"role": "user", "content": text}],
                    max_tokens=decision.max_output_tokens or 4000,
                )
                assert summary.usage is not None
                decision.record(
                    usage=Usage(input_tokens=summary.usage.prompt_tokens, output_tokens=summary.usage.completion_tokens)
                )
                yield f"summary: {summary.choices[0].message.content}"
            else:
                yield "skipped: budget"
    else:
        yield f"tenant={ctx.attrs.get('tenant')} left={ctx.remaining().cost}"
    yield cost.report()


def main() -> None:
    server.run(
        host="127.0.0.1",
        port=int(os.environ["PORT"]),
        self_registration=False,
        configure_logger=False,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
