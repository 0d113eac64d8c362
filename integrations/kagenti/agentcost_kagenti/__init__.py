"""agentcost for agents written with kagenti-adk: the agentcost A2A extension as a kagenti-adk extension.

An agent declares a parameter ``cost: Annotated[CostExtensionServer, CostExtensionSpec(), serving]``. kagenti-adk
then lists the extension in the agent card and, for every task, hands the agent a private
:class:`CostExtensionServer` whose :attr:`~CostExtensionServer.context` is the task's cost run, opened from the
signed context a caller put in the request ``Message.metadata`` under :data:`EXTENSION_URI` (its attribution and
delegated budget). The agent's last yield, ``yield cost.report()``, puts the signed final report in the final
message's metadata under the same key, where ``agentcost_a2a.send_message`` (or any client of the extension) finds it
and grafts it into the caller's tree. It is the extension ``agentcost_a2a`` speaks, so callers use that package;
this one only depends on kagenti-adk, which pins its own pre-release of the a2a-sdk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

from a2a.server.agent_execution.context import RequestContext
from a2a.types import Message
from kagenti_adk.a2a.extensions.base import BaseExtensionServer, NoParamsBaseExtensionSpec
from kagenti_adk.a2a.types import Metadata
from kagenti_adk.server.context import RunContext

from agentcost import Budget, BudgetStore, CostContext
from agentcost.remote import Served, serve
from agentcost.wire import Keyring, Verifier, accept_context

__all__ = ["DEFAULT_MAX_REPORT_BYTES", "EXTENSION_URI", "CostExtensionServer", "CostExtensionSpec", "Serving"]

EXTENSION_URI: Final = "https://agentcost.dev/a2a/cost/v1"
"""The extension's URI, the same as ``agentcost_a2a.EXTENSION_URI`` (that package needs a newer a2a-sdk than the
one kagenti-adk pins, so the value is repeated here; the cross-process test checks that they meet)."""

DEFAULT_MAX_REPORT_BYTES: Final = 262_144
"""A report token with the tree longer than this is sent with the totals only (as in ``agentcost_a2a``)."""


@dataclass(frozen=True)
class Serving:
    """How an agent serves the extension: shared by every task of the agent (the verifier keeps the replay window)."""

    keyring: Keyring
    """Signs the reports."""
    verifier: Verifier
    """Checks inbound contexts; what it rejects is counted in ``verifier.rejected``."""
    name: str
    """The name of each task's cost run."""
    attrs: Mapping[str, str] = field(default_factory=dict)
    """Attribution this agent pins: it wins over the caller's unless ``allow_override``."""
    allow_override: bool = False
    budget: Budget | None = None
    """This agent's own cap: the delegated budget is narrowed by it, never widened."""
    store: BudgetStore | None = None
    refuse: bool = False
    """Refuse an invalid context (the task fails with the ``WireError``) instead of running without one."""
    tree: bool = True
    """Send the whole cost tree in the report (``False``: the totals only)."""
    max_report_bytes: int = DEFAULT_MAX_REPORT_BYTES


class CostExtensionSpec(NoParamsBaseExtensionSpec[None]):  # type: ignore[no-untyped-call]  # kagenti's hook
    """The agent card entry: optional by default, so clients that know nothing of agentcost keep working."""

    URI: str = EXTENSION_URI
    DESCRIPTION: str | None = (
        "agentcost: a signed cost context (attribution, delegated budget) in the request message's metadata, and a "
        "signed cost report in the final message's metadata, keyed by this URI."
    )


class CostExtensionServer(BaseExtensionServer[CostExtensionSpec, None]):
    """One task's cost run, opened from the first message of the task (a resumed task keeps its run)."""

    def __init__(self, spec: CostExtensionSpec, serving: Serving) -> None:
        super().__init__(spec, serving)  # kagenti-adk forks a private instance per task with these arguments
        self.serving = serving
        self._served: Served | None = None

    def parse_client_metadata(self, message: Message) -> None:
        """Nothing for kagenti-adk to validate: the token is read and verified by :meth:`handle_incoming_message`
        (kagenti-adk's own validation would fail the task on a token, or on a malformed value, instead of treating
        it as no context)."""
        return None

    def handle_incoming_message(
        self, message: Message, run_context: RunContext, request_context: RequestContext
    ) -> None:
        """Open the task's cost run from ``message``'s metadata (kagenti-adk calls this for every message)."""
        super().handle_incoming_message(message, run_context, request_context)
        if self._served is not None:
            return
        serving = self.serving
        # The value is passed on as sent: whatever is not a token is rejected by the verifier as malformed.
        token = message.metadata[EXTENSION_URI] if EXTENSION_URI in message.metadata.fields else None
        inbound = accept_context(token, serving.verifier, refuse=serving.refuse)
        self._served = serve(
            inbound,
            serving.name,
            attrs=serving.attrs,
            allow_override=serving.allow_override,
            budget=serving.budget,
            store=serving.store,
        )

    @property
    def served(self) -> Served:
        """The task's run and its caller's context (``Served.context`` is ``None`` for a caller that sent none)."""
        if self._served is None:
            raise LookupError("no cost run yet: kagenti-adk opens it when the task's first message arrives")
        return self._served

    @property
    def context(self) -> CostContext:
        """The task's cost run: record on it, or pass it to the provider adapters (``agentcost_openai.wrap``)."""
        return self.served.ctx

    def report(self) -> Metadata:
        """End the run and return the metadata to yield as the agent's last step: the signed final report under
        :data:`EXTENSION_URI`, or nothing when the caller sent no (valid) context."""
        served = self.served
        served.ctx.end()
        serving = self.serving
        token = served.report(serving.keyring, tree=serving.tree, max_bytes=serving.max_report_bytes)
        return Metadata({EXTENSION_URI: token} if token is not None else {})

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """End the run when the task ends, if the agent did not yield its report."""
        try:
            yield
        finally:
            if self._served is not None:
                self._served.ctx.end()
