"""The client side: a tool call sends a signed context in ``_meta`` and grafts the report that comes back."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, cast

from mcp import Client, ClientSession
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import CallToolResult, RequestParamsMeta

from agentcost import CostContext
from agentcost.remote import Delegation, delegate
from agentcost.wire import DEFAULT_TTL_MS, DelegatedBudget, Keyring, Verifier, WireError
from agentcost_mcp._server import CONTEXT_META_KEY, REPORT_META_KEY


async def call_tool(
    session: ClientSession | Client,
    ctx: CostContext,
    name: str,
    arguments: dict[str, Any] | None = None,
    *,
    keyring: Keyring,
    verifier: Verifier,
    audience: str,
    budget: DelegatedBudget | None = None,
    attrs: Mapping[str, str] | None = None,
    shared_store: bool = False,
    cost: Decimal | int | str | None = None,
    ttl_ms: int = DEFAULT_TTL_MS,
    meta: RequestParamsMeta | None = None,
    read_timeout_seconds: float | None = None,
    progress_callback: ProgressFnT | None = None,
) -> CallToolResult:
    """Call the tool ``name`` through ``session`` (a ``ClientSession`` or a ``Client``) as a tool node of ``ctx``.

    A context for ``audience`` (the server's name, as its verifier expects it), signed with ``keyring`` and carrying
    ``budget`` narrowed to what ``ctx`` has left, goes in the request's ``_meta``; the final report in the result's
    ``_meta`` is checked with ``verifier`` and grafted under the node (cost source ``remote``). A server that sends
    no report (one that knows nothing of agentcost) gets a plain tool span under the node, priced at ``cost``, or
    the price book's tool price, or unknown. A report that fails verification (forged, tampered, for another node,
    too large for ``verifier.max_bytes``) is counted in ``verifier.rejected`` and the node's cost is recorded as
    unknown; the call's result is returned all the same. When the call itself raises, the node's cost is recorded
    as unknown and the exception propagates. An explicit ``budget`` that does not fit what ``ctx`` has left raises
    ``BudgetExceeded`` before anything is sent. Returns the SDK's ``CallToolResult`` unchanged.
    """
    delegation = delegate(
        ctx,
        audience,
        keyring=keyring,
        name=name,
        kind="tool",
        budget=budget,
        attrs=attrs,
        shared_store=shared_store,
        ttl_ms=ttl_ms,
    )
    sent = cast(RequestParamsMeta, {**(meta or {}), CONTEXT_META_KEY: delegation.token})  # an open map: any key
    try:
        result = await session.call_tool(
            name, arguments, read_timeout_seconds=read_timeout_seconds, progress_callback=progress_callback, meta=sent
        )
    except BaseException as error:
        delegation.fail(error)
        raise
    graft(delegation, result, verifier, name=name, cost=cost)
    return result


def graft(
    delegation: Delegation,
    result: CallToolResult,
    verifier: Verifier,
    *,
    name: str,
    cost: Decimal | int | str | None = None,
) -> None:
    """Settle ``delegation`` with what ``result`` says: graft its report, or, without one, record a plain tool span
    (``cost``, or the price book's tool price, or unknown); a report that fails verification records the cost as
    unknown. For callers that send the request themselves (``delegation.token`` under :data:`CONTEXT_META_KEY`)."""
    error = _error_text(result) if result.is_error else None
    token = (result.meta or {}).get(REPORT_META_KEY)
    if token is None:
        delegation.record_unreported(name, cost=cost, status="error" if result.is_error else "ok", error=error)
        return
    if result.is_error:
        delegation.ctx.end(status="error", error=error)  # the first end wins: the graft's own end keeps this status
    try:
        received = delegation.receive(token, verifier)  # any value: a non-token is rejected as malformed
    except WireError as rejected:
        delegation.fail(f"invalid cost report ({rejected.reason}): {rejected}")
        return
    if received is None or not received.final:
        delegation.fail("the result carried no final cost report")


def _error_text(result: CallToolResult) -> str:
    for block in result.content:
        text = getattr(block, "text", None)
        if isinstance(text, str) and text:
            return text[:200]
    return "tool error"
