"""Test doubles for graphs: a scripted chat model that reports usage like a real provider integration does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field, PrivateAttr

from agentcost import Usage

__all__ = ["ScriptedChatModel", "reply", "usage_metadata"]


def usage_metadata(usage: Usage) -> UsageMetadata:
    """``usage`` in LangChain's ``AIMessage.usage_metadata`` shape (input tokens include cache reads and writes,
    output tokens include reasoning, as LangChain counts them)."""
    metadata = UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
    )
    if usage.cache_read_tokens or usage.cache_write_tokens:
        metadata["input_token_details"] = {
            "cache_read": usage.cache_read_tokens,
            "cache_creation": usage.cache_write_tokens,
        }
    if usage.reasoning_tokens:
        metadata["output_token_details"] = {"reasoning": usage.reasoning_tokens}
    return metadata


def reply(
    content: str = "",
    *,
    usage: Usage,
    tool_calls: Sequence[tuple[str, dict[str, Any]]] = (),
) -> AIMessage:
    """An ``AIMessage`` answer for a script: content, tool calls as ``(name, args)`` pairs, and its usage."""
    return AIMessage(
        content=content,
        tool_calls=[
            {"name": name, "args": args, "id": f"call_{index}_{name}", "type": "tool_call"}
            for index, (name, args) in enumerate(tool_calls)
        ],
        usage_metadata=usage_metadata(usage),
    )


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from ``script`` in order (the last answer repeats), reporting each answer's
    ``usage_metadata`` and ``model`` as a provider integration does, and counting its calls.

    An answer's output tokens are cut to ``max_tokens`` when the call passes one (as a real model stops there; the
    reasoning tokens shrink in proportion). An entry that is an exception is raised instead of answering. With
    ``stream_chunks`` > 1 the streaming API splits each answer's content over that many chunks, the usage on the
    last one (as OpenAI's ``include_usage`` does).
    """

    script: list[Any]
    """``AIMessage`` answers, or exceptions to raise, in call order."""
    model: str = "gpt-4o"
    provider: str = "openai"
    served_model: str | None = None
    """The model name the "provider" reports having served (default: ``model``)."""
    report_model: bool = True
    """Whether the answer names the model in its response metadata."""
    stream_chunks: int = 1
    requests: list[dict[str, Any]] = Field(default_factory=list)
    """The keyword arguments of each call (``max_tokens``, bound tools, ...)."""
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def calls(self) -> int:
        """How many times the model was called."""
        return len(self.requests)

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider=self.provider, ls_model_name=self.model, ls_model_type="chat")
        if isinstance(kwargs.get("max_tokens"), int):
            params["ls_max_tokens"] = kwargs["max_tokens"]
        return params

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=[getattr(tool, "name", tool) for tool in tools], **kwargs)

    def _answer(self, kwargs: dict[str, Any]) -> AIMessage:
        with self._lock:
            index = min(len(self.requests), len(self.script) - 1)
            self.requests.append(dict(kwargs))
        entry = self.script[index]
        if isinstance(entry, BaseException):
            raise entry
        if not isinstance(entry, AIMessage):
            raise TypeError(f"script entries are AIMessages or exceptions, got {type(entry).__name__}")
        message = entry.model_copy(deep=True)
        cap = kwargs.get("max_tokens")
        usage = message.usage_metadata
        if usage is not None and isinstance(cap, int) and usage["output_tokens"] > cap:
            details = usage.get("output_token_details") or {}
            reasoning = details.get("reasoning", 0)
            cut = UsageMetadata(
                input_tokens=usage["input_tokens"], output_tokens=cap, total_tokens=usage["input_tokens"] + cap
            )
            if "input_token_details" in usage:
                cut["input_token_details"] = usage["input_token_details"]
            if reasoning:
                cut["output_token_details"] = {"reasoning": reasoning * cap // usage["output_tokens"]}
            message.usage_metadata = cut
        if self.report_model:
            message.response_metadata = {**message.response_metadata, "model_name": self.served_model or self.model}
        return message

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._answer(kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._answer(kwargs)
        text = message.content if isinstance(message.content, str) else ""
        parts = max(1, self.stream_chunks)
        size = -(-len(text) // parts) if text else 0
        for part in range(parts):
            last = part == parts - 1
            chunk = AIMessageChunk(
                content=text[part * size : (part + 1) * size] if size else "",
                id=message.id,
                usage_metadata=message.usage_metadata if last else None,
                response_metadata=message.response_metadata if last else {},
                tool_call_chunks=[
                    {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": i}
                    for i, call in enumerate(message.tool_calls)
                ]
                if last
                else [],
            )
            if run_manager is not None:
                run_manager.on_llm_new_token(str(chunk.content), chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)
