"""The client side: a message sends a signed context in its metadata, and the report that comes back is grafted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from a2a.client import Client, ClientCallContext
from a2a.client.service_parameters import ServiceParametersFactory, with_a2a_extensions
from a2a.helpers import get_message_text
from a2a.types import (
    Message,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
    TaskStatusUpdateEvent,
)

from agentcost import CostContext
from agentcost.remote import Delegation, delegate
from agentcost.wire import DEFAULT_TTL_MS, DelegatedBudget, Keyring, Verifier, WireError
from agentcost_a2a._extension import EXTENSION_URI, report_token

_FAILED = frozenset((TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED))


async def send_message(
    client: Client,
    ctx: CostContext,
    message: Message,
    *,
    keyring: Keyring,
    verifier: Verifier,
    audience: str,
    name: str | None = None,
    budget: DelegatedBudget | None = None,
    attrs: Mapping[str, str] | None = None,
    shared_store: bool = False,
    cost: Decimal | int | str | None = None,
    ttl_ms: int = DEFAULT_TTL_MS,
    configuration: SendMessageConfiguration | None = None,
    call_context: ClientCallContext | None = None,
) -> list[StreamResponse]:
    """Send ``message`` through ``client`` (the SDK's ``Client``) as an agent node of ``ctx``; return the events.

    A context for ``audience`` (the agent's name, as its verifier expects it), signed with ``keyring`` and carrying
    ``budget`` narrowed to what ``ctx`` has left, goes in a copy of the message's metadata under
    :data:`EXTENSION_URI`; the extension is activated with the ``A2A-Extensions`` header (and listed in the
    message's ``extensions``). Every event of the response is consumed (streaming or not, as the client is
    configured; a non-blocking ``return_immediately`` send has no final report yet) and returned in order. The final
    report found in the last event that carries one is checked with ``verifier`` and grafted under the node (cost
    source ``remote``). An agent that sends no report (one that knows nothing of agentcost) gets a plain tool span
    under the node, priced at ``cost``, or the price book's tool price, or unknown. A report that fails verification
    (forged, tampered, for another node, too large for ``verifier.max_bytes``) is counted in ``verifier.rejected`` and
    the node's cost is recorded as unknown; the events are returned all the same. When sending raises, the node's
    cost is recorded as unknown and the exception propagates. An explicit ``budget`` that does not fit what ``ctx``
    has left raises ``BudgetExceeded`` before anything is sent.
    """
    label = name or audience
    delegation = delegate(
        ctx,
        audience,
        keyring=keyring,
        name=label,
        kind="agent",
        budget=budget,
        attrs=attrs,
        shared_store=shared_store,
        ttl_ms=ttl_ms,
    )
    sent = Message()
    sent.CopyFrom(message)
    sent.metadata[EXTENSION_URI] = delegation.token
    if EXTENSION_URI not in sent.extensions:
        sent.extensions.append(EXTENSION_URI)
    call = call_context.model_copy() if call_context is not None else ClientCallContext()
    call.service_parameters = ServiceParametersFactory.create_from(
        call.service_parameters, [with_a2a_extensions([EXTENSION_URI])]
    )
    request = SendMessageRequest(message=sent, configuration=configuration)
    try:
        events = [event async for event in client.send_message(request, context=call)]
    except BaseException as error:
        delegation.fail(error)
        raise
    graft(delegation, events, verifier, name=label, cost=cost)
    return events


def graft(
    delegation: Delegation,
    events: Sequence[StreamResponse],
    verifier: Verifier,
    *,
    name: str,
    cost: Decimal | int | str | None = None,
) -> None:
    """Settle ``delegation`` with what ``events`` say: graft the report of the last event carrying one, or, without
    one, record a plain tool span (``cost``, or the price book's tool price, or unknown); a report that fails
    verification records the cost as unknown. For callers that send the message themselves (``delegation.token``
    under :data:`EXTENSION_URI` in the message's metadata)."""
    token: object | None = None
    error: str | None = None
    for event in reversed(events):
        found = _report_and_failure(event)
        if found is None:
            continue
        event_token, failure = found
        if error is None and failure is not None:
            error = failure
        if event_token is not None:
            token = event_token
            break
    if token is None:
        delegation.record_unreported(name, cost=cost, status="error" if error else "ok", error=error)
        return
    if error is not None:
        delegation.ctx.end(status="error", error=error)  # the first end wins: the graft's own end keeps this status
    try:
        received = delegation.receive(token, verifier)  # any value: rejected as malformed
    except WireError as rejected:
        delegation.fail(f"invalid cost report ({rejected.reason}): {rejected}")
        return
    if received is None or not received.final:
        delegation.fail("the response carried no final cost report")


def _report_and_failure(event: StreamResponse) -> tuple[object | None, str | None] | None:
    """The report token an event carries, and the failure it tells of; ``None`` for an event that carries neither a
    message nor a status."""
    if event.HasField("message"):
        return report_token(event.message), None
    carrier: Task | TaskStatusUpdateEvent
    if event.HasField("task"):
        carrier = event.task
    elif event.HasField("status_update"):
        carrier = event.status_update
    else:
        return None
    failure = None
    if carrier.status.state in _FAILED:
        text = get_message_text(carrier.status.message) if carrier.status.HasField("message") else ""
        failure = text[:200] or "agent " + TaskState.Name(carrier.status.state).removeprefix("TASK_STATE_").lower()
    return report_token(carrier), failure
