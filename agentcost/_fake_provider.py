"""A local HTTP server that answers like the OpenAI and Anthropic APIs, for tests, benchmarks and examples.

:class:`FakeProvider` serves ``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings`` and
``/v1/messages`` in the providers' real JSON and server-sent-event shapes, so the real ``openai`` and ``anthropic``
clients parse its answers. Script what the next requests get with :class:`Reply` and :class:`Fail`; read what it
received, and the usage it reported, in its :attr:`FakeProvider.ledger` of :class:`Exchange` entries::

    from agentcost.testing import Fail, FakeProvider, Reply

    with FakeProvider() as provider:
        provider.script(Fail(status=429), Reply(text="Hi!", input_tokens=1000, output_tokens=20))
        client = openai.OpenAI(base_url=provider.openai_base_url, api_key="test")
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
        [failed, answered] = provider.ledger

Standard library only: it imports neither the provider SDKs nor an HTTP client.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, NamedTuple, cast

from agentcost._usage import Usage

__all__ = ["Exchange", "Fail", "FakeProvider", "Reply"]

_ROUTES = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
}
_CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_PROMPT_FIELDS = ("messages", "input", "system", "instructions")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_encode = json.JSONEncoder(separators=(",", ":")).encode
# Stands in for usage.cost until the JSON text is written, then is replaced by the exact decimal literal.
_COST_MARK = "__agentcost_fake_provider_cost__"
_COST_JSON = f'"{_COST_MARK}"'
_END = b"0\r\n\r\n"


def _count(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Reply:
    """A successful answer: its text, and the usage (and gateway cost) the server reports for it."""

    text: str = "Hello from the fake provider."
    """The assistant's text (ignored by embeddings)."""
    input_tokens: int | None = None
    """Prompt tokens, cache reads and writes included (the agentcost convention, for Anthropic too: its own
    ``input_tokens`` field gets ``input_tokens - cache_read_tokens - cache_write_tokens``). ``None``: derived from
    the request, ``1 + characters // 4`` of the text of its messages, input, system and instructions, and never less
    than the cache tokens."""
    output_tokens: int | None = None
    """Completion tokens, reasoning included. ``None``: derived, ``reasoning_tokens + 2 * words + 3`` of ``text``,
    capped by the request's ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``; a capped answer ends
    with finish reason ``length`` (chat), stop reason ``max_tokens`` (messages) or status ``incomplete``
    (responses). Embeddings report no output tokens."""
    cache_read_tokens: int = 0
    """Prompt tokens read from the cache (a part of ``input_tokens``; OpenAI ``cached_tokens``). Not for embeddings."""
    cache_write_tokens: int = 0
    """Prompt tokens written to the cache (a part of ``input_tokens``); Anthropic only
    (``cache_creation_input_tokens``), OpenAI answers ignore it."""
    reasoning_tokens: int = 0
    """Hidden reasoning tokens (a part of ``output_tokens``); OpenAI only (``reasoning_tokens`` details)."""
    web_search_requests: int = 0
    """Anthropic only: server web searches, reported in ``usage.server_tool_use.web_search_requests`` with a
    ``server_tool_use`` and a ``web_search_tool_result`` content block for each."""
    model: str | None = None
    """The model the answer names (a gateway that routed elsewhere); ``None``: the requested model."""
    usage_cost: str | None = None
    """OpenRouter-style cost: ``usage.cost``, a JSON number written with exactly this decimal literal."""
    cost_header: str | None = None
    """LiteLLM-style cost: the ``x-litellm-response-cost`` response header, with this value."""
    chunks: int = 4
    """How many text deltas a streamed answer splits ``text`` into (at least 1)."""
    interrupt_after: int | None = None
    """Streams only: after this many text deltas, drop the connection mid-body (no terminating chunk) so the client
    sees an incomplete chunked read. ``None``: finish the stream."""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"text must be a str, got {type(self.text).__name__}")
        _count("input_tokens", self.input_tokens, optional=True)
        _count("output_tokens", self.output_tokens, optional=True)
        for name in ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "web_search_requests"):
            _count(name, getattr(self, name))
        _count("interrupt_after", self.interrupt_after, optional=True)
        if type(self.chunks) is not int or self.chunks < 1:
            raise ValueError(f"chunks must be an int of at least 1, got {self.chunks!r}")
        if self.input_tokens is not None and self.input_tokens < self.cache_read_tokens + self.cache_write_tokens:
            raise ValueError(
                f"input_tokens ({self.input_tokens}) must include cache_read_tokens ({self.cache_read_tokens}) and "
                f"cache_write_tokens ({self.cache_write_tokens})"
            )
        if self.output_tokens is not None and self.output_tokens < self.reasoning_tokens:
            raise ValueError(
                f"output_tokens ({self.output_tokens}) must include reasoning_tokens ({self.reasoning_tokens})"
            )
        if self.usage_cost is not None and not (
            isinstance(self.usage_cost, str) and _JSON_NUMBER.fullmatch(self.usage_cost)
        ):
            raise ValueError(f"usage_cost must be a JSON number literal such as '0.0012', got {self.usage_cost!r}")
        if self.cost_header is not None:
            try:
                valid = (
                    isinstance(self.cost_header, str)
                    and self.cost_header == self.cost_header.strip()
                    and Decimal(self.cost_header).is_finite()
                )
            except InvalidOperation:
                valid = False
            if not valid:
                raise ValueError(f"cost_header must be a decimal number, got {self.cost_header!r}")


@dataclass(frozen=True, kw_only=True)
class Fail:
    """A failed answer: an error status with the provider's error body and fast retry hints."""

    status: int = 500
    """The HTTP status, 400 to 599 (e.g. 429 or 500; the SDKs retry 408, 409, 429 and 5xx)."""
    retry_after_ms: int = 1
    """Sent as ``retry-after-ms`` (with ``retry-after: 0``), so the SDKs' retries are fast."""
    message: str = "Simulated failure from the fake provider."
    """The error message, in the provider's error body shape."""

    def __post_init__(self) -> None:
        if type(self.status) is not int or not 400 <= self.status <= 599:
            raise ValueError(f"status must be an int from 400 to 599, got {self.status!r}")
        _count("retry_after_ms", self.retry_after_ms)
        if not isinstance(self.message, str):
            raise TypeError(f"message must be a str, got {type(self.message).__name__}")


@dataclass(frozen=True, kw_only=True)
class Exchange:
    """One request the server received on one of its four routes, and what it answered (failures included)."""

    api: str
    """``"chat"``, ``"responses"``, ``"embeddings"`` or ``"messages"``."""
    path: str
    """The request target as sent, query string included (e.g. ``/v1/messages?beta=true``)."""
    model: str
    """The requested model, from the body (``""`` when it named none)."""
    served_model: str | None
    """The model the answer named; ``None`` for a :class:`Fail`."""
    stream: bool
    """Whether the request asked for a streamed answer (``"stream": true``; always ``False`` for embeddings)."""
    max_tokens: int | None
    """Whichever of ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens`` the body carried."""
    body: Mapping[str, Any]
    """The parsed JSON request body."""
    headers: Mapping[str, str]
    """The request headers, with lower-cased names."""
    status: int
    """The HTTP status answered."""
    usage: Usage | None
    """What the server reported, normalised: input includes cache reads and writes, output includes reasoning,
    ``units={"web_searches": n}`` (the price data's unit) when there were searches; ``None`` for a :class:`Fail`.
    Recorded even when the answer did not carry it: a chat stream without ``stream_options.include_usage``, or an
    interrupted stream, records the usage the answer would have reported."""
    cost: Decimal | None
    """The gateway-reported cost (``Reply.usage_cost``, else ``Reply.cost_header``); ``None`` when there was none.
    Like ``usage``, recorded even when a chat stream without ``include_usage`` did not send its ``usage.cost``."""
    interrupted: bool
    """Whether a stream was cut off before its end (``Reply.interrupt_after``)."""
    chunks_sent: int
    """The text deltas actually sent (streams); 0 otherwise."""


class _Numbers(NamedTuple):
    """The usage one answer reports, in agentcost's convention (input includes cache, output includes reasoning)."""

    input: int
    output: int
    cache_read: int
    cache_write: int
    reasoning: int
    web_searches: int
    capped: bool


def _text_chars(value: object) -> int:
    """Characters of text in a prompt field: strings, lists of them, and the content / text of message parts."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    if isinstance(value, dict):
        return _text_chars(value.get("content")) + _text_chars(value.get("text"))
    return 0


def _cap(body: Mapping[str, Any]) -> int | None:
    for field in _CAP_FIELDS:
        value = body.get(field)
        if type(value) is int and value >= 0:
            return value
    return None


def _numbers(api: str, body: Mapping[str, Any], reply: Reply, cap: int | None) -> _Numbers:
    embeddings = api == "embeddings"
    anthropic = api == "messages"
    cache_read = 0 if embeddings else reply.cache_read_tokens
    cache_write = reply.cache_write_tokens if anthropic else 0
    if reply.input_tokens is not None:
        input_tokens = reply.input_tokens
    else:
        fields = ("input",) if embeddings else _PROMPT_FIELDS
        chars = sum(_text_chars(body.get(field)) for field in fields)
        input_tokens = max(1 + chars // 4, cache_read + cache_write)
    if embeddings:
        return _Numbers(input_tokens, 0, 0, 0, 0, 0, False)
    reasoning = 0 if anthropic else reply.reasoning_tokens
    capped = False
    if reply.output_tokens is not None:
        output_tokens = reply.output_tokens
    else:
        natural = reasoning + 2 * len(reply.text.split()) + 3
        output_tokens = natural if cap is None else min(cap, natural)
        capped = output_tokens < natural
        reasoning = min(reasoning, output_tokens)
    searches = reply.web_search_requests if anthropic else 0
    return _Numbers(input_tokens, output_tokens, cache_read, cache_write, reasoning, searches, capped)


def _usage(n: _Numbers) -> Usage:
    units = {"web_searches": n.web_searches} if n.web_searches else None
    return Usage(n.input, n.output, n.cache_read, n.cache_write, n.reasoning, units=units)


@functools.lru_cache(maxsize=256)
def _pieces(text: str, chunks: int) -> tuple[str, ...]:
    """``text`` cut into ``chunks`` consecutive pieces (some empty when it is shorter than that)."""
    size = len(text)
    return tuple(text[i * size // chunks : (i + 1) * size // chunks] for i in range(chunks))


@functools.lru_cache(maxsize=64)
def _vector(dims: int) -> tuple[tuple[float, ...], str]:
    """A fixed embedding of ``dims`` float32-exact values, as floats and as base64 of little-endian float32."""
    values = tuple(((j % 8) + 1) / 8 for j in range(dims))
    return values, base64.b64encode(struct.pack(f"<{dims}f", *values)).decode("ascii")


def _json(value: object, cost: str | None = None) -> str:
    """Compact JSON text; a ``usage.cost`` placeholder becomes the exact literal ``cost``."""
    text = _encode(value)
    return text if cost is None else text.replace(_COST_JSON, cost, 1)


def _frame(data: str, event: str | None = None) -> bytes:
    """One server-sent event as one HTTP chunk."""
    payload = (f"event: {event}\ndata: {data}\n\n" if event else f"data: {data}\n\n").encode()
    return b"%x\r\n%b\r\n" % (len(payload), payload)


class _Answer(NamedTuple):
    served: str
    numbers: _Numbers
    body: bytes | None
    """A JSON body, or ``None`` for a stream."""
    frames: list[bytes]
    """A stream's chunk-framed events, without the terminating chunk."""
    first_delta: int
    """The index in ``frames`` of the first text delta."""


# --- OpenAI chat completions ---------------------------------------------------------------------------------------


def _chat_usage(n: _Numbers, cost: str | None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": n.input,
        "completion_tokens": n.output,
        "total_tokens": n.input + n.output,
        "prompt_tokens_details": {"cached_tokens": n.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": n.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    if cost is not None:
        usage["cost"] = _COST_MARK
    return usage


def _chat(tag: str, body: Mapping[str, Any], reply: Reply, served: str, n: _Numbers, stream: bool) -> _Answer:
    created = int(time.time())
    finish = "length" if n.capped else "stop"
    cost = reply.usage_cost
    if not stream:
        answer = {
            "id": f"chatcmpl-{tag}",
            "object": "chat.completion",
            "created": created,
            "model": served,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": _chat_usage(n, cost),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        return _Answer(served, n, _json(answer, cost).encode(), [], 0)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    head = (
        f'{{"id":"chatcmpl-{tag}","object":"chat.completion.chunk","created":{created},"model":{_encode(served)},'
        '"service_tier":"default","system_fingerprint":"fp_fake","choices":['
    )
    tail = '],"usage":null}' if include_usage else "]}"
    frames = [
        _frame(
            head + '{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,'
            '"finish_reason":null}' + tail
        )
    ]
    frames.extend(
        _frame(f'{head}{{"index":0,"delta":{{"content":{_encode(piece)}}},"logprobs":null,"finish_reason":null}}{tail}')
        for piece in _pieces(reply.text, reply.chunks)
    )
    frames.append(_frame(f'{head}{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}{tail}'))
    if include_usage:
        frames.append(_frame(f'{head}],"usage":{_json(_chat_usage(n, cost), cost)}}}'))
    frames.append(_frame("[DONE]"))
    return _Answer(served, n, None, frames, 1)


# --- OpenAI responses ----------------------------------------------------------------------------------------------


def _response(
    tag: str,
    created: int,
    body: Mapping[str, Any],
    served: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    instructions = body.get("instructions")
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    return {
        "id": f"resp_{tag}",
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": instructions if isinstance(instructions, str | list) else None,
        "max_output_tokens": _cap(body),
        "model": served,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": temperature if isinstance(temperature, int | float) else 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": top_p if isinstance(top_p, int | float) else 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _responses(tag: str, body: Mapping[str, Any], reply: Reply, served: str, n: _Numbers, stream: bool) -> _Answer:
    created = int(time.time())
    cost = reply.usage_cost
    status = "incomplete" if n.capped else "completed"
    usage: dict[str, Any] = {
        "input_tokens": n.input,
        "input_tokens_details": {"cached_tokens": n.cache_read},
        "output_tokens": n.output,
        "output_tokens_details": {"reasoning_tokens": n.reasoning},
        "total_tokens": n.input + n.output,
    }
    if cost is not None:
        usage["cost"] = _COST_MARK
    item_id = f"msg_{tag}"
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": reply.text}
    item = {"id": item_id, "type": "message", "status": status, "content": [part], "role": "assistant"}
    final = _response(tag, created, body, served, status, [item], usage)
    if not stream:
        return _Answer(served, n, _json(final, cost).encode(), [], 0)
    seq = itertools.count()

    def event(kind: str, fields: dict[str, Any], cost: str | None = None) -> bytes:
        return _frame(_json({"type": kind, "sequence_number": next(seq), **fields}, cost), kind)

    started = _response(tag, created, body, served, "in_progress", [], None)
    frames = [
        event("response.created", {"response": started}),
        event("response.in_progress", {"response": started}),
        event(
            "response.output_item.added",
            {
                "output_index": 0,
                "item": {"id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"},
            },
        ),
        event(
            "response.content_part.added",
            {"item_id": item_id, "output_index": 0, "content_index": 0, "part": {**part, "text": ""}},
        ),
    ]
    delta = (
        '{{"type":"response.output_text.delta","sequence_number":{},"item_id":"' + item_id + '","output_index":0,'
        '"content_index":0,"delta":{},"logprobs":[]}}'
    )
    frames.extend(
        _frame(delta.format(next(seq), _encode(piece)), "response.output_text.delta")
        for piece in _pieces(reply.text, reply.chunks)
    )
    frames.append(
        event(
            "response.output_text.done",
            {"item_id": item_id, "output_index": 0, "content_index": 0, "text": reply.text, "logprobs": []},
        )
    )
    frames.append(
        event("response.content_part.done", {"item_id": item_id, "output_index": 0, "content_index": 0, "part": part})
    )
    frames.append(event("response.output_item.done", {"output_index": 0, "item": item}))
    frames.append(event(f"response.{status}", {"response": final}, cost))
    return _Answer(served, n, None, frames, 4)


# --- OpenAI embeddings ---------------------------------------------------------------------------------------------


def _embeddings(tag: str, body: Mapping[str, Any], reply: Reply, served: str, n: _Numbers, stream: bool) -> _Answer:
    given = body.get("input")
    count = len(given) if isinstance(given, list) and given and not all(type(x) is int for x in given) else 1
    dims = body.get("dimensions")
    floats, encoded = _vector(dims if type(dims) is int and 1 <= dims <= 8192 else 8)
    vector: object = encoded if body.get("encoding_format") == "base64" else floats
    usage: dict[str, Any] = {"prompt_tokens": n.input, "total_tokens": n.input}
    if reply.usage_cost is not None:
        usage["cost"] = _COST_MARK
    answer = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)],
        "model": served,
        "usage": usage,
    }
    return _Answer(served, n, _json(answer, reply.usage_cost).encode(), [], 0)


# --- Anthropic messages --------------------------------------------------------------------------------------------


def _search_blocks(tag: str, searches: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    blocks = []
    for i in range(1, searches + 1):
        use_id = f"srvtoolu_{tag}_{i}"
        use = {"type": "server_tool_use", "id": use_id, "name": "web_search", "input": {"query": f"fake search {i}"}}
        result = {
            "type": "web_search_tool_result",
            "tool_use_id": use_id,
            "content": [
                {
                    "type": "web_search_result",
                    "title": f"Fake result {i}",
                    "url": f"https://example.com/{i}",
                    "encrypted_content": "ZmFrZQ==",
                    "page_age": None,
                }
            ],
        }
        blocks.append((use, result))
    return blocks


def _messages(tag: str, body: Mapping[str, Any], reply: Reply, served: str, n: _Numbers, stream: bool) -> _Answer:
    cost = reply.usage_cost
    stop_reason = "max_tokens" if n.capped else "end_turn"
    cache = {
        "input_tokens": n.input - n.cache_read - n.cache_write,
        "cache_creation_input_tokens": n.cache_write,
        "cache_read_input_tokens": n.cache_read,
    }
    searches = _search_blocks(tag, n.web_searches)
    tool_use = {"server_tool_use": {"web_search_requests": n.web_searches}} if n.web_searches else {}
    if not stream:
        usage: dict[str, Any] = {
            **cache,
            "cache_creation": {"ephemeral_5m_input_tokens": n.cache_write, "ephemeral_1h_input_tokens": 0},
            "output_tokens": n.output,
            "service_tier": "standard",
            **tool_use,
        }
        if cost is not None:
            usage["cost"] = _COST_MARK
        content = [block for pair in searches for block in pair]
        content.append({"type": "text", "text": reply.text})
        answer = {
            "id": f"msg_{tag}",
            "type": "message",
            "role": "assistant",
            "model": served,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        return _Answer(served, n, _json(answer, cost).encode(), [], 0)

    def event(kind: str, fields: dict[str, Any], cost: str | None = None) -> bytes:
        return _frame(_json({"type": kind, **fields}, cost), kind)

    start_usage = {
        **cache,
        "cache_creation": {"ephemeral_5m_input_tokens": n.cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
        "service_tier": "standard",
    }
    message: dict[str, Any] = {
        "id": f"msg_{tag}",
        "type": "message",
        "role": "assistant",
        "model": served,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    frames = [event("message_start", {"message": message})]
    ping = event("ping", {})
    index = 0
    for use, result in searches:
        frames.append(event("content_block_start", {"index": index, "content_block": {**use, "input": {}}}))
        if index == 0:
            frames.append(ping)
        partial = {"type": "input_json_delta", "partial_json": _encode(use["input"])}
        frames.append(event("content_block_delta", {"index": index, "delta": partial}))
        frames.append(event("content_block_stop", {"index": index}))
        frames.append(event("content_block_start", {"index": index + 1, "content_block": result}))
        frames.append(event("content_block_stop", {"index": index + 1}))
        index += 2
    frames.append(event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
    if index == 0:
        frames.append(ping)
    first_delta = len(frames)
    delta = '{"type":"content_block_delta","index":' + str(index) + ',"delta":{"type":"text_delta","text":'
    frames.extend(
        _frame(f"{delta}{_encode(piece)}}}}}", "content_block_delta") for piece in _pieces(reply.text, reply.chunks)
    )
    frames.append(event("content_block_stop", {"index": index}))
    final_usage: dict[str, Any] = {**cache, "output_tokens": n.output, **tool_use}
    if cost is not None:
        final_usage["cost"] = _COST_MARK
    frames.append(
        event(
            "message_delta",
            {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": final_usage},
            cost,
        )
    )
    frames.append(event("message_stop", {}))
    return _Answer(served, n, None, frames, first_delta)


_ANSWERS = {"chat": _chat, "responses": _responses, "embeddings": _embeddings, "messages": _messages}

# --- errors --------------------------------------------------------------------------------------------------------

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error_body(api: str, status: int, message: str, request_id: str) -> bytes:
    if api == "messages":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        return _json({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}).encode()
    if status == 429:
        kind = "rate_limit_error"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return _json({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()


@functools.lru_cache(maxsize=64)
def _status_line(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"HTTP/1.1 {status} {phrase}\r\n"


def _head(status: int, request_id: str, content_type: str, length: int | None, extra: str = "") -> bytes:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (
        f"{_status_line(status)}Content-Type: {content_type}\r\n{framing}\r\nx-request-id: {request_id}\r\n{extra}\r\n"
    ).encode("latin-1")


# --- the server ----------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, provider: FakeProvider) -> None:
        self.provider = provider
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._open: set[socket.socket] = set()
        self._open_changed = threading.Condition()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (socket.getfqdn), which can take seconds; nothing needs it.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away
        super().handle_error(request, client_address)

    def opened(self, connection: socket.socket) -> None:
        with self._open_changed:
            self._open.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._open_changed:
            self._open.discard(connection)
            self._open_changed.notify_all()

    def drop_connections(self, timeout: float) -> None:
        """Shut every open client connection down, and wait (a little) for their handlers to finish."""
        with self._open_changed:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._open_changed.wait_for(lambda: not self._open, timeout)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agentcost-fake-provider"
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        cast(_Server, self.server).opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            cast(_Server, self.server).closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
            return False
        return True

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _not_found(self) -> None:
        self._read_body()
        provider = cast(_Server, self.server).provider
        request_id = f"req_{provider._tag()}"
        route = self.path.partition("?")[0]
        message = (
            f"Unknown request URL: {self.command} {route}. The fake provider serves POST /v1/chat/completions, "
            "/v1/responses, /v1/embeddings and /v1/messages."
        )
        payload = _json(
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "unknown_url"}}
        ).encode()
        self._send(_head(404, request_id, "application/json", len(payload)) + payload)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_found

    def do_POST(self) -> None:
        api = _ROUTES.get(self.path.partition("?")[0])
        if api is None:
            self._not_found()
            return
        raw = self._read_body()
        provider = cast(_Server, self.server).provider
        tag = provider._tag()
        request_id = f"req_{tag}"
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.close_connection = raw is None  # an unreadable length leaves the stream out of step
            payload = _error_body(api, 400, "The request body must be a JSON object.", request_id)
            self._send(_head(400, request_id, "application/json", len(payload)) + payload)
            return
        extra = f"request-id: {request_id}\r\n" if api == "messages" else ""
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        stream = api != "embeddings" and body.get("stream") is True
        cap = _cap(body)
        headers = {name.lower(): value for name, value in self.headers.items()}
        step = provider._next_step()
        if isinstance(step, Fail):
            provider._record(
                Exchange(
                    api=api,
                    path=self.path,
                    model=model,
                    served_model=None,
                    stream=stream,
                    max_tokens=cap,
                    body=body,
                    headers=headers,
                    status=step.status,
                    usage=None,
                    cost=None,
                    interrupted=False,
                    chunks_sent=0,
                )
            )
            payload = _error_body(api, step.status, step.message, request_id)
            extra += f"retry-after-ms: {step.retry_after_ms}\r\nretry-after: 0\r\n"
            self._send(_head(step.status, request_id, "application/json", len(payload), extra) + payload)
            return
        numbers = _numbers(api, body, step, cap)
        answer = _ANSWERS[api](tag, body, step, step.model or model, numbers, stream)
        if step.cost_header is not None:
            extra += f"x-litellm-response-cost: {step.cost_header}\r\n"
        cost = step.usage_cost or step.cost_header
        cut = None
        chunks_sent = 0
        if answer.body is None:
            chunks_sent = step.chunks
            if step.interrupt_after is not None:
                chunks_sent = min(step.chunks, step.interrupt_after)
                cut = answer.first_delta + chunks_sent
        # Recorded before the answer is written, so a client that has its answer always finds its entry.
        provider._record(
            Exchange(
                api=api,
                path=self.path,
                model=model,
                served_model=answer.served,
                stream=stream,
                max_tokens=cap,
                body=body,
                headers=headers,
                status=200,
                usage=_usage(answer.numbers),
                cost=None if cost is None else Decimal(cost),
                interrupted=cut is not None,
                chunks_sent=chunks_sent,
            )
        )
        if answer.body is not None:
            self._send(_head(200, request_id, "application/json", len(answer.body), extra) + answer.body)
            return
        frames = answer.frames if cut is None else answer.frames[:cut]
        head = _head(200, request_id, "text/event-stream", None, extra)
        frames = [head + frames[0], *frames[1:]] if frames else [head]
        if cut is None:
            frames[-1] += _END
        for frame in frames:
            if not self._send(frame):
                return
        if cut is not None:
            # Drop the connection mid-body: no terminating chunk, so the client sees an incomplete chunked read.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)


class FakeProvider:
    """A local server answering like the OpenAI and Anthropic APIs; a context manager that starts and closes it.

    Requests get the scripted steps in order (:meth:`script`), then ``default`` (or ``Reply()``) once the script
    is used up. Every request on one of its four routes is recorded in :attr:`ledger`.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, default: Reply | None = None) -> None:
        if default is not None and not isinstance(default, Reply):
            raise TypeError(f"default must be a Reply, got {type(default).__name__}")
        self._host = host
        self._port = port
        self._default = default if default is not None else Reply()
        self._script: deque[Reply | Fail] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.ledger: list[Exchange] = []
        """One entry per request received on the four routes, in arrival order (failures included)."""

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the started server."""
        if self._server is None:
            raise RuntimeError("the FakeProvider is not started: call start() or use it as a context manager")
        host, port = self._server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` for ``openai.OpenAI``: :attr:`base_url` + ``/v1``."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The ``base_url`` for ``anthropic.Anthropic`` (which appends ``/v1/messages`` itself): :attr:`base_url`."""
        return self.base_url

    def script(self, *steps: Reply | Fail) -> None:
        """Queue one-shot answers for the next requests, in order, whatever their route."""
        for step in steps:
            if not isinstance(step, Reply | Fail):
                raise TypeError(f"script steps must be Reply or Fail, got {type(step).__name__}")
        with self._lock:
            self._script.extend(steps)

    def reset(self) -> None:
        """Forget the remaining script and clear the ledger."""
        with self._lock:
            self._script.clear()
            self.ledger.clear()

    def start(self) -> FakeProvider:
        """Bind and serve on a daemon thread; returns ``self``. Starting a started provider does nothing."""
        if self._closed:
            raise RuntimeError("a closed FakeProvider cannot be started again")
        if self._server is None:
            server = _Server(self._host, self._port, self)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="agentcost-fake-provider", daemon=True
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def close(self) -> None:
        """Stop serving, close the listening socket and drop open connections; closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join()
        server.server_close()
        server.drop_connections(timeout=1.0)

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None and not self._closed else "not serving"
        return f"FakeProvider({where}, {len(self.ledger)} exchange(s))"

    def _tag(self) -> str:
        return f"fake{next(self._ids):020d}"

    def _next_step(self) -> Reply | Fail:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.ledger.append(exchange)
