"""The real anthropic client, wrapped, against a local server answering in Anthropic's JSON and SSE shapes: every
call's recorded tokens and cost equal what the server reported, each HTTP attempt is a span, degradation reaches the
wire."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import unquote

import agentcost_anthropic
import anthropic
import httpx2
import pytest
from anthropic import Anthropic, AsyncAnthropic
from anthropic.types import Message, MessageParam
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_none

import agentcost
from agentcost import Budget, BudgetExceeded, CostContext, DegradePolicy, Span, Usage, stop_when_unaffordable
from agentcost.testing import Exchange, Fail, FakeProvider, Reply

MODEL = "claude-sonnet-4-6"
CHEAP = "claude-haiku-4-5"
MESSAGES: list[MessageParam] = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.reset()
    return server


@pytest.fixture
def bare(fake: FakeProvider) -> Iterator[Anthropic]:
    """A plain sync client on the fake server, closed (with its connection pool) after the test."""
    with Anthropic(base_url=fake.anthropic_base_url, api_key="test-key", max_retries=2) as client:
        yield client


def async_client(fake: FakeProvider, max_retries: int = 2) -> AsyncAnthropic:
    """To be opened with ``async with`` inside the event loop, so it is closed there."""
    return AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="test-key", max_retries=max_retries)


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
        expected = ctx.pricing.price(span.model or "", exchange.usage, provider="anthropic")
        assert expected is not None
        assert (span.cost, span.cost_source) == (expected, "computed")


def text_of(message: Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def call_sync(client: Anthropic, kind: str, *, model: str = MODEL, max_tokens: int = 1024) -> str:
    """One call of ``kind``, read to its end; returns the text the caller received."""
    if kind == "create":
        return text_of(client.messages.create(model=model, max_tokens=max_tokens, messages=MESSAGES))
    if kind == "create-stream":
        events = client.messages.create(model=model, max_tokens=max_tokens, messages=MESSAGES, stream=True)
        return "".join(
            event.delta.text
            for event in events
            if event.type == "content_block_delta" and event.delta.type == "text_delta"
        )
    with client.messages.stream(model=model, max_tokens=max_tokens, messages=MESSAGES) as stream:
        if kind == "stream-final-message":
            return text_of(stream.get_final_message())
        assert kind == "stream-text"
        return "".join(stream.text_stream)


async def call_async(client: AsyncAnthropic, kind: str, *, model: str = MODEL, max_tokens: int = 1024) -> str:
    if kind == "create":
        return text_of(await client.messages.create(model=model, max_tokens=max_tokens, messages=MESSAGES))
    if kind == "create-stream":
        events = await client.messages.create(model=model, max_tokens=max_tokens, messages=MESSAGES, stream=True)
        return "".join(
            [
                event.delta.text
                async for event in events
                if event.type == "content_block_delta" and event.delta.type == "text_delta"
            ]
        )
    async with client.messages.stream(model=model, max_tokens=max_tokens, messages=MESSAGES) as stream:
        if kind == "stream-final-message":
            return text_of(await stream.get_final_message())
        assert kind == "stream-text"
        return "".join([text async for text in stream.text_stream])


KINDS = ["create", "create-stream", "stream-final-message", "stream-text"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_call_form_records_what_the_server_reported(fake: FakeProvider, bare: Anthropic, kind: str) -> None:
    """Sync client: create, create(stream=True) and messages.stream() are one span each, equal to the ledger."""
    fake.script(Reply(input_tokens=1200, output_tokens=300, cache_read_tokens=200, cache_write_tokens=100))
    with agentcost.run("t") as ctx:
        text = call_sync(agentcost_anthropic.wrap(bare, ctx), kind)
    [span] = leaves(ctx)
    [exchange] = fake.ledger
    assert text == Reply().text
    assert (span.kind, span.status) == ("llm", "ok")
    assert exchange.stream == (kind != "create")
    assert_matches(span, exchange, ctx)
    assert ctx.tree.total_cost == span.cost


@pytest.mark.parametrize("kind", KINDS)
def test_every_call_form_records_what_the_server_reported_async(fake: FakeProvider, kind: str) -> None:
    """Async client: the same, through AsyncAnthropic, its async streams and its async stream manager."""
    fake.script(Reply(input_tokens=900, output_tokens=120, cache_read_tokens=100, cache_write_tokens=50))

    async def go(ctx: CostContext) -> str:
        async with async_client(fake) as bare:
            return await call_async(agentcost_anthropic.wrap(bare, ctx), kind)

    with agentcost.run("t") as ctx:
        text = asyncio.run(go(ctx))
    [span] = leaves(ctx)
    assert text == Reply().text
    assert_matches(span, fake.ledger[0], ctx)


@pytest.mark.parametrize("kind", ["create", "create-stream", "stream-final-message"])
def test_cache_tokens_are_part_of_the_input(fake: FakeProvider, bare: Anthropic, kind: str) -> None:
    """Anthropic's input_tokens leaves cache reads and writes out; the span's input includes them, each priced."""
    fake.script(Reply(input_tokens=5000, output_tokens=200, cache_read_tokens=3000, cache_write_tokens=1000))
    with agentcost.run("t") as ctx:
        client = agentcost_anthropic.wrap(bare, ctx)
        if kind == "create":
            wire = client.messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES).usage
            assert (wire.input_tokens, wire.cache_read_input_tokens, wire.cache_creation_input_tokens) == (
                1000,
                3000,
                1000,
            )
        else:
            call_sync(client, kind)
    [span] = leaves(ctx)
    assert span.usage == Usage(5000, 200, cache_read_tokens=3000, cache_write_tokens=1000)
    assert_matches(span, fake.ledger[0], ctx)
    uncached = ctx.pricing.price(MODEL, Usage(5000, 200), provider="anthropic")
    assert uncached is not None
    assert span.cost != uncached


ONE_HOUR_CACHE = {
    "input_tokens": 100,
    "cache_creation_input_tokens": 1000,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 400},
}


def answer_with_one_hour_cache_writes(request: httpx2.Request) -> httpx2.Response:
    """Anthropic's answer where the fake provider has no knob: cache writes split between the 5-minute and 1-hour
    caches (usage.cache_creation), in a message or in a stream (where only message_start carries the split)."""
    body = json.loads(request.content)
    message = {
        "id": "msg_1h",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {**ONE_HOUR_CACHE, "output_tokens": 20},
    }
    if not body.get("stream"):
        return httpx2.Response(200, json=message)
    start = {**message, "content": [], "stop_reason": None, "usage": {**ONE_HOUR_CACHE, "output_tokens": 1}}
    final_usage = {name: ONE_HOUR_CACHE[name] for name in ("input_tokens", "cache_creation_input_tokens")}
    events: list[tuple[str, dict[str, object]]] = [
        ("message_start", {"message": start}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_stop", {"index": 0}),
        ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {**final_usage, "output_tokens": 20}}),
        ("message_stop", {}),
    ]
    sse = "".join(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n" for kind, data in events)
    return httpx2.Response(200, content=sse.encode(), headers={"content-type": "text/event-stream"})


@pytest.mark.parametrize("kind", ["create", "create-stream", "stream-final-message"])
def test_one_hour_cache_writes_are_priced_at_their_rate(kind: str) -> None:
    """usage.cache_creation.ephemeral_1h_input_tokens become the book's cache_write_1h_tokens unit: 2x input, not
    the 5-minute 1.25x."""
    transport = httpx2.MockTransport(answer_with_one_hour_cache_writes)
    with (
        Anthropic(
            base_url="http://anthropic.test", api_key="k", http_client=httpx2.Client(transport=transport)
        ) as bare,
        agentcost.run("t") as ctx,
    ):
        assert call_sync(agentcost_anthropic.wrap(bare, ctx), kind) == "Hi"
    [span] = leaves(ctx)
    assert span.usage == Usage(1100, 20, cache_write_tokens=1000, units={"cache_write_1h_tokens": 400})
    # claude-sonnet-4-6: 100 uncached at $3/M, 600 5-minute writes at $3.75/M, 400 1-hour writes at $6/M, 20 output
    assert (span.cost, span.cost_source) == (Decimal("0.00525"), "computed")
    assert span.cost == ctx.pricing.price(MODEL, span.usage, provider="anthropic")


@pytest.mark.parametrize("kind", ["create", "create-stream", "stream-final-message"])
def test_web_searches_are_priced_per_request(fake: FakeProvider, bare: Anthropic, kind: str) -> None:
    """server_tool_use.web_search_requests becomes the book's web_searches unit: $0.01 a search on top of tokens."""
    fake.script(Reply(input_tokens=2000, output_tokens=300, web_search_requests=2))
    with agentcost.run("t") as ctx:
        call_sync(agentcost_anthropic.wrap(bare, ctx), kind)
    [span] = leaves(ctx)
    [exchange] = fake.ledger
    assert span.usage == Usage(2000, 300, units={"web_searches": 2})
    assert_matches(span, exchange, ctx)  # the ledger reports the searches in the price book's unit too
    with_searches = ctx.pricing.price(MODEL, Usage(2000, 300, units={"web_searches": 2}), provider="anthropic")
    tokens_only = ctx.pricing.price(MODEL, Usage(2000, 300), provider="anthropic")
    assert with_searches is not None
    assert tokens_only is not None
    assert (span.cost, span.cost_source) == (with_searches, "computed")
    assert span.cost == tokens_only + 2 * Decimal("0.01") > tokens_only


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    uncached=st.integers(1, 200_000),
    cache_read=st.integers(0, 100_000),
    cache_write=st.integers(0, 50_000),
    output_tokens=st.integers(1, 20_000),
)
def test_streaming_and_non_streaming_cost_the_same_for_the_same_usage(
    fake: FakeProvider, bare: Anthropic, uncached: int, cache_read: int, cache_write: int, output_tokens: int
) -> None:
    """For any usage, create, create(stream=True) and messages.stream() record the same tokens and cost."""
    fake.reset()
    reply = Reply(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
    fake.script(reply, reply, reply)
    with agentcost.run("t") as ctx:
        client = agentcost_anthropic.wrap(bare, ctx)
        for kind in ("create", "create-stream", "stream-final-message"):
            call_sync(client, kind)
    spans = leaves(ctx)
    assert len(spans) == 3
    assert len({span.usage for span in spans}) == 1
    assert len({span.cost for span in spans}) == 1
    for span, exchange in zip(spans, fake.ledger, strict=True):
        assert_matches(span, exchange, ctx)


def test_sdk_retries_are_one_span_per_attempt(fake: FakeProvider, bare: Anthropic) -> None:
    """A 429 and a 500 retried by the SDK, then a success: three spans, the failures free and explained."""
    fake.script(Fail(status=429), Fail(status=500), Reply(input_tokens=100, output_tokens=10))
    with agentcost.run("t") as ctx:
        agentcost_anthropic.wrap(bare, ctx).messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES)
    first, second, third = leaves(ctx)
    assert [exchange.status for exchange in fake.ledger] == [429, 500, 200]
    assert (first.status, first.error, first.cost) == ("error", "HTTP 429", Decimal(0))
    assert (second.status, second.error, second.cost) == ("error", "HTTP 500", Decimal(0))
    assert "failed before generating: HTTP 429" in first.notes
    assert "failed before generating: HTTP 500" in second.notes
    assert third.status == "ok"
    assert_matches(third, fake.ledger[2], ctx)
    assert first.started_at <= second.started_at <= third.started_at
    assert ctx.tree.total_cost == third.cost


def test_retries_exhausted_record_every_attempt_and_settle_the_hold(fake: FakeProvider, bare: Anthropic) -> None:
    """The SDK gives up after its retries: every attempt is a span and the budget is charged nothing for them."""
    fake.script(Fail(status=500), Fail(status=500), Fail(status=500))
    budget = Budget(max_cost=Decimal("1.00"))
    with agentcost.run("t", budget=budget) as ctx:
        client = agentcost_anthropic.wrap(bare, ctx)
        with pytest.raises(anthropic.InternalServerError):
            client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
        left = ctx.remaining()
    errors = [span.error or "" for span in leaves(ctx)]
    assert errors[:2] == ["HTTP 500", "HTTP 500"]
    assert errors[2].startswith("InternalServerError: Error code: 500")
    assert [span.cost for span in leaves(ctx)] == [Decimal(0)] * 3
    assert left.cost == Decimal("1.00")


def test_tenacity_retries_are_one_span_per_attempt(fake: FakeProvider, bare: Anthropic) -> None:
    """Retrying with tenacity (and agentcost's affordability stop) around a wrapped client: a span per attempt."""
    fake.script(Fail(status=529), Reply(input_tokens=50, output_tokens=5))
    with agentcost.run("t", budget=Budget(max_cost=Decimal("0.10"))) as ctx:
        client = agentcost_anthropic.wrap(bare.with_options(max_retries=0), ctx)
        stop = stop_after_attempt(3) | stop_when_unaffordable(
            ctx, model=MODEL, provider="anthropic", input_tokens=50, max_output_tokens=64
        )
        for attempt in Retrying(stop=stop, wait=wait_none(), retry=retry_if_exception_type(anthropic.APIStatusError)):
            with attempt:
                client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    failed, ok = leaves(ctx)
    assert [exchange.status for exchange in fake.ledger] == [529, 200]
    assert (failed.status, ok.status) == ("error", "ok")
    assert (failed.error or "").startswith("OverloadedError: Error code: 529")
    assert failed.cost == 0
    assert_matches(ok, fake.ledger[1], ctx)


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("sync", "create-stream"), ("sync", "stream-text"), ("async", "create-stream"), ("async", "stream-text")],
)
def test_interrupted_stream_is_charged_for_what_was_received(
    fake: FakeProvider, bare: Anthropic, mode: str, kind: str
) -> None:
    """A stream cut off mid-body raises to the caller and is an estimated error span: input exact, never dropped."""
    fake.script(Reply(text="one two three four five six seven eight", chunks=8, interrupt_after=3, input_tokens=1234))
    received: list[str] = []

    def consume_sync(ctx: CostContext) -> None:
        client = agentcost_anthropic.wrap(bare, ctx)
        if kind == "create-stream":
            events = client.messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True)
            received.extend(  # extend keeps what arrived before the stream broke
                event.delta.text
                for event in events
                if event.type == "content_block_delta" and event.delta.type == "text_delta"
            )
        else:
            with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
                received.extend(stream.text_stream)

    async def consume_async(ctx: CostContext) -> None:
        async with async_client(fake) as plain:
            client = agentcost_anthropic.wrap(plain, ctx)
            if kind == "create-stream":
                events = await client.messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True)
                async for event in events:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        received.append(event.delta.text)  # noqa: PERF401 - keep what arrived before the break
            else:
                async with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
                    async for text in stream.text_stream:
                        received.append(text)  # noqa: PERF401 - keep what arrived before the break

    def consume(ctx: CostContext) -> None:
        if mode == "async":
            asyncio.run(consume_async(ctx))
        else:
            consume_sync(ctx)

    with agentcost.run("t") as ctx, pytest.raises(httpx2.RemoteProtocolError):
        consume(ctx)
    [span] = leaves(ctx)
    [exchange] = fake.ledger
    assert (exchange.interrupted, exchange.chunks_sent) == (True, 3)
    assert (span.status, span.cost_source, span.model) == ("error", "estimated", MODEL)
    assert (span.error or "").startswith("RemoteProtocolError")
    assert span.usage.input_tokens == 1234  # from message_start: exact
    assert span.usage.output_tokens == (len("".join(received)) + 3) // 4 > 0
    assert span.cost == ctx.pricing.price(MODEL, span.usage, provider="anthropic")
    assert span.cost is not None
    assert span.cost > 0
    assert any("stream interrupted" in note for note in span.notes)


@pytest.mark.parametrize("kind", ["create-stream", "stream-text"])
def test_stream_closed_early_is_charged_for_what_was_received(fake: FakeProvider, bare: Anthropic, kind: str) -> None:
    """A caller that stops reading and closes the stream gets a cancelled, estimated span."""
    fake.script(Reply(chunks=6, input_tokens=700))
    with agentcost.run("t") as ctx:
        client = agentcost_anthropic.wrap(bare, ctx)
        if kind == "create-stream":
            with client.messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True) as events:
                for event in events:
                    if event.type == "content_block_delta":
                        break
        else:
            with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
                next(iter(stream.text_stream))
    [span] = leaves(ctx)
    assert (span.status, span.cost_source) == ("cancelled", "estimated")
    assert span.usage.input_tokens == 700
    assert any("closed before the end" in note for note in span.notes)


@pytest.mark.parametrize("kind", ["create", "stream-final-message"])
def test_degradation_reaches_the_server(fake: FakeProvider, bare: Anthropic, kind: str) -> None:
    """Under a tight budget the swapped model and the capped max_tokens are what the server receives."""
    limit = Decimal("0.003")
    policy = DegradePolicy(fallbacks={MODEL: CHEAP}, min_output_tokens=256)
    with agentcost.run("t", budget=Budget(max_cost=limit, policy=policy)) as ctx:
        price = ctx.pricing.price
        # sonnet cannot pay even 256 output tokens; haiku can, but not the 4000 asked for: a capped haiku call
        assert (price(MODEL, Usage(0, 256), provider="anthropic") or 0) > limit
        assert (price(CHEAP, Usage(100, 256), provider="anthropic") or limit) < limit
        assert (price(CHEAP, Usage(0, 4000), provider="anthropic") or 0) > limit
        call_sync(agentcost_anthropic.wrap(bare, ctx), kind, max_tokens=4000)
    [exchange] = fake.ledger
    [span] = leaves(ctx)
    assert exchange.model == CHEAP
    assert exchange.max_tokens is not None
    assert 256 <= exchange.max_tokens < 4000
    assert exchange.body["max_tokens"] == exchange.max_tokens
    assert (span.model, span.requested_model, span.status) == (CHEAP, MODEL, "degraded")
    assert span.notes
    assert ctx.tree.total_cost <= limit
    assert_matches(span, exchange, ctx)


def test_denied_call_never_reaches_the_server(fake: FakeProvider, bare: Anthropic) -> None:
    """When nothing fits, BudgetExceeded is raised before any HTTP request, for create and for stream()."""
    with agentcost.run("t", budget=Budget(max_cost=Decimal("0.000001"))) as ctx:
        client = agentcost_anthropic.wrap(bare, ctx)
        with pytest.raises(BudgetExceeded) as raised:
            client.messages.create(model=MODEL, max_tokens=1000, messages=MESSAGES)
        with pytest.raises(BudgetExceeded):
            call_sync(client, "stream-text", max_tokens=1000)
        left = ctx.remaining().cost
    assert raised.value.reasons
    assert MODEL in raised.value.reasons[0]
    assert fake.ledger == []
    assert leaves(ctx) == []
    assert left == Decimal("0.000001")


def test_finish_early_policy_raises_with_its_reason(fake: FakeProvider, bare: Anthropic) -> None:
    """A raw client has no answer to stand in for a call: a 'finish' decision raises, saying so, before HTTP."""
    policy = DegradePolicy(finish_early=True)
    with agentcost.run("t", budget=Budget(max_cost=Decimal("0.000001"), policy=policy)) as ctx:
        client = agentcost_anthropic.wrap(bare, ctx)
        with pytest.raises(BudgetExceeded) as raised:
            client.messages.create(model=MODEL, max_tokens=1000, messages=MESSAGES)
    assert any("finish early" in reason for reason in raised.value.reasons)
    assert fake.ledger == []


@pytest.mark.parametrize("kind", ["create", "create-stream"])
def test_gateway_routed_model_and_cost_header(fake: FakeProvider, bare: Anthropic, kind: str) -> None:
    """A gateway that routes to another model and reports its cost in a header: both models and that cost win."""
    fake.script(Reply(model=CHEAP, cost_header="0.0042"))
    with agentcost.run("t") as ctx:
        call_sync(agentcost_anthropic.wrap(bare, ctx), kind)
    [span] = leaves(ctx)
    assert fake.ledger[0].model == MODEL
    assert (span.model, span.requested_model) == (CHEAP, MODEL)
    assert (span.cost, span.cost_source) == (Decimal("0.0042"), "provider")


def test_gateway_cost_in_the_body(fake: FakeProvider, bare: Anthropic) -> None:
    """A usage.cost in the body is the span's cost, exactly as the peer wrote it, streamed or not."""
    fake.script(*[Reply(usage_cost="0.000042")] * 3)
    with agentcost.run("t") as ctx:
        client = agentcost_anthropic.wrap(bare, ctx, provider=None)
        for kind in ("create", "create-stream", "stream-final-message"):
            call_sync(client, kind)
    assert [(span.cost, span.cost_source) for span in leaves(ctx)] == [(Decimal("0.000042"), "provider")] * 3


def test_malformed_gateway_cost_header_falls_back_to_the_price_book(fake: FakeProvider, bare: Anthropic) -> None:
    """A cost header that is not a decimal is ignored with a note; the call is priced from its usage."""
    fake.script(Reply(cost_header="-1e999"))
    with agentcost.run("t") as ctx:
        call_sync(agentcost_anthropic.wrap(bare, ctx), "create")
    [span] = leaves(ctx)
    assert span.cost_source == "computed"
    assert span.cost == ctx.pricing.price(MODEL, span.usage, provider="anthropic")
    assert any("malformed x-litellm-response-cost" in note for note in span.notes)


def test_attribution_goes_out_as_gateway_headers_and_baggage(fake: FakeProvider, bare: Anthropic) -> None:
    """LiteLLM-style headers and W3C baggage carry the context's attribution; the call id is fresh per request."""
    attrs = {"team": "search", "feature": "q&a, fast", "user": "u-42"}
    with agentcost.run("t", attrs=attrs) as ctx:
        client = agentcost_anthropic.wrap(bare, ctx, gateway=agentcost_anthropic.GatewayHeaders())
        call_sync(client, "create")
        call_sync(client, "stream-text")
    first, second = (exchange.headers for exchange in fake.ledger)
    assert first["x-litellm-tags"].split(",") == ["team:search", "feature:q&a%2C fast", "user:u-42"]
    metadata = json.loads(first["x-litellm-spend-logs-metadata"])
    assert (metadata["team"], metadata["agentcost_node"]) == ("search", agentcost.format_span_id(ctx.span.id))
    assert first["x-litellm-customer-id"] == "u-42"
    baggage = dict(member.split("=", 1) for member in first["baggage"].split(","))
    assert {key: unquote(value) for key, value in baggage.items()}["feature"] == "q&a, fast"
    assert second["x-litellm-tags"] == first["x-litellm-tags"]
    assert first["x-litellm-call-id"] != second["x-litellm-call-id"]


def test_no_attribution_headers_unless_configured(fake: FakeProvider, bare: Anthropic) -> None:
    """By default nothing about the caller leaves the process."""
    with agentcost.run("t", attrs={"team": "search"}) as ctx:
        call_sync(agentcost_anthropic.wrap(bare, ctx), "create")
    assert not any(name.startswith("x-litellm") or name == "baggage" for name in fake.ledger[0].headers)


def test_rebind_records_on_another_node_and_leaves_the_original_alone(fake: FakeProvider, bare: Anthropic) -> None:
    """rebind() gives the same client on a sub-agent's node; the bare client and the first binding are unchanged."""
    with agentcost.run("t") as ctx:
        client = agentcost_anthropic.wrap(bare, ctx, gateway=agentcost_anthropic.GatewayHeaders(litellm=False))
        with ctx.child("researcher") as researcher:
            sub = agentcost_anthropic.rebind(client, researcher)
            call_sync(sub, "create")
        call_sync(client, "stream-text")
        call_sync(bare, "create")
    assert isinstance(sub, Anthropic)
    assert isinstance(client, Anthropic)
    assert [(span.parent.name if span.parent else None) for span in leaves(ctx)] == ["researcher", "t"]
    assert researcher.tree.find(name="researcher")[0].total_cost == leaves(ctx)[0].cost
    node = agentcost.format_span_id(researcher.span.id)
    assert f"agentcost.node={node}" in fake.ledger[0].headers["baggage"]
    assert "baggage" not in fake.ledger[2].headers
    assert len(fake.ledger) == 3


def test_raw_response_calls_are_recorded(fake: FakeProvider, bare: Anthropic) -> None:
    """with_raw_response goes through the same request path and is recorded from its parsed body."""
    fake.script(Reply(cost_header="0.5"))
    with agentcost.run("t") as ctx:
        client = agentcost_anthropic.wrap(bare, ctx)
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=1024, messages=MESSAGES)
        assert text_of(raw.parse()) == Reply().text
    [span] = leaves(ctx)
    assert span.cost == Decimal("0.5")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_raw_response_streams_are_recorded_from_the_stream(fake: FakeProvider, bare: Anthropic, mode: str) -> None:
    """with_raw_response.create(stream=True): the stream the caller parses is watched and priced like any stream."""
    fake.script(Reply(input_tokens=1000, output_tokens=100))

    async def consume_async(ctx: CostContext) -> list[str]:
        async with async_client(fake) as plain:
            client = agentcost_anthropic.wrap(plain, ctx)
            raw = await client.messages.with_raw_response.create(
                model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True
            )
            return [event.type async for event in await raw.parse()]

    with agentcost.run("t") as ctx:
        if mode == "async":
            types = asyncio.run(consume_async(ctx))
        else:
            client = agentcost_anthropic.wrap(bare, ctx)
            raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True)
            types = [event.type for event in raw.parse()]
    assert types[-1] == "message_stop"
    [span] = leaves(ctx)
    assert span.usage == fake.ledger[0].usage
    assert_matches(span, fake.ledger[0], ctx)


def test_async_raw_response_is_returned_and_recorded(fake: FakeProvider) -> None:
    """AsyncAnthropic with_raw_response: the caller gets the raw response, and the call is recorded from its body."""
    fake.script(Reply(input_tokens=400, output_tokens=40))

    async def go(ctx: CostContext) -> bool:
        async with async_client(fake) as bare:
            client = agentcost_anthropic.wrap(bare, ctx)
            raw: object = await client.messages.with_raw_response.create(
                model=MODEL, max_tokens=1024, messages=MESSAGES
            )
            if inspect.iscoroutine(raw):
                raw.close()  # the failure is the assertion below, not a never-awaited warning
                return False
            assert isinstance(raw, anthropic.AsyncAPIResponse)
            message = await raw.parse()
            assert isinstance(message, Message)
            assert text_of(message) == Reply().text
            return True

    with agentcost.run("t") as ctx:
        got_the_response = asyncio.run(go(ctx))
    assert got_the_response, (
        "agentcost/adapters.py _intercept_async returned a coroutine in place of the AsyncAPIResponse (the raw "
        "response must be parsed, awaited, and recorded there, and handed back as it is)"
    )
    [span] = leaves(ctx)
    assert_matches(span, fake.ledger[0], ctx)


def test_beta_messages_are_recorded_too(fake: FakeProvider, bare: Anthropic) -> None:
    """client.beta.messages posts to the same endpoint: admitted and recorded like client.messages."""
    fake.script(Reply(input_tokens=300, output_tokens=30))
    with agentcost.run("t") as ctx:
        client = agentcost_anthropic.wrap(bare, ctx)
        client.beta.messages.create(model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": "Hi"}])
    [span] = leaves(ctx)
    assert_matches(span, fake.ledger[0], ctx)


def test_count_tokens_passes_through_unrecorded(fake: FakeProvider, bare: Anthropic) -> None:
    """messages.count_tokens is not a priced call: neither admitted against the budget nor recorded."""
    with agentcost.run("t", budget=Budget(max_cost=Decimal("0.000001"))) as ctx:
        client = agentcost_anthropic.wrap(bare.with_options(max_retries=0), ctx)
        # the fake has no count_tokens route: its 404 proves the request went out, not refused by the budget
        with pytest.raises(anthropic.NotFoundError, match="count_tokens"):
            client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert leaves(ctx) == []
    assert fake.ledger == []


def test_wrap_refuses_what_is_not_an_anthropic_client(bare: Anthropic) -> None:
    """A clear TypeError for anything else, for a context that is not one, and for rebind of an unwrapped client."""
    with agentcost.run("t") as ctx:
        with pytest.raises(TypeError, match=r"anthropic\.Anthropic"):
            agentcost_anthropic.wrap(object(), ctx)  # type: ignore[type-var]
        with pytest.raises(TypeError, match="CostContext"):
            agentcost_anthropic.wrap(bare, "ctx")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="wrap"):
            agentcost_anthropic.rebind(bare, ctx)


def test_connection_refused_is_an_unknown_cost_not_zero() -> None:
    """No answer at all: the attempt's cost is unknown, so under a budget it settles at the hold."""
    with (
        Anthropic(api_key="k", base_url="http://127.0.0.1:9", max_retries=0) as bare,
        agentcost.run("t", budget=Budget(max_cost=Decimal("1"))) as ctx,
    ):
        with pytest.raises(anthropic.APIConnectionError):
            agentcost_anthropic.wrap(bare, ctx).messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
        left = ctx.remaining().cost
    [span] = leaves(ctx)
    assert (span.cost, span.status) == (None, "error")
    assert left is not None
    assert left < Decimal("1")
