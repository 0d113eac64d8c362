"""The server side: the agent runs in a cost run opened from the request message's metadata, and its terminal event
carries the report back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final

from a2a.helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import Event, EventQueue
from a2a.types import (
    InvalidParamsError,
    Message,
    Role,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from agentcost import Budget, BudgetExceeded, BudgetStore, CostContext
from agentcost.remote import serve
from agentcost.wire import Keyring, Verifier, WireContext, WireError, accept_context
from agentcost_a2a._extension import DEFAULT_MAX_REPORT_BYTES, attach_report, context_token

logger = logging.getLogger("agentcost_a2a")

_STATE_KEY: Final = "agentcost_a2a.runs"
_ENDS: Final = frozenset(
    (
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_INPUT_REQUIRED,
        TaskState.TASK_STATE_AUTH_REQUIRED,
    )
)
_RUN_STATUS: Final = {
    TaskState.TASK_STATE_FAILED: "error",
    TaskState.TASK_STATE_REJECTED: "error",
    TaskState.TASK_STATE_CANCELED: "cancelled",
}


def cost_context(request_context: RequestContext) -> CostContext:
    """The cost run a :class:`CostAwareExecutor` opened for this request: call it from the wrapped executor's
    ``execute``. Raises ``LookupError`` outside a ``CostAwareExecutor``."""
    runs = request_context.call_context.state.get(_STATE_KEY)
    if not isinstance(runs, dict) or request_context.task_id not in runs:
        raise LookupError("no agentcost run for this request: wrap the executor in agentcost_a2a.CostAwareExecutor")
    ctx: CostContext = runs[request_context.task_id]
    return ctx


class _ReportingQueue(EventQueue):
    """The queue the wrapped executor sees: events pass through, except the one that ends this execution (a
    ``Message``, or a task or status update in a terminal or interrupted state), held until the report is ready."""

    def __init__(self, queue: EventQueue) -> None:
        self._queue = queue
        self.held: Message | Task | TaskStatusUpdateEvent | None = None
        self.task_seen = False

    async def enqueue_event(self, event: Event) -> None:
        if isinstance(event, Task | TaskStatusUpdateEvent):
            self.task_seen = True
        if self.held is None and (
            isinstance(event, Message)
            or (isinstance(event, Task | TaskStatusUpdateEvent) and event.status.state in _ENDS)
        ):
            self.held = event
            return
        await self._queue.enqueue_event(event)

    def run_status(self) -> str | None:
        held = self.held
        if held is None or isinstance(held, Message):
            return None
        return _RUN_STATUS.get(held.status.state)

    async def flush(self, token: str | None) -> None:
        held, self.held = self.held, None
        if held is None:
            return
        if token is not None:
            attach_report(held, token)
        await self._queue.enqueue_event(held)


class CostAwareExecutor(AgentExecutor):
    """An ``AgentExecutor`` that runs ``inner`` in a cost run and reports its cost back to the caller::

        executor = CostAwareExecutor(MyAgent(), keyring=keyring, verifier=verifier, name="search-agent")
        handler = DefaultRequestHandler(agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card)

    Each request runs in a cost run named ``name``, opened with :func:`agentcost.remote.serve` from the context in
    the request message's metadata under :data:`EXTENSION_URI` (read whenever present, whether or not the client
    listed the extension in its ``A2A-Extensions`` header): the caller's attribution (``attrs``, what this agent
    pins, wins unless ``allow_override``) and its delegated budget, narrowed by ``budget`` (this agent's own cap).
    ``inner`` finds the run with :func:`cost_context`. The event that ends the execution (a ``Message``, or a
    task or status update in a terminal or interrupted state) is held until ``inner`` returns; then the run ends and
    the signed final report goes in that event's metadata and in its status message's metadata.

    A request without a context, or with one ``verifier`` rejects (counted in ``verifier.rejected``), runs as the
    agent's own run and gets no report; with ``refuse=True`` an invalid context is refused with the SDK's
    ``InvalidParamsError`` and ``inner`` does not run. An uncaught ``BudgetExceeded`` fails the task with the text
    ``skipped: budget (...)``; another exception fails it with ``agent error`` (its text stays in the server's log)
    and a report when there is a caller to report to, and propagates to the SDK as before when there is none.
    """

    def __init__(
        self,
        inner: AgentExecutor,
        *,
        keyring: Keyring,
        verifier: Verifier,
        name: str,
        attrs: Mapping[str, str] | None = None,
        allow_override: bool = False,
        budget: Budget | None = None,
        store: BudgetStore | None = None,
        refuse: bool = False,
        tree: bool = True,
        max_report_bytes: int = DEFAULT_MAX_REPORT_BYTES,
    ) -> None:
        self.inner = inner
        self.keyring = keyring
        self.verifier = verifier
        self.name = name
        self.attrs = dict(attrs or {})
        self.allow_override = allow_override
        self.budget = budget
        self.store = store
        self.refuse = refuse
        self.tree = tree
        self.max_report_bytes = max_report_bytes

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Run ``inner.execute`` in the request's cost run; send its report with the event that ends it."""
        try:
            inbound: WireContext | None = accept_context(
                context_token(context.message),  # any value: rejected as malformed
                self.verifier,
                refuse=self.refuse,
            )
        except WireError as error:
            raise InvalidParamsError(message=f"agentcost context refused ({error.reason}): {error}") from error
        served = serve(
            inbound,
            self.name,
            attrs=self.attrs,
            allow_override=self.allow_override,
            budget=self.budget,
            store=self.store,
        )
        runs: dict[str | None, CostContext] = context.call_context.state.setdefault(_STATE_KEY, {})
        runs[context.task_id] = served.ctx
        queue = _ReportingQueue(event_queue)
        failure: str | None = None
        try:
            await self.inner.execute(context, queue)
            served.ctx.end(status=queue.run_status())
        except BudgetExceeded as error:
            served.__exit__(type(error), error, error.__traceback__)
            failure = f"skipped: budget ({error})"
        except asyncio.CancelledError as error:
            served.__exit__(type(error), error, error.__traceback__)
            raise
        except Exception as error:
            served.__exit__(type(error), error, error.__traceback__)
            if inbound is None and queue.held is None:
                raise  # no caller to report to: the SDK fails the task as it would without the wrapper
            logger.exception("Agent %r raised an unexpected exception", self.name)
            failure = "agent error"
        finally:
            runs.pop(context.task_id, None)
        if failure is not None and queue.held is None:
            queue.held = _failed(context, failure, task_exists=queue.task_seen or context.current_task is not None)
        await queue.flush(served.report(self.keyring, tree=self.tree, max_bytes=self.max_report_bytes))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancel through ``inner``."""
        await self.inner.cancel(context, event_queue)


def _failed(context: RequestContext, text: str, *, task_exists: bool) -> Task | TaskStatusUpdateEvent:
    task_id, context_id = context.task_id or "", context.context_id or ""
    status = TaskStatus(
        state=TaskState.TASK_STATE_FAILED,
        message=new_text_message(text, context_id=context_id, task_id=task_id, role=Role.ROLE_AGENT),
    )
    if task_exists:
        return TaskStatusUpdateEvent(task_id=task_id, context_id=context_id, status=status)
    return Task(id=task_id, context_id=context_id, status=status)
