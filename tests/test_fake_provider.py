"""FakeProvider: the OpenAI and Anthropic answer shapes, the usage it reports and records, scripting and streams.

Standard library clients only: the real SDKs are checked against it elsewhere, not in the core's tests.
"""

from __future__ import annotations

import base64
import http.client
import json
import struct
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from agentcost import Usage
from agentcost.testing import Exchange, Fail, FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]  # 30 characters: 1 + 30 // 4 = 8 tokens


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def provider(server: FakeProvider) -> FakeProvider:
    server.reset()
    return server


class Answer:
    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data

    def json(self) -> Any:
        return json.loads(self.data)

    def events(self) -> list[tuple[str | None, str]]:
        """The server-sent events of a stream, as (event name or None, data)."""
        events = []
        for block in self.data.decode().split("\n\n"):
            if not block:
                continue
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields.get("event"), fields["data"]))
        return events


def post(
    provider: FakeProvider, path: str, body: object, headers: dict[str, str] | None = None, method: str = "POST"
) -> Answer:
    conn = http.client.HTTPConnection(provider.base_url.removeprefix("http://"), timeout=5)
    try:
        conn.request(method, path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def chat(provider: FakeProvider, **body: Any) -> Answer:
    return post(provider, "/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES, **body})


def messages(provider: FakeProvider, **body: Any) -> Answer:
    return post(provider, "/v1/messages", {"model": "claude-x", "max_tokens": 1024, "messages": MESSAGES, **body})


def test_chat_completion_has_the_real_shape_and_reports_usage(provider: FakeProvider) -> None:
    """A chat completion has the API's fields, usage details, and the ledger records the normalised usage."""
    provider.script(Reply(text="Paris.", input_tokens=120, output_tokens=30, cache_read_tokens=100, reasoning_tokens=9))
    answer = chat(provider)
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.data)
    assert answer.headers["x-request-id"]
    data = answer.json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "gpt-4o"
    assert data["system_fingerprint"] == "fp_fake"
    [choice] = data["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Paris."
    assert choice["message"]["refusal"] is None
    assert choice["logprobs"] is None
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 9,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    [exchange] = provider.ledger
    assert exchange.api == "chat"
    assert exchange.status == 200
    assert exchange.usage == Usage(120, 30, cache_read_tokens=100, reasoning_tokens=9)
    assert exchange.served_model == "gpt-4o"
    assert (exchange.stream, exchange.interrupted, exchange.chunks_sent, exchange.cost) == (False, False, 0, None)


def test_responses_answer_has_the_real_shape_and_reports_usage(provider: FakeProvider) -> None:
    """A Responses API answer is a completed Response with a message output item and input/output usage details."""
    provider.script(Reply(text="Bonjour.", input_tokens=70, output_tokens=12, cache_read_tokens=20, reasoning_tokens=3))
    data = post(provider, "/v1/responses", {"model": "gpt-4.1", "input": "hi", "instructions": "Be brief"}).json()
    assert data["id"].startswith("resp_")
    assert (data["object"], data["status"], data["model"]) == ("response", "completed", "gpt-4.1")
    assert isinstance(data["created_at"], int)
    assert data["instructions"] == "Be brief"
    assert data["error"] is None
    assert data["incomplete_details"] is None
    assert data["tools"] == []
    assert data["tool_choice"] == "auto"
    assert data["text"] == {"format": {"type": "text"}}
    assert data["truncation"] == "disabled"
    [item] = data["output"]
    assert item["id"].startswith("msg_")
    assert (item["type"], item["status"], item["role"]) == ("message", "completed", "assistant")
    assert item["content"] == [{"type": "output_text", "annotations": [], "logprobs": [], "text": "Bonjour."}]
    assert data["usage"] == {
        "input_tokens": 70,
        "input_tokens_details": {"cached_tokens": 20},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 82,
    }
    assert provider.ledger[0].usage == Usage(70, 12, cache_read_tokens=20, reasoning_tokens=3)
    assert provider.ledger[0].api == "responses"


def test_embeddings_answer_base64_by_request_and_floats_otherwise(provider: FakeProvider) -> None:
    """Embeddings honour encoding_format: base64 of little-endian float32 (the SDK default), else floats."""
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta gamma"], "encoding_format": "base64"}
    data = post(provider, "/v1/embeddings", body).json()
    assert data["object"] == "list"
    assert data["model"] == "text-embedding-3-small"
    assert [(d["object"], d["index"]) for d in data["data"]] == [("embedding", 0), ("embedding", 1)]
    vector = struct.unpack("<8f", base64.b64decode(data["data"][0]["embedding"]))
    assert vector == (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
    assert data["usage"] == {"prompt_tokens": 1 + 15 // 4, "total_tokens": 1 + 15 // 4}
    floats = post(provider, "/v1/embeddings", {**body, "encoding_format": "float"}).json()
    assert floats["data"][1]["embedding"] == list(vector)
    assert [e.usage for e in provider.ledger] == [Usage(4, 0), Usage(4, 0)]


def test_messages_input_tokens_count_cache_and_web_searches_are_reported(provider: FakeProvider) -> None:
    """Anthropic usage reports input without cache; the ledger's input includes cache reads and writes."""
    provider.script(
        Reply(
            text="Paris.",
            input_tokens=1000,
            output_tokens=25,
            cache_read_tokens=600,
            cache_write_tokens=300,
            web_search_requests=1,
            model="claude-routed",
        )
    )
    answer = messages(provider)
    data = answer.json()
    assert answer.headers["request-id"] == answer.headers["x-request-id"]
    assert data["id"].startswith("msg_")
    assert (data["type"], data["role"], data["model"]) == ("message", "assistant", "claude-routed")
    assert (data["stop_reason"], data["stop_sequence"]) == ("end_turn", None)
    assert [block["type"] for block in data["content"]] == ["server_tool_use", "web_search_tool_result", "text"]
    use, result, text = data["content"]
    assert (use["name"], result["tool_use_id"]) == ("web_search", use["id"])
    assert text == {"type": "text", "text": "Paris."}
    usage = data["usage"]
    assert usage["input_tokens"] == 100
    assert usage["cache_read_input_tokens"] == 600
    assert usage["cache_creation_input_tokens"] == 300
    assert usage["output_tokens"] == 25
    assert usage["service_tier"] == "standard"
    assert usage["server_tool_use"] == {"web_search_requests": 1}
    [exchange] = provider.ledger
    assert exchange.usage == Usage(1000, 25, cache_read_tokens=600, cache_write_tokens=300, units={"web_searches": 1})
    assert (exchange.model, exchange.served_model) == ("claude-x", "claude-routed")


def test_messages_without_web_searches_carry_no_server_tool_use(provider: FakeProvider) -> None:
    """Without web searches the Anthropic usage has no server_tool_use and the ledger's usage no units."""
    data = messages(provider).json()
    assert "server_tool_use" not in data["usage"]
    assert [block["type"] for block in data["content"]] == ["text"]
    assert provider.ledger[0].usage is not None
    assert provider.ledger[0].usage.units is None


def test_derived_usage_follows_the_request_and_honours_the_cap(provider: FakeProvider) -> None:
    """Derived input is 1 + chars // 4 of the prompt; derived output is 2 * words + 3, at most the request's cap."""
    reply = Reply(text="one two three four five")  # 13 output tokens uncapped
    provider.script(reply, reply, reply, reply)
    free = chat(provider).json()
    assert (free["usage"]["prompt_tokens"], free["usage"]["completion_tokens"]) == (8, 13)
    capped = chat(provider, max_completion_tokens=5).json()
    assert capped["usage"]["completion_tokens"] == 5
    assert capped["choices"][0]["finish_reason"] == "length"
    body = {"model": "gpt-4.1", "input": "abcdefgh", "instructions": "abcd", "max_output_tokens": 6}
    response = post(provider, "/v1/responses", body).json()
    assert (response["usage"]["input_tokens"], response["usage"]["output_tokens"]) == (4, 6)
    assert response["status"] == "incomplete"
    message = messages(provider, max_tokens=7, system=[{"type": "text", "text": "12345678"}]).json()
    assert (message["usage"]["input_tokens"], message["usage"]["output_tokens"]) == (1 + 38 // 4, 7)
    assert message["stop_reason"] == "max_tokens"
    assert [e.usage.output_tokens if e.usage else None for e in provider.ledger] == [13, 5, 6, 7]


def test_script_answers_in_order_then_the_default(provider: FakeProvider) -> None:
    """Scripted steps are consumed in order across routes (Fail, then Reply), then the default answers."""
    provider.script(Fail(status=429, message="slow down"), Reply(text="after"), Fail(status=500))
    limited = chat(provider)
    assert limited.status == 429
    assert limited.headers["retry-after-ms"] == "1"
    assert limited.headers["retry-after"] == "0"
    assert limited.json() == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}
    }
    assert messages(provider).json()["content"][-1]["text"] == "after"
    failed = messages(provider)
    assert failed.status == 500
    assert failed.json()["type"] == "error"
    assert failed.json()["error"] == {"type": "api_error", "message": Fail().message}
    assert chat(provider).json()["choices"][0]["message"]["content"] == Reply().text
    assert [(e.api, e.status) for e in provider.ledger] == [
        ("chat", 429),
        ("messages", 200),
        ("messages", 500),
        ("chat", 200),
    ]
    assert (provider.ledger[0].usage, provider.ledger[0].served_model, provider.ledger[0].cost) == (None, None, None)


def test_openai_server_errors_have_the_server_error_type(provider: FakeProvider) -> None:
    """A 5xx on an OpenAI route has the OpenAI error body with type server_error."""
    provider.script(Fail(status=503, message="down"))
    answer = post(provider, "/v1/responses", {"model": "gpt-4.1", "input": "hi"})
    assert answer.status == 503
    assert answer.json()["error"]["type"] == "server_error"


def test_chat_stream_carries_usage_only_with_include_usage(provider: FakeProvider) -> None:
    """A chat stream has usage (null on each chunk, then a final choices-less chunk) only with include_usage."""
    reply = Reply(text="Paris is the capital.", input_tokens=50, output_tokens=7, chunks=3)
    provider.script(reply, reply)
    answer = chat(provider, stream=True, stream_options={"include_usage": True})
    assert answer.headers["content-type"] == "text/event-stream"
    assert answer.headers["transfer-encoding"] == "chunked"
    events = answer.events()
    assert all(name is None for name, _ in events)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:4]) == "Paris is the capital."
    assert chunks[4]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert (chunks[-1]["usage"]["prompt_tokens"], chunks[-1]["usage"]["completion_tokens"]) == (50, 7)

    plain = [json.loads(data) for _, data in chat(provider, stream=True).events()[:-1]]
    assert len(plain) == 5
    assert all("usage" not in chunk for chunk in plain)
    assert [(e.stream, e.chunks_sent, e.usage) for e in provider.ledger] == [(True, 3, Usage(50, 7))] * 2


def test_responses_stream_sends_the_typed_events_in_order(provider: FakeProvider) -> None:
    """A Responses stream names each event, numbers them in sequence and ends with response.completed and usage."""
    provider.script(Reply(text="Bonjour tout le monde.", input_tokens=70, output_tokens=12, chunks=2))
    events = post(provider, "/v1/responses", {"model": "gpt-4.1", "input": "hi", "stream": True}).events()
    names = [name for name, _ in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    data = [json.loads(payload) for _, payload in events]
    assert [d["type"] for d in data] == names
    assert [d["sequence_number"] for d in data] == list(range(10))
    assert data[0]["response"]["status"] == "in_progress"
    assert data[0]["response"]["usage"] is None
    deltas = data[4:6]
    assert "".join(d["delta"] for d in deltas) == "Bonjour tout le monde."
    assert all(d["item_id"] == data[2]["item"]["id"] and d["logprobs"] == [] for d in deltas)
    final = data[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "Bonjour tout le monde."
    assert (final["usage"]["input_tokens"], final["usage"]["output_tokens"]) == (70, 12)


def test_messages_stream_sends_anthropic_events_with_cumulative_final_usage(provider: FakeProvider) -> None:
    """An Anthropic stream starts with input usage and ends with message_delta carrying the cumulative usage."""
    provider.script(Reply(text="Paris is lovely.", input_tokens=500, output_tokens=9, cache_read_tokens=400, chunks=2))
    events = messages(provider, stream=True).events()
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(payload) for _, payload in events]
    assert [d["type"] for d in data] == [name for name, _ in events]
    start = data[0]["message"]
    assert (start["content"], start["stop_reason"]) == ([], None)
    assert start["usage"]["input_tokens"] == 100
    assert start["usage"]["cache_read_input_tokens"] == 400
    assert start["usage"]["output_tokens"] == 1
    assert "".join(d["delta"]["text"] for d in data[3:5]) == "Paris is lovely."
    assert data[6]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data[6]["usage"] == {
        "input_tokens": 100,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 400,
        "output_tokens": 9,
    }
    assert provider.ledger[0].usage == Usage(500, 9, cache_read_tokens=400)


def test_gateway_cost_header_and_usage_cost_keep_their_literals(provider: FakeProvider) -> None:
    """cost_header is sent as x-litellm-response-cost; usage_cost is written into usage as the exact JSON literal."""
    provider.script(Reply(cost_header="0.5"), Reply(usage_cost="0.000123400"), Reply(usage_cost="1e-7"))
    assert chat(provider).headers["x-litellm-response-cost"] == "0.5"
    answer = post(provider, "/v1/responses", {"model": "gpt-4.1", "input": "hi"})
    assert b'"cost":0.000123400}' in answer.data
    assert "x-litellm-response-cost" not in answer.headers
    assert b'"cost":1e-7' in messages(provider).data
    assert [e.cost for e in provider.ledger] == [Decimal("0.5"), Decimal("0.000123400"), Decimal("1e-7")]


def test_an_interrupted_stream_ends_without_the_terminating_chunk(provider: FakeProvider) -> None:
    """interrupt_after sends that many deltas then closes the connection mid-body, so the read is incomplete."""
    provider.script(Reply(text="one two three four", chunks=4, interrupt_after=2))
    conn = http.client.HTTPConnection(provider.base_url.removeprefix("http://"), timeout=5)
    try:
        body = json.dumps({"model": "gpt-4o", "messages": MESSAGES, "stream": True})
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead) as raised:
            response.read()
        assert raised.value.partial.count(b'"content":"') == 3  # the role chunk and two deltas
    finally:
        conn.close()
    [exchange] = provider.ledger
    assert (exchange.interrupted, exchange.chunks_sent, exchange.stream) == (True, 2, True)
    assert exchange.usage == Usage(8, 11)


def test_ledger_records_the_request(provider: FakeProvider) -> None:
    """The ledger records path, requested model, max_tokens, the parsed body and lower-cased headers."""
    messages(provider, max_tokens=300, metadata={"user_id": "u"})
    post(provider, "/v1/messages?beta=true", {"model": "m", "messages": []}, headers={"X-Custom-Thing": "yes"})
    first, second = provider.ledger
    assert isinstance(first, Exchange)
    assert (first.api, first.path, first.model, first.max_tokens) == ("messages", "/v1/messages", "claude-x", 300)
    assert first.body["metadata"] == {"user_id": "u"}
    assert first.headers["content-type"] == "application/json"
    assert (second.path, second.max_tokens, second.headers["x-custom-thing"]) == ("/v1/messages?beta=true", None, "yes")


def test_unknown_routes_and_bad_bodies_are_answered_but_not_recorded(provider: FakeProvider) -> None:
    """Unknown paths and methods get a 404 JSON error, a non-object body a 400; neither uses the script."""
    provider.script(Fail(status=429))
    missing = post(provider, "/v1/completions", {"model": "x"})
    assert missing.status == 404
    assert missing.json()["error"]["code"] == "unknown_url"
    assert post(provider, "/v1/chat/completions", {}, method="GET").status == 404
    assert post(provider, "/v1/chat/completions", ["not", "an", "object"]).status == 400
    assert provider.ledger == []
    assert chat(provider).status == 429


def test_one_connection_serves_many_requests(provider: FakeProvider) -> None:
    """HTTP/1.1 keep-alive: one client connection carries several answers, streamed or not."""
    conn = http.client.HTTPConnection(provider.base_url.removeprefix("http://"), timeout=5)
    try:
        for stream in (False, True, False):
            body = json.dumps({"model": "gpt-4o", "messages": MESSAGES, "stream": stream})
            conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            response.read()
    finally:
        conn.close()
    assert [e.stream for e in provider.ledger] == [False, True, False]


def test_reply_and_fail_reject_impossible_values() -> None:
    """Reply and Fail refuse values the APIs could not report (negative counts, cache above input, bad literals)."""
    with pytest.raises(ValueError, match="input_tokens"):
        Reply(input_tokens=10, cache_read_tokens=8, cache_write_tokens=8)
    with pytest.raises(ValueError, match="reasoning_tokens"):
        Reply(output_tokens=1, reasoning_tokens=2)
    with pytest.raises(ValueError, match="chunks"):
        Reply(chunks=0)
    with pytest.raises(ValueError, match="usage_cost"):
        Reply(usage_cost="$0.01")
    for header in ("a lot", "1\r\nx-injected: yes"):
        with pytest.raises(ValueError, match="cost_header"):
            Reply(cost_header=header)
    with pytest.raises(ValueError, match="status"):
        Fail(status=200)
    with pytest.raises(TypeError):
        FakeProvider().script("not a step")  # type: ignore[arg-type]


def test_lifecycle_urls_and_idempotent_close() -> None:
    """The URLs exist once started; close is idempotent and a closed provider cannot restart."""
    provider = FakeProvider()
    with pytest.raises(RuntimeError):
        _ = provider.base_url
    with provider:
        assert provider.base_url.startswith("http://127.0.0.1:")
        assert provider.openai_base_url == provider.base_url + "/v1"
        assert provider.anthropic_base_url == provider.base_url
        assert provider.start() is provider
        assert chat(provider).status == 200
    provider.close()
    with pytest.raises(RuntimeError):
        provider.start()
