"""BudgetedChatModel: a chat model that applies the budget's decision to its own call.

A callback can refuse a call but cannot change it. This wrapper is the model in the graph; when its call starts, the
:class:`CostCallbackHandler` in the run's callbacks defers admission to it, and the wrapper asks for a decision that
may swap the model for one of its fallbacks, cap the output tokens, or finish early, then calls the chosen model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.callbacks.manager import BaseRunManager
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.tools import BaseTool
from pydantic import Field

from agentcost import Decision
from agentcost_langgraph._handler import BUDGETED_MODEL_TYPE, HANDOFF, CostCallbackHandler

__all__ = ["BudgetedChatModel"]

_FINISH = "I have to stop here: the budget for this task is used up. I will answer with what I have so far ({reason})."


def _unbind(runnable: Runnable[Any, Any]) -> tuple[BaseChatModel, dict[str, Any]]:
    """The chat model under ``bind_tools``/``bind`` layers, with the call arguments those layers add."""
    kwargs: dict[str, Any] = {}
    while isinstance(runnable, RunnableBinding):
        kwargs = {**runnable.kwargs, **kwargs}
        runnable = runnable.bound
    if not isinstance(runnable, BaseChatModel):
        raise TypeError(f"BudgetedChatModel wraps chat models, got {type(runnable).__name__}")
    return runnable, kwargs


def _as_chunk(result: ChatResult) -> ChatGenerationChunk:
    """A whole answer as one stream chunk, for a model (a fallback, say) that cannot stream."""
    message = result.generations[0].message
    tool_calls = getattr(message, "tool_calls", None) or []
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content=message.content,
            additional_kwargs=message.additional_kwargs,
            response_metadata=message.response_metadata,
            usage_metadata=getattr(message, "usage_metadata", None),
            id=message.id,
            tool_call_chunks=[
                {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": index}
                for index, call in enumerate(tool_calls)
            ],
        )
    )


def _streams(chat: BaseChatModel) -> bool:
    return type(chat)._stream is not BaseChatModel._stream


def _admission_target(run_manager: BaseRunManager | None) -> tuple[CostCallbackHandler, UUID] | None:
    """The handler and run id of the call being made: from the run manager where LangChain passes one, else from
    the handler's hand-off (the streaming paths)."""
    pending = HANDOFF.get()
    if pending is not None:
        HANDOFF.set(None)
    if run_manager is not None:
        for handler in run_manager.handlers:
            if isinstance(handler, CostCallbackHandler) and run_manager.run_id in handler._calls:
                return handler, run_manager.run_id
        return None
    if pending is not None and pending[1] in pending[0]._calls:
        return pending
    return None


class BudgetedChatModel(BaseChatModel):
    """Wrap a chat model so that, under a budget, its calls degrade instead of failing.

    Before each call the budget's :class:`~agentcost.Decision` is applied to the request: the model is swapped for
    the first of ``fallbacks`` (tried in order) that fits, ``max_tokens`` is capped to what the remaining money pays
    for, or, with ``DegradePolicy(finish_early=True)``, the call is not made and the model answers with
    ``finish_message`` and no tool calls, so an agent loop wraps up. Each degradation is recorded on the call's span
    with its reason. Without a :class:`CostCallbackHandler` in the run's callbacks, or without a budget, the wrapped
    model is called as is.

    ``fallbacks`` maps model names (as the price book knows them) to model instances. ``max_tokens_param`` is the
    keyword the models take for their output cap (``max_tokens`` for LangChain's OpenAI and Anthropic models).
    The wrapped models are called through their ``_generate`` / ``_stream`` methods, so their own callbacks, cache
    and rate limiter are not involved: the wrapper's run is the one call.
    """

    model: Runnable[Any, Any]
    """The model to call (a chat model, or one with tools bound)."""
    fallbacks: dict[str, Runnable[Any, Any]] = Field(default_factory=dict)
    """Cheaper models by name, in the order to try them."""
    max_tokens_param: str = "max_tokens"
    finish_message: str = _FINISH
    """What the model answers when the budget finishes the task early; ``{reason}`` is replaced."""

    @property
    def _llm_type(self) -> str:
        return BUDGETED_MODEL_TYPE

    @property
    def model_name(self) -> str | None:
        """The wrapped model's name, as the price book and the tree show it."""
        name = _unbind(self.model)[0]._get_ls_params().get("ls_model_name")
        return name if isinstance(name, str) else None

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        chat, bound = _unbind(self.model)
        return chat._get_ls_params(stop=stop, **{**bound, **kwargs})

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        # cheap, and without dumping the wrapped models: the handler reads ``_type`` on every call
        return {"_type": BUDGETED_MODEL_TYPE, "model": self.model_name, "stop": stop, **kwargs}

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return {"model": self.model_name, "fallbacks": list(self.fallbacks)}

    def _should_stream(
        self,
        *,
        async_api: bool,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> bool:
        # stream when the wrapped model would
        return _unbind(self.model)[0]._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind the tools to the model and to every fallback (each formats them its own way)."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice

        def bind(runnable: Runnable[Any, Any]) -> Runnable[Any, Any]:
            chat, bound = _unbind(runnable)
            with_tools = chat.bind_tools(tools, **kwargs)
            return with_tools.bind(**bound) if bound else with_tools

        return self.model_copy(
            update={"model": bind(self.model), "fallbacks": {name: bind(m) for name, m in self.fallbacks.items()}}
        )

    # -- admission ----------------------------------------------------------------------------------------------

    def _decide(
        self, messages: list[BaseMessage], run_manager: BaseRunManager | None, kwargs: dict[str, Any]
    ) -> tuple[Runnable[Any, Any] | None, dict[str, Any], Decision | None]:
        """The model to call and its arguments (``None``: finish without calling), per the budget's decision."""
        target = _admission_target(run_manager)
        if target is None:
            return self.model, kwargs, None
        handler, run_id = target
        maximum = kwargs.get(self.max_tokens_param)
        if not isinstance(maximum, int):
            maximum = self._get_ls_params(**kwargs).get("ls_max_tokens")
        decision = handler.admit(
            run_id,
            messages,
            fallbacks=tuple(self.fallbacks),
            max_output_tokens=maximum if isinstance(maximum, int) and maximum > 0 else None,
        )
        if decision is None:
            return self.model, kwargs, None
        if not decision.admitted:
            return None, kwargs, decision
        chosen = self.model if decision.model == decision.requested_model else self.fallbacks[decision.model]
        if decision.max_output_tokens is not None:
            kwargs = {**kwargs, self.max_tokens_param: decision.max_output_tokens}
        return chosen, kwargs, decision

    def _finish(self, decision: Decision | None) -> str:
        reason = "; ".join(decision.reasons) if decision is not None else "budget"
        return self.finish_message.replace("{reason}", reason)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        target, kwargs, decision = self._decide(messages, run_manager, kwargs)
        if target is None:
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self._finish(decision)))])
        chat, bound = _unbind(target)
        return chat._generate(messages, stop=stop, run_manager=run_manager, **{**bound, **kwargs})

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        target, kwargs, decision = self._decide(messages, run_manager, kwargs)
        if target is None:
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self._finish(decision)))])
        chat, bound = _unbind(target)
        return await chat._agenerate(messages, stop=stop, run_manager=run_manager, **{**bound, **kwargs})

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        target, kwargs, decision = self._decide(messages, run_manager, kwargs)
        if target is None:
            yield ChatGenerationChunk(message=AIMessageChunk(content=self._finish(decision)))
            return
        chat, bound = _unbind(target)
        if not _streams(chat):
            yield _as_chunk(chat._generate(messages, stop=stop, run_manager=run_manager, **{**bound, **kwargs}))
            return
        yield from chat._stream(messages, stop=stop, run_manager=run_manager, **{**bound, **kwargs})

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        target, kwargs, decision = self._decide(messages, run_manager, kwargs)
        if target is None:
            yield ChatGenerationChunk(message=AIMessageChunk(content=self._finish(decision)))
            return
        chat, bound = _unbind(target)
        if not _streams(chat) and type(chat)._astream is BaseChatModel._astream:
            result = await chat._agenerate(messages, stop=stop, run_manager=run_manager, **{**bound, **kwargs})
            yield _as_chunk(result)
            return
        async for chunk in chat._astream(messages, stop=stop, run_manager=run_manager, **{**bound, **kwargs}):
            yield chunk
