"""agentcost.adapters' SDK-free parts: prompt estimates, money read from peers, attribution headers and baggage."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import ClassVar
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

import agentcost
from agentcost.adapters import (
    GatewayHeaders,
    baggage_header,
    estimate_tokens,
    extra_field,
    money_from_json,
    wrap_client,
)


def test_estimate_counts_prompt_text_and_leaves_out_images_and_roles() -> None:
    """About four characters a token, a little per message; image data, URLs, roles and ids do not count."""
    text = [{"role": "user", "content": "x" * 400}]
    with_image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "x" * 400},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
            ],
        }
    ]
    assert 100 <= estimate_tokens(text) <= 110
    assert 100 <= estimate_tokens(with_image) <= 115
    assert estimate_tokens(None, "") == 1
    assert estimate_tokens("x" * 4000, [{"content": "y" * 4000}]) > 2000


@given(
    st.recursive(
        st.text() | st.none() | st.integers(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)
    )
)
def test_estimate_never_fails_on_json_like_input(value: object) -> None:
    """Any JSON-like request part gives a positive estimate, never an error."""
    assert estimate_tokens(value) >= 1


def test_money_from_json_keeps_the_peer_literal() -> None:
    """A JSON number arrives as a float and is read back as the decimal the peer wrote; junk is None, not an error."""
    assert money_from_json(json.loads('{"cost": 0.000123400}')["cost"]) == Decimal("0.0001234")
    assert money_from_json(0.1) == Decimal("0.1")
    assert money_from_json("2.85e-05") == Decimal("0.0000285")
    assert money_from_json(3) == Decimal(3)
    junks: list[object] = [None, True, "abc", "-1", float("nan"), float("inf"), [], "1e999"]
    for junk in junks:
        assert money_from_json(junk) is None


@given(st.decimals(min_value=0, max_value=10**6, places=9, allow_nan=False, allow_infinity=False))
def test_money_from_json_round_trips_every_short_decimal(value: Decimal) -> None:
    """For any decimal of up to 15 significant digits written as a JSON number, the same value comes back."""
    literal = format(value, "f")
    assert money_from_json(json.loads(literal)) == value


def test_extra_field_reads_undeclared_fields_without_raising() -> None:
    """Extra fields come from pydantic's store; a plain object falls back to its dict; missing is None."""

    class Pydantic2Like:
        __pydantic_extra__: ClassVar[dict[str, object]] = {"cost": 0.5}

    class Pydantic1Like:
        def __init__(self) -> None:
            self.cost = "0.25"

    assert extra_field(Pydantic2Like(), "cost") == 0.5
    assert extra_field(Pydantic1Like(), "cost") == "0.25"
    assert extra_field(Pydantic1Like(), "other") is None
    assert extra_field(None, "cost") is None


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), max_size=10))
def test_baggage_round_trips_any_attribution(entries: dict[str, str]) -> None:
    """Every member of the baggage header decodes back to the key and value it came from, in order."""
    header = baggage_header(entries)
    decoded = [tuple(unquote(part) for part in member.split("=", 1)) for member in header.split(",")] if header else []
    assert decoded == list(entries.items())[: len(decoded)]
    assert len(decoded) == len(entries)


def test_baggage_stays_within_the_w3c_limits() -> None:
    """Members that would push the header past 8192 bytes or 64 members are left out, never cut in half."""
    many = {f"k{i}": "v" for i in range(200)}
    big = {f"k{i}": "v" * 1000 for i in range(20)}
    assert baggage_header(many).count(",") == 63
    header = baggage_header(big)
    assert len(header) <= 8192
    assert all(member.endswith("v" * 1000) for member in header.split(","))


def test_gateway_headers_carry_the_context_attribution() -> None:
    """LiteLLM-style tags, spend-log metadata and customer id, and baggage, from the node's attribution."""
    with (
        agentcost.run("r", attrs={"team": "search", "user": "ana b", "feature": "a,b"}) as ctx,
        ctx.child("x") as child,
    ):
        headers = GatewayHeaders().build(child)
        only_baggage = GatewayHeaders(litellm=False).build(child)
    assert headers["x-litellm-tags"] == "team:search,user:ana b,feature:a%2Cb"
    metadata = json.loads(headers["x-litellm-spend-logs-metadata"])
    assert metadata["agentcost_node"] == agentcost.format_span_id(child.span.id)
    assert metadata["agentcost_root"] == agentcost.format_span_id(ctx.span.id)
    assert headers["x-litellm-customer-id"] == "ana%20b"
    assert "agentcost.node=" in headers["baggage"]
    assert set(only_baggage) == {"baggage"}


def test_wrap_client_refuses_what_is_not_a_stainless_client() -> None:
    """Anything without the SDK's request method and HTTP client is refused with a clear TypeError."""
    with agentcost.run("r") as ctx, pytest.raises(TypeError, match="Stainless"):
        wrap_client(object(), ctx, {}, provider=None)
