"""CostCallbackHandler: LangChain's callback events, mapped by ``run_id`` / ``parent_run_id`` onto a cost tree.

The handler keeps no ambient state: every event names its run and its parent run, and the handler maps those ids to
nodes of the tree (DESIGN §1.1). That is why a call lands on the right node whatever thread or task LangGraph runs it
in, as long as LangChain's callbacks reach it at all.

Which LangChain runs become spans:

- the outermost chain the handler sees (the graph) and each LangGraph node execution (a run tagged
  ``graph:step:N``) open an ``agent`` span; every other chain (prompts, sequences, routers, the compiled subgraph
  that a node runs) is folded into the span of the node it runs in;
- a chat model or LLM run is an ``llm`` span, a tool run a ``tool`` span, a retriever run a ``retrieval`` span; a
  tool that itself calls models or runs a graph becomes a ``tool`` container with those calls under it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from decimal import Decimal
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langgraph.errors import GraphBubbleUp

from agentcost import Budget, BudgetExceeded, CostContext, Decision, InvalidUsage, Span, Usage

__all__ = ["BUDGETED_MODEL_TYPE", "DEFAULT_ATTRIBUTION", "CostCallbackHandler", "estimate_tokens"]

logger = logging.getLogger("agentcost.langgraph")

DEFAULT_ATTRIBUTION: Mapping[str, str] = {
    "team": "team",
    "feature": "feature",
    "user": "user",
    "user_id": "user",
    "session": "session",
    "session_id": "session",
    "conversation": "conversation",
    "conversation_id": "conversation",
    "thread_id": "conversation",
    "tenant": "tenant",
    "tenant_id": "tenant",
    "agent": "agent",
}
"""Metadata (and ``key:value`` tag) keys read as attribution, and the attribute each becomes. LangGraph copies a
thread's ``thread_id`` into the metadata: a thread is a conversation."""

BUDGETED_MODEL_TYPE = "agentcost-budgeted"
"""The ``_llm_type`` of :class:`~agentcost_langgraph.BudgetedChatModel`: its calls are admitted by the wrapper,
which can apply a degradation, rather than by the handler, which can only allow or refuse."""

COST_KEY = "agentcost_cost"
"""Tool metadata key: the tool's price per call, a decimal string."""
OPTIONAL_KEY = "agentcost_optional"
"""Tool metadata key: the tool may be skipped when the budget cannot pay for it."""

HANDOFF: ContextVar[tuple[CostCallbackHandler, UUID] | None] = ContextVar("agentcost_langgraph_handoff", default=None)
"""The deferred call that just started in this context, for the ``BudgetedChatModel`` about to make it.

LangChain passes the run manager to ``_generate`` but not to ``_stream`` / ``_astream``, so a streaming model cannot
learn its run id; the handler hands it over here, between ``on_chat_model_start`` and the model's own code, which
run in the same thread or task (``run_inline``). This is the adapter's only context variable; it never decides where
a cost is recorded, only which pending call a wrapper is making."""

_DEFAULT_GRAPH_NAME = "LangGraph"
_STEP_TAG = "graph:step:"

# LangChain's ``ls_provider`` names -> genai-prices provider ids, where they differ or are ambiguous
_PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure",
    "azure_openai": "azure",
    "anthropic": "anthropic",
    "google_genai": "google",
    "google_vertexai": "google",
    "google_anthropic_vertex": "anthropic",
    "bedrock": "aws",
    "amazon_bedrock": "aws",
    "bedrock_converse": "aws",
    "mistral": "mistral",
    "mistralai": "mistral",
    "xai": "x-ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "fireworks": "fireworks",
    "together": "together",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
}


class _Call:
    """A model, tool or retriever run between its start and end events."""

    __slots__ = ("container", "cost", "ctx", "decision", "deferred", "kind", "model", "provider", "started_at")

    def __init__(self, ctx: CostContext, kind: str, model: str | None, provider: str | None) -> None:
        self.ctx = ctx
        self.kind = kind
        self.model = model
        """The model asked for (llm), or the tool's name."""
        self.provider = provider
        self.started_at = time.time()
        self.decision: Decision | None = None
        self.deferred = False
        """A budget-aware model wrapper admits this call itself (it can degrade it)."""
        self.cost: str | None = None
        """A tool's declared price."""
        self.container: CostContext | None = None
        """A tool that made calls of its own: the node they were recorded under."""


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """A quick estimate of a prompt's input tokens for admission: about four characters per token, plus a little
    per message. The hold it sizes is settled at the usage the provider reports."""
    chars = 0
    for message in messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        else:
            for block in content:
                chars += len(block) if isinstance(block, str) else len(str(block.get("text", "")))
        if type(message) is AIMessage or isinstance(message, AIMessage):
            # (only AI messages have tool calls: asking another message for the attribute makes pydantic raise and
            # catch an AttributeError, the slowest thing in this loop)
            for call in message.tool_calls:
                chars += len(call["name"]) + len(str(call["args"]))
        chars += 16
    return chars // 4 + 1


def _usage(metadata: Mapping[str, Any]) -> Usage:
    """``AIMessage.usage_metadata`` -> ``Usage``. LangChain's ``input_tokens`` already include cache reads and
    writes, and its ``output_tokens`` the reasoning tokens, as ``Usage`` counts them."""
    inputs = metadata.get("input_token_details")
    outputs = metadata.get("output_token_details")
    if inputs is None and outputs is None:
        return Usage(metadata.get("input_tokens", 0), metadata.get("output_tokens", 0))
    return Usage(
        metadata.get("input_tokens", 0),
        metadata.get("output_tokens", 0),
        (inputs.get("cache_read") or 0) if inputs else 0,
        (inputs.get("cache_creation") or 0) if inputs else 0,
        (outputs.get("reasoning") or 0) if outputs else 0,
    )


def _legacy_usage(llm_output: Mapping[str, Any] | None) -> Usage | None:
    """``llm_output["token_usage"]`` in the OpenAI shape, which older integrations report instead."""
    token_usage = (llm_output or {}).get("token_usage")
    if not isinstance(token_usage, Mapping) or "prompt_tokens" not in token_usage:
        return None
    return Usage(
        input_tokens=token_usage.get("prompt_tokens") or 0, output_tokens=token_usage.get("completion_tokens") or 0
    )


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class CostCallbackHandler(BaseCallbackHandler):
    """Records a LangChain or LangGraph run on ``ctx``: pass it in ``config={"callbacks": [handler]}``.

    Args:
        ctx: the node the graph's spans go under (a run from :func:`agentcost.run`, or any child of it).
        attribution: metadata keys (and ``key:value`` tags) to read as attribution, and the attribute each becomes;
            default :data:`DEFAULT_ATTRIBUTION`.
        budgets: a :class:`~agentcost.Budget` per node (or graph) name: each execution of that node gets its own
            span with that budget, limiting everything under it.

    With a budget anywhere up the tree, each model call is admitted before it is made: a call that does not fit is
    refused with :class:`~agentcost.BudgetExceeded` raised out of ``invoke`` (LangChain aborts a call when a handler
    with ``raise_error`` raises in ``on_chat_model_start``). To degrade instead of refusing, wrap the model in
    :class:`~agentcost_langgraph.BudgetedChatModel`.

    Problems the handler works around without stopping the agent (a malformed usage report, an event for a run it
    never saw start) are logged and kept in :attr:`problems`; no recorded cost is dropped.
    """

    raise_error = True
    """A budget refusal in ``on_chat_model_start`` / ``on_tool_start`` must stop the call."""
    run_inline = True
    """Async runs call the handler in the event loop, in order: admission happens before the call."""

    def __init__(
        self,
        ctx: CostContext,
        *,
        attribution: Mapping[str, str] | None = None,
        budgets: Mapping[str, Budget] | None = None,
    ) -> None:
        if not isinstance(ctx, CostContext):
            raise TypeError(f"ctx must be a CostContext, got {type(ctx).__name__}")
        for name, budget in (budgets or {}).items():
            if not isinstance(budget, Budget):
                raise TypeError(f"budgets[{name!r}] must be a Budget, got {type(budget).__name__}")
        self.ctx = ctx
        self._attribution = dict(DEFAULT_ATTRIBUTION if attribution is None else attribution)
        self._budgets = dict(budgets or {})
        self._nodes: dict[UUID, CostContext] = {}
        """Chain runs (and tool containers) -> the node recorded under."""
        self._owned: dict[UUID, CostContext] = {}
        """Chain runs that opened a span: ended when the run ends."""
        self._names: dict[UUID, str] = {}
        """Chain runs' names: a node's parent chain is its graph, whose name becomes the ``agent`` attribute."""
        self._calls: dict[UUID, _Call] = {}
        self._lock = threading.Lock()
        self._price_providers: dict[tuple[str | None, str], str | None] = {}
        self.problems: list[str] = []
        """What the handler had to work around, oldest first, each once."""
        self._seen_problems: set[str] = set()

    # -- nodes -------------------------------------------------------------------------------------------------

    def node(self, parent_run_id: UUID | None) -> CostContext:
        """The node that a run whose parent is ``parent_run_id`` records under (the handler's ``ctx`` at the top)."""
        if parent_run_id is None:
            return self.ctx
        node = self._nodes.get(parent_run_id)
        if node is not None:
            return node
        call = self._calls.get(parent_run_id)
        if call is not None:
            return self._container(parent_run_id, call)
        self._problem(f"run {parent_run_id} is not known to this handler: its child is recorded at the top")
        return self.ctx

    def _container(self, run_id: UUID, call: _Call) -> CostContext:
        with self._lock:
            if call.container is None:
                kind = "agent" if call.kind == "llm" else call.kind
                call.container = call.ctx.child(call.model or kind, kind=kind)
                self._nodes[run_id] = call.container
            return call.container

    def _open(
        self, parent: CostContext, name: str, metadata: Mapping[str, Any] | None, tags: Sequence[str] | None, graph: str
    ) -> CostContext:
        attrs: dict[str, str] | None = None
        have = parent.span.attrs
        if graph and graph != _DEFAULT_GRAPH_NAME and have.get("agent") != graph:
            attrs = {"agent": graph}
        mapping = self._attribution
        if metadata:
            for key, value in metadata.items():
                attr = mapping.get(key)
                if attr is not None:
                    attrs = self._attribute(attrs, have, attr, value)
        if tags:
            for tag in tags:
                key, colon, value = tag.partition(":")
                attr = mapping.get(key) if colon else None
                if attr is not None:
                    attrs = self._attribute(attrs, have, attr, value)
        return parent.child(name, attrs=attrs, budget=self._budgets.get(name))

    def _attribute(
        self, attrs: dict[str, str] | None, have: Mapping[str, str], attr: str, value: object
    ) -> dict[str, str] | None:
        if type(value) is int:
            value = str(value)
        elif type(value) is not str or not value:
            return attrs
        current = have.get(attr)
        if current == value:
            return attrs
        if current is not None and attr != "agent":
            # attribution is inherited and may be added to, never silently replaced: the parent's value stays
            self._problem(f"attribute {attr}={value!r} ignored: inherited {attr}={current!r}")
            return attrs
        if attrs is None:
            attrs = {}
        attrs[attr] = value
        return attrs

    # -- chains: the graph and its nodes --------------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name") or "chain"
        parent = self._nodes.get(parent_run_id) if parent_run_id is not None else None
        if parent is None or parent_run_id is None:
            # the outermost chain (or one started inside a tool): a graph of its own, if it runs nodes, whose name
            # its nodes take as their ``agent`` (a plain chain's name is not an agent)
            node = self._open(self.node(parent_run_id), name, metadata, tags, "")
        else:
            for tag in tags or ():
                if tag.startswith(_STEP_TAG):
                    node = self._open(parent, name, metadata, tags, self._names.get(parent_run_id, ""))
                    break
            else:
                self._nodes[run_id] = parent
                self._names[run_id] = name
                return
        self._nodes[run_id] = node
        self._names[run_id] = name
        self._owned[run_id] = node

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._nodes.pop(run_id, None)
        self._names.pop(run_id, None)
        node = self._owned.pop(run_id, None)
        if node is not None:
            node.end()

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._nodes.pop(run_id, None)
        self._names.pop(run_id, None)
        node = self._owned.pop(run_id, None)
        if node is not None:
            if isinstance(error, GraphBubbleUp):
                node.end()  # an interrupt or a Command to the parent graph: control flow, not a failure
            else:
                node.end(status="cancelled" if _cancelled(error) else "error", error=_describe(error))

    # -- model calls ------------------------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # the common case inline: a known node, no budget, a model name in the metadata
        ctx = self._nodes.get(parent_run_id) if parent_run_id is not None else None
        if ctx is not None and metadata is not None and not ctx.budgeted:
            model = metadata.get("ls_model_name")
            if type(model) is str and model:
                self._calls[run_id] = _Call(ctx, "llm", model, metadata.get("ls_provider"))
                return
        self._start_model(run_id, parent_run_id, metadata, kwargs, messages[0] if messages else None, None)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_model(run_id, parent_run_id, metadata, kwargs, None, prompts[0] if prompts else "")

    def _start_model(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
        messages: Sequence[BaseMessage] | None,
        prompt: str | None,
    ) -> None:
        ctx = self.node(parent_run_id)
        params: Mapping[str, Any] = kwargs.get("invocation_params") or {}
        model = provider = None
        if metadata:
            model = metadata.get("ls_model_name")
            provider = metadata.get("ls_provider")
        if model is None:
            model = params.get("model") or params.get("model_name")
        call = _Call(ctx, "llm", model if type(model) is str and model else None, provider)
        if ctx.budgeted:
            if params.get("_type") == BUDGETED_MODEL_TYPE:
                call.deferred = True
                HANDOFF.set((self, run_id))
            else:
                tokens = estimate_tokens(messages) if messages is not None else len(prompt or "") // 4 + 1
                maximum = (metadata or {}).get("ls_max_tokens") or params.get("max_tokens")
                # raises BudgetExceeded when the call does not fit: LangChain then never calls the model
                call.decision = ctx.decide(
                    model=call.model or "unknown",
                    provider=self._price_provider(provider, call.model),
                    input_tokens=tokens,
                    max_output_tokens=maximum if type(maximum) is int and maximum > 0 else None,
                    degrade=False,
                )
        self._calls[run_id] = call

    def admit(
        self,
        run_id: UUID,
        messages: Sequence[BaseMessage],
        *,
        fallbacks: Sequence[str],
        max_output_tokens: int | None,
    ) -> Decision | None:
        """Admission for a call whose model can apply a degradation (``BudgetedChatModel``): the decision, or
        ``None`` where no budget applies. Raises ``BudgetExceeded`` when nothing fits."""
        call = self._calls.get(run_id)
        if call is None or not call.deferred:
            return None
        call.decision = call.ctx.decide(
            model=call.model or "unknown",
            provider=self._price_provider(call.provider, call.model),
            input_tokens=estimate_tokens(messages),
            max_output_tokens=max_output_tokens,
            fallbacks=fallbacks,
        )
        return call.decision

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is None:
            self._problem(f"model run {run_id} ended without a start: recorded at the top")
            call = _Call(self.ctx, "llm", None, None)
        self._record_model(call, response, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        if isinstance(error, BudgetExceeded) and call.deferred and call.decision is None:
            return  # refused by the wrapper's admission before any call: nothing was spent
        response = kwargs.get("response")
        self._record_model(call, response if isinstance(response, LLMResult) else None, error)

    def _record_model(self, call: _Call, response: LLMResult | None, error: BaseException | None) -> None:
        decision = call.decision
        if decision is not None and not decision.admitted:
            return  # skipped or finished early: the marker span is already in the tree
        usage, served, notes = self._reported(response) if response is not None else (None, None, ())
        status = "ok"
        described: str | None = None
        if error is not None:
            status = "cancelled" if _cancelled(error) else "error"
            described = _describe(error)
            if usage is None and not notes:
                code = getattr(error, "status_code", None)
                if type(code) is int and code >= 400:
                    # the provider answered with an HTTP error: it generated (and bills) nothing
                    usage = Usage()
                    notes = (f"failed before generating: HTTP {code}",)
        model = served or call.model
        if usage is None and not notes:
            notes = ("no usage reported",)
        if decision is not None:
            if usage is None:
                self._record_unpriced(call, model, status, described, notes + decision.reasons, decision)
            else:
                decision.record(
                    usage=usage,
                    model=model,
                    status=None if status == "ok" else status,
                    error=described,
                    started_at=call.started_at,
                    notes=notes,
                )
            return
        if usage is None or model is None:
            self._record_unpriced(call, model, status, described, notes, None, usage)
            return
        call.ctx.record_llm(
            model=model,
            provider=self._price_provider(call.provider, model),
            usage=usage,
            status=status,
            error=described,
            started_at=call.started_at,
            notes=notes,
        )

    def _reported(self, response: LLMResult) -> tuple[Usage | None, str | None, tuple[str, ...]]:
        """The usage and served model a response reports (the first generation that reports usage), and notes on
        what was wrong with them."""
        generations = response.generations
        # the common case, one generation of one prompt, without the loops
        found = generations[0] if len(generations) == 1 and len(generations[0]) == 1 else None
        candidates = found or [generation for prompt in generations for generation in prompt]
        served: str | None = None
        for generation in candidates:
            if not isinstance(generation, ChatGeneration):
                continue
            message = generation.message
            metadata = message.response_metadata
            name = metadata.get("model_name") or metadata.get("model")
            if type(name) is str and name:
                served = name
            reported = (
                getattr(message, "usage_metadata", None) if type(message) is not AIMessage else message.usage_metadata
            )
            if reported:
                try:
                    return _usage(reported), served, ()
                except (InvalidUsage, TypeError) as bad:
                    note = f"malformed usage_metadata {dict(reported)!r}: {bad}"
                    self._problem(note)
                    return None, served, (note,)
        try:
            return _legacy_usage(response.llm_output), served, ()
        except (InvalidUsage, TypeError) as bad:
            note = f"malformed token_usage: {bad}"
            self._problem(note)
            return None, served, (note,)

    def _record_unpriced(
        self,
        call: _Call,
        model: str | None,
        status: str,
        error: str | None,
        notes: tuple[str, ...],
        decision: Decision | None,
        usage: Usage | None = None,
    ) -> Span:
        """A call whose cost cannot be known (no usage, or no model name): unpriced, its tokens kept if reported;
        under a reservation it settles at what was held."""
        return call.ctx.record(
            "llm",
            model or "unknown model",
            model=None,
            usage=usage,
            provider=_PROVIDERS.get(call.provider, call.provider) if call.provider else None,
            status=status,
            error=error,
            started_at=call.started_at,
            reservation=decision.reservation if decision is not None else None,
            notes=notes,
        )

    def _price_provider(self, provider: str | None, model: str | None) -> str | None:
        """LangChain's provider name as the price book knows it; ``None`` (price by model name alone) when the
        book does not know the model under that provider (a test double, a local server, an unknown gateway)."""
        if provider is None or model is None:
            return _PROVIDERS.get(provider, provider) if provider is not None else None
        key = (provider, model)
        if key in self._price_providers:
            return self._price_providers[key]
        mapped = _PROVIDERS.get(provider, provider)
        resolved = mapped if self.ctx.pricing.knows(model, provider=mapped) else None
        self._price_providers[key] = resolved
        return resolved

    # -- tools and retrievers ---------------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        call = self._start_call("tool", parent_run_id, serialized, metadata, kwargs)
        name = call.model or "tool"
        optional = metadata is not None and metadata.get(OPTIONAL_KEY) is True
        ctx = call.ctx
        if ctx.budgeted:
            # raises BudgetExceeded for a tool that does not fit and cannot be skipped: LangChain then never runs
            # it. Only optional_tool's wrapper can skip (or finish) instead of running: the others allow or refuse.
            call.decision = ctx.decide_tool(name, cost=call.cost, optional=optional, degrade=optional)
        self._calls[run_id] = call

    def skipped(self, run_id: UUID) -> str | None:
        """Why the tool run ``run_id`` must not run (the budget skipped it, or finishes early), or ``None``."""
        call = self._calls.get(run_id)
        decision = call.decision if call is not None else None
        if decision is None or decision.admitted:
            return None
        return decision.reasons[0] if decision.reasons else "skipped: budget"

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_tool(run_id, None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_tool(run_id, error)

    def _end_tool(self, run_id: UUID, error: BaseException | None) -> None:
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        status = "ok" if error is None else ("cancelled" if _cancelled(error) else "error")
        described = None if error is None else _describe(error)
        decision = call.decision
        container = call.container
        if container is not None:
            self._nodes.pop(run_id, None)
        name = call.model or "tool"
        if decision is not None:
            if decision.admitted:
                if container is None:
                    decision.record(status=status, error=described, started_at=call.started_at)
                else:
                    # the tool's own fee, under the calls it made
                    container.record_tool(
                        name, cost=decision.estimate, reservation=decision.reservation, status=status, error=described
                    )
        elif container is None:
            call.ctx.record_tool(name, cost=call.cost, status=status, error=described, started_at=call.started_at)
        elif call.cost is not None or call.ctx.pricing.tool_price(name) is not None:
            container.record_tool(name, cost=call.cost, status=status, error=described, started_at=call.started_at)
        if container is not None:
            container.end(status=None if status == "ok" else status, error=described)

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._calls[run_id] = self._start_call("retrieval", parent_run_id, serialized, metadata, kwargs)

    def _start_call(
        self,
        kind: str,
        parent_run_id: UUID | None,
        serialized: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> _Call:
        """A tool or retriever run: its node, its name, and the price its metadata declares."""
        ctx = self.node(parent_run_id)
        call = _Call(ctx, kind, kwargs.get("name") or (serialized or {}).get("name") or kind, None)
        cost = metadata.get(COST_KEY) if metadata else None
        call.cost = cost if type(cost) is str else None
        return call

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_retriever(run_id, None)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_retriever(run_id, error)

    def _end_retriever(self, run_id: UUID, error: BaseException | None) -> None:
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        name = call.model or "retrieval"
        cost: Decimal | str | None = call.cost if call.cost is not None else call.ctx.pricing.tool_price(name)
        status = "ok" if error is None else "error"
        target = call.container or call.ctx
        target.record(
            "retrieval",
            name,
            cost=cost,
            cost_source="computed" if call.cost is None and cost is not None else None,
            status=status,
            error=None if error is None else _describe(error),
            started_at=call.started_at,
        )
        if call.container is not None:
            self._nodes.pop(run_id, None)
            call.container.end()

    # -- problems ---------------------------------------------------------------------------------------------

    def _problem(self, what: str) -> None:
        """Keep and log a problem once (inherited metadata repeats the same one on every node)."""
        if what in self._seen_problems or len(self.problems) >= 1000:
            return
        self._seen_problems.add(what)
        self.problems.append(what)
        logger.warning("agentcost: %s", what)

    def __repr__(self) -> str:
        return f"<CostCallbackHandler on {self.ctx!r}>"


def _cancelled(error: BaseException) -> bool:
    return isinstance(error, asyncio.CancelledError | KeyboardInterrupt)
