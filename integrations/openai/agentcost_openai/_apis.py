"""How the OpenAI endpoints' requests and responses read: chat completions, responses, embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentcost import Usage
from agentcost.adapters import Api, Reported, StreamWatch, extra_field, money_from_json

__all__ = ["APIS"]


def _details(details: Any, name: str) -> int:
    value = getattr(details, name, None) if details is not None else None
    return value if type(value) is int else 0


def _chat_usage(model: str | None, usage: Any) -> Reported:
    """Chat completions count ``prompt_tokens`` with cached tokens and ``completion_tokens`` with reasoning tokens,
    as agentcost does."""
    return Reported(
        Usage(
            usage.prompt_tokens,
            usage.completion_tokens,
            cache_read_tokens=_details(usage.prompt_tokens_details, "cached_tokens"),
            reasoning_tokens=_details(usage.completion_tokens_details, "reasoning_tokens"),
        ),
        model,
        money_from_json(extra_field(usage, "cost")),  # OpenRouter-style gateways report their cost here
    )


def _responses_usage(response: Any) -> Reported:
    usage = response.usage
    if usage is None:
        return Reported(None, response.model)
    return Reported(
        Usage(
            usage.input_tokens,
            usage.output_tokens,
            cache_read_tokens=_details(usage.input_tokens_details, "cached_tokens"),
            reasoning_tokens=_details(usage.output_tokens_details, "reasoning_tokens"),
        ),
        response.model,
        money_from_json(extra_field(usage, "cost")),
    )


class _ChatWatch(StreamWatch):
    __slots__ = ("hide_usage",)

    def __init__(self, hide_usage: bool) -> None:
        super().__init__()
        self.hide_usage = hide_usage

    def observe(self, item: Any) -> bool:
        usage = item.usage
        if usage is not None:
            self.reported = _chat_usage(item.model, usage)
            # the usage-only chunk the adapter asked for: the caller, who did not, never sees it
            return not (self.hide_usage and not item.choices)
        if self.model is None:
            self.model = item.model
        for choice in item.choices:
            delta = choice.delta
            if delta.content:
                self.chars += len(delta.content)
            if delta.tool_calls:
                for call in delta.tool_calls:
                    if call.function is not None and call.function.arguments:
                        self.chars += len(call.function.arguments)
        return True


class ChatCompletions(Api):
    prompt_fields = ("messages", "tools")
    cap_fields = ("max_completion_tokens", "max_tokens")

    def prepare_stream(self, body: dict[str, Any]) -> bool:
        options = body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage") is True:
            return False
        body["stream_options"] = {**(options if isinstance(options, Mapping) else {}), "include_usage": True}
        return True

    def reported(self, result: Any) -> Reported:
        usage = result.usage
        return Reported(None, result.model) if usage is None else _chat_usage(result.model, usage)

    def watch(self, hide_usage: bool) -> StreamWatch:
        return _ChatWatch(hide_usage)


_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta"})
_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class _ResponsesWatch(StreamWatch):
    __slots__ = ()

    def observe(self, item: Any) -> bool:
        kind = item.type
        if kind in _TEXT_DELTAS:
            self.chars += len(item.delta)
        elif kind in _FINAL:
            self.reported = _responses_usage(item.response)
        elif kind == "response.created":
            self.model = item.response.model
        return True


class Responses(Api):
    prompt_fields = ("input", "instructions", "tools")
    cap_fields = ("max_output_tokens",)

    def reported(self, result: Any) -> Reported:
        return _responses_usage(result)

    def watch(self, hide_usage: bool) -> StreamWatch:
        return _ResponsesWatch()


class Embeddings(Api):
    kind = "embedding"
    prompt_fields = ("input",)

    def reported(self, result: Any) -> Reported:
        usage = result.usage
        if usage is None:
            return Reported(None, result.model)
        return Reported(Usage(usage.prompt_tokens, 0), result.model, money_from_json(extra_field(usage, "cost")))


APIS: Mapping[str, Api] = {
    "/chat/completions": ChatCompletions(),
    "/responses": Responses(),
    "/embeddings": Embeddings(),
}
