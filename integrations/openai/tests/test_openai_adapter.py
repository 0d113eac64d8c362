"""The real openai client, wrapped, against a local server answering in OpenAI's JSON and SSE shapes: every call's
recorded tokens and cost equal what the server reported, each HTTP attempt is a span, degradation reaches the wire."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import unquote

import agentcost_openai
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_none

import agentcost
from agentcost import Budget, BudgetExceeded, CostContext, DegradePolicy, Span, stop_when_unaffordable
from agentcost.testing import Exchange, Fail, FakeProvider, Reply

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France? Answer in one word."}
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.reset()
    return server


OPENED: list[OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every sync client a test opens is closed after it: an unclosed socket warns, and warnings are errors."""
    yield
    while OPENED:
        OPENED.pop().close()


def opened(client: OpenAI) -> OpenAI:
    OPENED.append(client)
    return client


def sync_client(fake: FakeProvider, max_retries: int = 2) -> OpenAI:
    return opened(OpenAI(base_url=fake.openai_base_url, api_key="test-key", max_retries=max_retries))


def async_client(fake: FakeProvider, max_retries: int = 2) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=fake.openai_base_url, api_key="test-key", max_retries=max_retries)


def leaves(ctx: CostContext) -> list[Span]:
    return [span for span in ctx.tree.spans() if span.kind not in ("run", "agent")]


def assert_matches(span: Span, exchange: Exchange, ctx: CostContext) -> None:
    """The span holds exactly the usage the server reported, priced by the run's book (or the gateway's cost)."""
    assert exchange.usage is not None
    assert span.usage == exchange.usage
    assert span.model == exchange.served_model
    if exchange.cost is not None:
        assert (span.cost, span.cost_source) == (exchange.cost, "provider")
    else:
        expected = ctx.pricing.price(span.model or "", exchange.usage, provider="openai")
        assert expected is not None
        assert (span.cost, span.cost_source) == (expected, "computed")


def call_sync(client: OpenAI, kind: str) -> None:
    if kind == "chat":
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    elif kind == "chat-stream":
        for _ in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
            pass
    elif kind == "responses":
        client.responses.create(model="gpt-4o", input="What is the capital of France?")
    elif kind == "responses-stream":
        for _ in client.responses.create(model="gpt-4o", input="What is the capital of France?", stream=True):
            pass
    else:
        client.embeddings.create(model="text-embedding-3-small", input=["the capital of France", "Paris"])


async def call_async(client: AsyncOpenAI, kind: str) -> None:
    if kind == "chat":
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    elif kind == "chat-stream":
        stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        async for _ in stream:
            pass
    elif kind == "responses":
        await client.responses.create(model="gpt-4o", input="What is the capital of France?")
    elif kind == "responses-stream":
        events = await client.responses.create(model="gpt-4o", input="What is the capital of France?", stream=True)
        async for _ in events:
            pass
    else:
        await client.embeddings.create(model="text-embedding-3-small", input=["the capital of France", "Paris"])


KINDS = ["chat", "chat-stream", "responses", "responses-stream", "embeddings"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_call_type_records_what_the_server_reported(fake: FakeProvider, kind: str) -> None:
    """Sync client: each call type is one span whose tokens and cost equal the server's ledger exactly."""
    fake.script(Reply(input_tokens=1200, output_tokens=300, cache_read_tokens=200, reasoning_tokens=40))
    with agentcost.run("t") as ctx:
        call_sync(agentcost_openai.wrap(sync_client(fake), ctx), kind)
    [span] = leaves(ctx)
    [exchange] = fake.ledger
    assert span.kind == ("embedding" if kind == "embeddings" else "llm")
    assert_matches(span, exchange, ctx)
    assert ctx.tree.total_cost == span.cost


@pytest.mark.parametrize("kind", KINDS)
def test_every_call_type_records_what_the_server_reported_async(fake: FakeProvider, kind: str) -> None:
    """Async client: the same, through AsyncOpenAI and its async streams."""
    fake.script(Reply(input_tokens=900, output_tokens=120, cache_read_tokens=100))

    async def go(ctx: CostContext) -> None:
        async with async_client(fake) as bare:
            await call_async(agentcost_openai.wrap(bare, ctx), kind)

    with agentcost.run("t") as ctx:
        asyncio.run(go(ctx))
    [span] = leaves(ctx)
    assert_matches(span, fake.ledger[0], ctx)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    input_tokens=st.integers(1, 200_000),
    output_tokens=st.integers(1, 20_000),
    cached=st.integers(0, 100),
    reasoning=st.integers(0, 100),
)
def test_streaming_and_non_streaming_cost_the_same_for_the_same_usage(
    fake: FakeProvider, input_tokens: int, output_tokens: int, cached: int, reasoning: int
) -> None:
    """For any usage, a streamed and a non-streamed call that report it record the same tokens and cost."""
    fake.reset()
    reply = Reply(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=min(cached, input_tokens),
        reasoning_tokens=min(reasoning, output_tokens),
    )
    fake.script(reply, reply, reply, reply)
    with agentcost.run("t") as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx)
        for kind in ("chat", "chat-stream", "responses", "responses-stream"):
            call_sync(client, kind)
    spans = leaves(ctx)
    assert len({span.usage for span in spans}) == 1
    assert len({span.cost for span in spans}) == 1
    for span, exchange in zip(spans, fake.ledger, strict=True):
        assert_matches(span, exchange, ctx)


def test_stream_gets_usage_injected_and_the_caller_sees_the_stream_it_asked_for(fake: FakeProvider) -> None:
    """Without include_usage, the adapter asks for it on the wire but hides the usage-only chunk from the caller."""
    with agentcost.run("t") as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx)
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        asked = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert fake.ledger[0].body["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert asked[-1].choices == []
    assert asked[-1].usage is not None
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == Reply().text
    assert [span.usage for span in leaves(ctx)] == [exchange.usage for exchange in fake.ledger]


def test_sdk_retries_are_one_span_per_attempt(fake: FakeProvider) -> None:
    """A 429 and a 500 retried by the SDK, then a success: three spans, the failures free and explained."""
    fake.script(Fail(status=429), Fail(status=500), Reply(input_tokens=100, output_tokens=10))
    with agentcost.run("t") as ctx:
        agentcost_openai.wrap(sync_client(fake), ctx).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    first, second, third = leaves(ctx)
    assert [exchange.status for exchange in fake.ledger] == [429, 500, 200]
    assert (first.status, first.error, first.cost) == ("error", "HTTP 429", Decimal(0))
    assert (second.status, second.error, second.cost) == ("error", "HTTP 500", Decimal(0))
    assert "failed before generating: HTTP 429" in first.notes
    assert third.status == "ok"
    assert_matches(third, fake.ledger[2], ctx)
    assert first.started_at <= second.started_at <= third.started_at
    assert ctx.tree.total_cost == third.cost


def test_retries_exhausted_record_every_attempt_and_settle_the_hold(fake: FakeProvider) -> None:
    """The SDK gives up after its retries: every attempt is a span and the budget is charged nothing for them."""
    fake.script(Fail(status=500), Fail(status=500), Fail(status=500))
    budget = Budget(max_cost=Decimal("1.00"))
    with agentcost.run("t", budget=budget) as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
        left = ctx.remaining()
    errors = [span.error or "" for span in leaves(ctx)]
    assert errors[:2] == ["HTTP 500", "HTTP 500"]
    assert errors[2].startswith("InternalServerError: Error code: 500")
    assert [span.cost for span in leaves(ctx)] == [Decimal(0)] * 3
    assert left.cost == Decimal("1.00")


def test_tenacity_retries_are_one_span_per_attempt(fake: FakeProvider) -> None:
    """Retrying with tenacity (and agentcost's affordability stop) around a wrapped client: a span per attempt."""
    fake.script(Fail(status=500), Reply(input_tokens=50, output_tokens=5))
    with agentcost.run("t", budget=Budget(max_cost=Decimal("0.10"))) as ctx:
        client = agentcost_openai.wrap(sync_client(fake, max_retries=0), ctx)
        affordable = stop_when_unaffordable(ctx, model="gpt-4o", input_tokens=50, max_output_tokens=64)
        stop = stop_after_attempt(3) | affordable
        for attempt in Retrying(stop=stop, wait=wait_none(), retry=retry_if_exception_type(openai.APIStatusError)):
            with attempt:
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=64)
    failed, ok = leaves(ctx)
    assert (failed.status, ok.status) == ("error", "ok")
    assert_matches(ok, fake.ledger[1], ctx)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_interrupted_stream_is_charged_for_what_was_received(fake: FakeProvider, mode: str) -> None:
    """A stream cut off mid-body raises to the caller and is recorded as an estimated error span, never dropped."""
    fake.script(Reply(text="one two three four five six seven eight", chunks=8, interrupt_after=3))
    received: list[str] = []

    async def consume_async(ctx: CostContext) -> None:
        async with async_client(fake) as bare:
            client = agentcost_openai.wrap(bare, ctx)
            stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            async for chunk in stream:  # a loop, not a comprehension: what arrived before the break must be kept
                received.append(chunk.choices[0].delta.content or "")  # noqa: PERF401

    def consume(ctx: CostContext) -> None:
        client = agentcost_openai.wrap(sync_client(fake), ctx)
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")  # noqa: PERF401

    with agentcost.run("t") as ctx, pytest.raises(openai.APIError):
        consume(ctx) if mode == "sync" else asyncio.run(consume_async(ctx))
    [span] = leaves(ctx)
    assert fake.ledger[0].interrupted
    assert (span.status, span.cost_source) == ("error", "estimated")
    assert span.usage.output_tokens == (len("".join(received)) + 3) // 4 > 0
    assert span.cost is not None
    assert span.cost > 0
    assert any("stream interrupted" in note for note in span.notes)


def test_stream_closed_early_is_charged_for_what_was_received(fake: FakeProvider) -> None:
    """A caller that stops reading and closes the stream gets a cancelled, estimated span."""
    fake.script(Reply(chunks=6))
    with agentcost.run("t") as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx)
        with client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
            next(stream)
            next(stream)
    [span] = leaves(ctx)
    assert (span.status, span.cost_source) == ("cancelled", "estimated")


def test_degradation_reaches_the_server(fake: FakeProvider) -> None:
    """Under a tight budget the swapped model and the capped max tokens are what the server receives."""
    policy = DegradePolicy(fallbacks={"gpt-4o": "gpt-4o-mini"}, min_output_tokens=256)
    # gpt-4o cannot pay even 256 output tokens ($0.00256) from $0.001; gpt-4o-mini can, capped below 4000
    with agentcost.run("t", budget=Budget(max_cost=Decimal("0.001"), policy=policy)) as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=4000)
    [exchange] = fake.ledger
    [span] = leaves(ctx)
    assert exchange.model == "gpt-4o-mini"
    assert exchange.max_tokens is not None
    assert exchange.max_tokens < 4000
    assert exchange.body["max_completion_tokens"] == exchange.max_tokens
    assert (span.model, span.requested_model, span.status) == ("gpt-4o-mini", "gpt-4o", "degraded")
    assert span.notes
    assert ctx.tree.total_cost <= Decimal("0.001")
    assert_matches(span, exchange, ctx)


def test_uncapped_request_under_a_cost_limit_gets_the_held_cap(fake: FakeProvider) -> None:
    """A request with no max tokens is sent with the cap its hold covered, so it cannot outrun the budget."""
    with agentcost.run("t", budget=Budget(max_cost=Decimal("1.00"))) as ctx:
        agentcost_openai.wrap(sync_client(fake), ctx).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert fake.ledger[0].body["max_completion_tokens"] == DegradePolicy().default_output_tokens


def test_denied_call_never_reaches_the_server(fake: FakeProvider) -> None:
    """When nothing fits, BudgetExceeded is raised before any HTTP request."""
    with agentcost.run("t", budget=Budget(max_cost=Decimal("0.000001"))) as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx)
        with pytest.raises(BudgetExceeded):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
        with pytest.raises(BudgetExceeded):
            client.embeddings.create(model="text-embedding-3-large", input="x" * 400_000)
    assert fake.ledger == []
    assert leaves(ctx) == []


def test_finish_early_policy_raises_with_its_reason(fake: FakeProvider) -> None:
    """A raw client has no answer to stand in for a call: a 'finish' decision raises, saying so, before HTTP."""
    policy = DegradePolicy(finish_early=True)
    with agentcost.run("t", budget=Budget(max_cost=Decimal("0.000001"), policy=policy)) as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx)
        with pytest.raises(BudgetExceeded) as raised:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
    assert any("finish early" in reason for reason in raised.value.reasons)
    assert fake.ledger == []


def test_gateway_routed_model_and_cost_header(fake: FakeProvider) -> None:
    """A gateway that routes to another model and reports its cost in a header: both models and that cost win."""
    fake.script(Reply(model="gpt-4.1-mini", cost_header="0.00123"))
    with agentcost.run("t") as ctx:
        agentcost_openai.wrap(sync_client(fake), ctx).chat.completions.create(model="auto", messages=MESSAGES)
    [span] = leaves(ctx)
    assert (span.model, span.requested_model) == ("gpt-4.1-mini", "auto")
    assert (span.cost, span.cost_source) == (Decimal("0.00123"), "provider")


def test_gateway_cost_in_the_body(fake: FakeProvider) -> None:
    """An OpenRouter-style usage.cost is the span's cost, exactly as the peer wrote it, streamed or not."""
    fake.script(Reply(usage_cost="0.000042"), Reply(usage_cost="0.000042"))
    with agentcost.run("t") as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx, provider=None)
        call_sync(client, "chat")
        call_sync(client, "chat-stream")
    assert [(span.cost, span.cost_source) for span in leaves(ctx)] == [(Decimal("0.000042"), "provider")] * 2


def test_malformed_gateway_cost_header_falls_back_to_the_price_book(fake: FakeProvider) -> None:
    """A cost header that is not a decimal is ignored with a note; the call is priced from its usage."""
    fake.script(Reply(cost_header="-1e999"))
    with agentcost.run("t") as ctx:
        call_sync(agentcost_openai.wrap(sync_client(fake), ctx), "chat")
    [span] = leaves(ctx)
    assert span.cost_source == "computed"
    assert any("malformed x-litellm-response-cost" in note for note in span.notes)


def test_attribution_goes_out_as_gateway_headers_and_baggage(fake: FakeProvider) -> None:
    """LiteLLM-style headers and W3C baggage carry the context's attribution; the call id is fresh per request."""
    attrs = {"team": "search", "feature": "q&a, fast", "user": "u-42", "region": "Zürich"}
    with agentcost.run("t", attrs=attrs) as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx, gateway=agentcost_openai.GatewayHeaders())
        call_sync(client, "chat")
        call_sync(client, "embeddings")
    first, second = (exchange.headers for exchange in fake.ledger)
    assert first["x-litellm-tags"].split(",") == [
        "team:search",
        "feature:q&a%2C fast",
        "user:u-42",
        "region:Z%C3%BCrich",
    ]
    metadata = json.loads(first["x-litellm-spend-logs-metadata"])
    assert metadata["team"] == "search"
    assert metadata["agentcost_node"] == agentcost.format_span_id(ctx.span.id)
    assert first["x-litellm-customer-id"] == "u-42"
    baggage = dict(member.split("=", 1) for member in first["baggage"].split(","))
    assert {key: unquote(value) for key, value in baggage.items()}["feature"] == "q&a, fast"
    assert first["x-litellm-call-id"] != second["x-litellm-call-id"]


def test_no_attribution_headers_unless_configured(fake: FakeProvider) -> None:
    """By default nothing about the caller leaves the process."""
    with agentcost.run("t", attrs={"team": "search"}) as ctx:
        call_sync(agentcost_openai.wrap(sync_client(fake), ctx), "chat")
    assert not any(name.startswith("x-litellm") or name == "baggage" for name in fake.ledger[0].headers)


def test_rebind_records_on_another_node_and_leaves_the_original_alone(fake: FakeProvider) -> None:
    """rebind() gives the same client on a sub-agent's node; the bare client and the first binding are unchanged."""
    bare = sync_client(fake)
    with agentcost.run("t") as ctx:
        client = agentcost_openai.wrap(bare, ctx, gateway=agentcost_openai.GatewayHeaders(litellm=False))
        with ctx.child("researcher") as researcher:
            sub = agentcost_openai.rebind(client, researcher)
            call_sync(sub, "chat")
        call_sync(client, "chat")
        call_sync(bare, "chat")
    assert isinstance(sub, OpenAI)
    assert isinstance(client, OpenAI)
    assert [(span.parent.name if span.parent else None) for span in leaves(ctx)] == ["researcher", "t"]
    node = agentcost.format_span_id(researcher.span.id)
    assert f"agentcost.node={node}" in fake.ledger[0].headers["baggage"]
    assert len(fake.ledger) == 3


def test_raw_response_calls_are_recorded(fake: FakeProvider) -> None:
    """with_raw_response goes through the same request path and is recorded from its parsed body."""
    fake.script(Reply(cost_header="0.5"))
    with agentcost.run("t") as ctx:
        client = agentcost_openai.wrap(sync_client(fake), ctx)
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
        assert raw.parse().choices[0].message.content == Reply().text
    [span] = leaves(ctx)
    assert span.cost == Decimal("0.5")


def test_other_endpoints_pass_through_unrecorded(fake: FakeProvider) -> None:
    """Endpoints that cost nothing per call (listing models) are not spans."""
    with agentcost.run("t") as ctx:
        client = agentcost_openai.wrap(sync_client(fake, max_retries=0), ctx)
        with pytest.raises(openai.NotFoundError):
            client.models.list()
    assert leaves(ctx) == []


def test_wrap_refuses_what_is_not_an_openai_client() -> None:
    """A clear TypeError for anything else, and for a context that is not one."""
    with agentcost.run("t") as ctx:
        with pytest.raises(TypeError, match=r"openai\.OpenAI"):
            agentcost_openai.wrap(object(), ctx)  # type: ignore[type-var]
        with pytest.raises(TypeError, match="CostContext"):
            agentcost_openai.wrap(opened(OpenAI(api_key="k", base_url="http://127.0.0.1:9")), "ctx")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="wrap"):
            agentcost_openai.rebind(opened(OpenAI(api_key="k", base_url="http://127.0.0.1:9")), ctx)


def test_connection_refused_is_an_unknown_cost_not_zero() -> None:
    """No answer at all: the attempt's cost is unknown, so under a budget it settles at the hold."""
    client = opened(OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0))
    with agentcost.run("t", budget=Budget(max_cost=Decimal("1"))) as ctx:
        with pytest.raises(openai.APIConnectionError):
            agentcost_openai.wrap(client, ctx).chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                max_tokens=100,
            )
        left = ctx.remaining().cost
    [span] = leaves(ctx)
    assert span.cost is None
    assert span.status == "error"
    assert left is not None
    assert left < Decimal("1")


def test_async_raw_response_calls_are_recorded(fake: FakeProvider) -> None:
    """with_raw_response on the async client is recorded too (its parse is awaited when it is a coroutine)."""
    fake.script(Reply(input_tokens=10, output_tokens=2))

    async def go(ctx: CostContext) -> None:
        async with async_client(fake) as bare:
            raw = await agentcost_openai.wrap(bare, ctx).chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MESSAGES
            )
            assert raw.http_response.status_code == 200

    with agentcost.run("t") as ctx:
        asyncio.run(go(ctx))
    [span] = leaves(ctx)
    assert_matches(span, fake.ledger[0], ctx)


class _MalformedUsage(http.server.BaseHTTPRequestHandler):
    """Answers every request with a chat completion whose usage a peer got wrong."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        body = json.dumps(
            {
                "id": "chatcmpl-bad",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": -5, "completion_tokens": "many", "total_tokens": 0},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_malformed_usage_from_a_peer_is_recorded_unpriced_not_dropped() -> None:
    """Negative or non-integer token counts in a response: the caller gets the response, the span is unpriced and
    says why."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MalformedUsage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        with agentcost.run("t") as ctx:
            client = agentcost_openai.wrap(opened(OpenAI(base_url=base_url, api_key="k", max_retries=0)), ctx)
            answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        server.shutdown()
        server.server_close()
    assert answer.choices[0].message.content == "hi"
    [span] = leaves(ctx)
    assert span.cost is None
    assert any(note.startswith("malformed usage in the response") for note in span.notes)
