"""The extension itself: its URI, its agent card entry, and where its tokens travel in A2A messages and events."""

from __future__ import annotations

from typing import Any, Final

from a2a.types import AgentExtension, Message, Task, TaskStatusUpdateEvent

EXTENSION_URI: Final = "https://agentcost.dev/a2a/cost/v1"
"""The extension's URI: declared in the agent card, sent in the ``A2A-Extensions`` header to activate it, and the
metadata key whose value is the signed context (in the request ``Message.metadata``) or the signed report (in the
terminal ``TaskStatusUpdateEvent.metadata``, the ``Task.metadata`` it is merged into, and the final message's
``metadata``)."""

DEFAULT_MAX_REPORT_BYTES: Final = 262_144
"""A report token with the tree larger than this is sent with the totals only (the caller's verifier must accept
tokens of this size: ``Verifier(..., max_bytes=262_144)``)."""


def extension(*, required: bool = False, description: str | None = None) -> AgentExtension:
    """The ``AgentExtension`` to list in the agent card's ``capabilities.extensions``: optional by default, so
    clients that know nothing of agentcost keep working."""
    return AgentExtension(
        uri=EXTENSION_URI,
        description=description
        or "agentcost: a signed cost context (attribution, delegated budget) in the request message's metadata, and "
        "a signed cost report in the terminal status update's and final message's metadata, keyed by this URI.",
        required=required,
    )


def _value(metadata: Any) -> object | None:  # a protobuf Struct (its stubs are not installed)
    if EXTENSION_URI not in metadata.fields:
        return None
    value: object = metadata[EXTENSION_URI]
    return value


def context_token(message: Message | None) -> object | None:
    """The context token in a request message's metadata (``None`` when absent). Any value is returned as sent:
    the verifier rejects a value that is not a token as malformed."""
    if message is None:
        return None
    return _value(message.metadata)


def report_token(event: Message | Task | TaskStatusUpdateEvent) -> object | None:
    """The report token an event carries (``None`` when none): the final message's metadata first, then the status
    update's (or the task's) own metadata."""
    if isinstance(event, Message):
        return _value(event.metadata)
    if event.status.HasField("message"):
        found = _value(event.status.message.metadata)
        if found is not None:
            return found
    return _value(event.metadata)


def attach_report(event: Message | Task | TaskStatusUpdateEvent, token: str) -> None:
    """Put ``token`` in ``event``'s metadata under :data:`EXTENSION_URI`, and in its status message's, if any."""
    if isinstance(event, Message):
        event.metadata[EXTENSION_URI] = token
        return
    event.metadata[EXTENSION_URI] = token
    if event.status.HasField("message"):
        event.status.message.metadata[EXTENSION_URI] = token
