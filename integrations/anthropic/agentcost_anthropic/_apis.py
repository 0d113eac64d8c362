"""How the Anthropic Messages API's requests and responses read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentcost import Usage
from agentcost.adapters import Api, Reported, StreamWatch, extra_field, money_from_json

__all__ = ["APIS"]


def _count(value: object) -> int:
    return value if type(value) is int else 0


def _fields(model: Any) -> dict[str, Any]:
    """A response model's fields, read from its ``__dict__``: asking a pydantic model for a field its class does not
    declare (``cache_creation`` on a stream's delta usage) raises and catches an AttributeError inside pydantic."""
    if model is None:
        return _NO_FIELDS
    fields = getattr(model, "__dict__", None)
    return fields if type(fields) is dict else _NO_FIELDS


_NO_FIELDS: dict[str, Any] = {}


def _usage(usage: Any, start: Any = None) -> Usage:
    """Anthropic's ``input_tokens`` leaves out cache reads and writes; agentcost's includes them. Writes to the
    1-hour cache (``cache_creation.ephemeral_1h_input_tokens``, a part of the cache writes) cost more than writes to
    the 5-minute one: they are the ``cache_write_1h_tokens`` unit of the price data. Thinking tokens are part of
    ``output_tokens``. Web searches are billed per request (the ``web_searches`` unit of the price data); web
    fetches cost only their tokens.

    ``start`` is a stream's ``message_start`` usage: a ``message_delta`` carries the cumulative output and, in
    current API versions, the input counts too, which win when present; the cache breakdown only ``start`` has."""
    fields = _fields(usage)
    if start is not None:
        fields = {**_fields(start), **{name: value for name, value in fields.items() if value is not None}}
    cache_read = _count(fields.get("cache_read_input_tokens"))
    cache_write = _count(fields.get("cache_creation_input_tokens"))
    searches = _count(_fields(fields.get("server_tool_use")).get("web_search_requests"))
    one_hour = _count(_fields(fields.get("cache_creation")).get("ephemeral_1h_input_tokens"))
    units = {"web_searches": searches} if searches else {}
    if one_hour:
        units["cache_write_1h_tokens"] = one_hour
    return Usage(
        _count(fields.get("input_tokens")) + cache_read + cache_write,
        _count(fields.get("output_tokens")),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_count(_fields(fields.get("output_tokens_details")).get("thinking_tokens")),
        units=units or None,
    )


_DELTA_TEXT = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}
"""The field holding the generated text of each kind of content delta."""


class _MessagesWatch(StreamWatch):
    __slots__ = ("start",)

    def __init__(self) -> None:
        super().__init__()
        self.start: Any = None

    def observe(self, item: Any) -> bool:
        kind = item.type
        if kind == "content_block_delta":
            delta = item.delta
            if delta.type == "text_delta":  # the common case first: this runs for every delta of the stream
                self.chars += len(delta.text)
            else:
                field = _DELTA_TEXT.get(delta.type)
                text = getattr(delta, field, None) if field is not None else None
                if text:
                    self.chars += len(text)
        elif kind == "message_start":
            message = item.message
            self.model = message.model
            self.start = message.usage
            self.partial = _usage(message.usage)
        elif kind == "message_delta":
            self.reported = Reported(
                _usage(item.usage, self.start), self.model, money_from_json(extra_field(item.usage, "cost"))
            )
        return True


class Messages(Api):
    prompt_fields = ("system", "messages", "tools")
    cap_fields = ("max_tokens",)

    def reported(self, result: Any) -> Reported:
        usage = result.usage
        if usage is None:
            return Reported(None, result.model)
        return Reported(_usage(usage), result.model, money_from_json(extra_field(usage, "cost")))

    def watch(self, hide_usage: bool) -> StreamWatch:
        return _MessagesWatch()


APIS: Mapping[str, Api] = {"/v1/messages": Messages()}
