"""Cost across boundaries: delegate work to another process or service, and graft the cost it reports.

The caller opens a node for the remote call, sends a signed context (attribution, and a budget never wider than what
it has left), and grafts the callee's final report under that node::

    delegation = agentcost.remote.delegate(ctx, "search-agent", keyring=keyring, budget=DelegatedBudget(cost=...))
    response = client.post(url, headers={CONTEXT_HEADER: delegation.token})
    delegation.receive(extract(response.headers, REPORT_HEADER), verifier)

The callee runs its work in a run opened from the context it accepted, and reports back::

    inbound = accept_context(extract(request.headers), verifier)  # None if absent or invalid
    with agentcost.remote.serve(inbound, "search-agent") as served:
        served.ctx.record_llm(...)
    response.headers[REPORT_HEADER] = served.report(keyring)

Running reports (``final=False``) replace one another (the highest ``seq`` wins) and are shown on the delegation,
not in the tree; the final report is grafted exactly once, its spans under the delegation's node with cost source
``remote``. Its total counts against the caller's budgets once: the hold made for the delegated budget is settled
with it. When caller and callee share a ``BudgetStore``, pass ``shared_store=True``: the callee charges the store for
its own calls, and the caller's side never touches the store for this delegation, so store totals count the spend
once while both trees show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import TracebackType
from typing import Literal

from agentcost._budget import Budget, BudgetEvent, Reservation
from agentcost._context import CostContext, run
from agentcost._errors import BudgetExceeded
from agentcost._money import ZERO
from agentcost._span import REPLACEABLE_ATTRS, Span, new_span_id
from agentcost._store import BudgetStore
from agentcost._tree import CostTree
from agentcost._usage import Usage
from agentcost.wire import (
    DEFAULT_TTL_MS,
    DelegatedBudget,
    Keyring,
    Verifier,
    WireContext,
    WireReport,
    WireTotals,
    WireWrongAudience,
    encode_context,
    encode_report,
    narrow,
    tighter,
)

__all__ = ["Delegation", "Served", "delegate", "serve"]


class Delegation:
    """A remote call made from a node: the node its cost lands on, the signed context to send, what came back."""

    __slots__ = ("_hold", "_settled", "audience", "context", "ctx", "final", "running", "token")

    ctx: CostContext
    """The child node the remote work hangs under (its reports name it)."""
    context: WireContext
    """The context sent, with the budget as narrowed."""
    token: str
    """The signed context: send it in the ``agentcost-context`` header, or the carrier's own field."""
    audience: str
    running: WireReport | None
    """The running report with the highest ``seq`` so far (replaced, never added up)."""
    final: WireReport | None
    """The final report, once grafted."""

    def __init__(self, ctx: CostContext, context: WireContext, token: str, hold: Reservation | None) -> None:
        self.ctx = ctx
        self.context = context
        self.token = token
        self.audience = context.aud
        self._hold = hold
        self._settled = False
        self.running = None
        self.final = None

    def receive(self, report: object, verifier: Verifier | None = None) -> WireReport | None:
        """Take a report from the callee: a token (checked with ``verifier``) or a verified ``WireReport``.

        A running report replaces the previous one if its ``seq`` is higher; the final one is grafted under
        :attr:`ctx` exactly once (a repeated final report is ignored). A report for another node raises
        ``WireWrongAudience``; a forged or malformed token raises its ``WireError``. Returns the report taken, or
        ``None`` when there was none.
        """
        if report is None:
            return None
        if not isinstance(report, WireReport):
            if verifier is None:
                raise TypeError("a report token needs the verifier to check it with")
            report = verifier.verify_report(report, node=self.context.parent)
        elif report.node != self.context.parent:
            raise WireWrongAudience(f"the report is for node {report.node}, not {self.context.parent}")
        if self.final is not None or self._settled:
            return report  # grafted already, or settled without a report: never twice
        if not report.final:
            if self.running is None or report.seq > self.running.seq:
                self.running = report
            return report
        self.final = report
        self.running = report
        self._graft(report)
        return report

    def record_unreported(
        self,
        name: str,
        *,
        cost: Decimal | int | str | None = None,
        status: str = "ok",
        error: str | None = None,
    ) -> None:
        """The callee knows nothing of agentcost and sent no report: record the call as one plain tool span on
        :attr:`ctx` (``cost``, else the price book's tool price, else unpriced), settling the hold with it."""
        if self.final is not None or self._settled:
            return
        self._settled = True  # settled: a late report is ignored, as after fail()
        hold = self._hold
        self.ctx.record_tool(
            name,
            cost=cost,
            status=status,
            error=error,
            reservation=hold if hold is not None and hold.state in ("held", "expired") else None,
        )
        self.ctx.end(status=None if status == "ok" else status, error=error)

    def fail(self, reason: str | BaseException) -> None:
        """No final report will come (the callee crashed, the connection dropped): the remote cost is unknown, so a
        span says so, unpriced, and the hold is charged at what it held, never zero. ``reason`` may be the error."""
        if isinstance(reason, BaseException):
            reason = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
        if self.final is not None or self._settled:
            return
        self._settled = True
        hold = self._hold
        self.ctx.record(
            "custom",
            f"remote: {self.audience}",
            status="error",
            error=reason,
            notes=("no final report: the remote cost is unknown",),
            reservation=hold if hold is not None and hold.state in ("held", "expired") else None,
        )
        self.ctx.end(status="error", error=reason)

    def _graft(self, report: WireReport) -> None:
        ctx = self.ctx
        totals = report.totals
        calls = 1
        notes: tuple[str, ...] = ("exhausted its delegated budget",) if report.exhausted else ()
        status: str | None = None
        error: str | None = None
        if report.tree is not None:
            remote = CostTree.from_dict(report.tree)
            calls = _graft_tree(ctx, remote, notes)
            if remote.root.status != "ok":  # the remote run failed: so did this node
                status, error = remote.root.status, remote.root.error
        else:
            ctx.tree._attach(
                Span(
                    new_span_id(),
                    ctx.span,
                    "custom",
                    f"remote: {self.audience}",
                    ctx.span._attrs,
                    Usage(totals.input_tokens, totals.output_tokens),
                    totals.cost,
                    "remote",
                    report.iat / 1000,
                    report.iat / 1000,
                    notes=(*notes, *((f"{totals.unpriced} remote spans unpriced",) if totals.unpriced else ())),
                )
            )
        tokens = totals.input_tokens + totals.output_tokens
        hold = self._hold
        if hold is not None and hold.state in ("held", "expired"):
            hold.commit(totals.cost, tokens=tokens, calls=calls)
        elif ctx.budgeted:
            ctx._spend(totals.cost, tokens, calls)
        ctx.end(status=status, error=error)


def _graft_tree(ctx: CostContext, remote: CostTree, notes: tuple[str, ...]) -> int:
    """Attach the remote tree's spans under ``ctx`` (its root's children directly: ``ctx`` stands for the remote
    run), with cost source ``remote``; return how many calls (leaves) it holds."""
    tree = ctx.tree
    mapped: dict[int, Span] = {remote.root.id: ctx.span}
    calls = 0
    root = remote.root
    if root.cost is None or root.cost != 0:
        # another implementation's run root may carry a cost of its own: shown as a leaf, since it is charged
        tree._attach(
            Span(
                new_span_id(),
                ctx.span,
                "custom",
                f"remote: {root.name}",
                ctx.span._attrs,
                root.usage,
                root.cost,
                None if root.cost is None else "remote",
                root.started_at,
                root.ended_at,
                notes=("the remote run's own cost",),
            )
        )
        calls += 1
    for span in remote.spans():
        if span.parent is None:
            continue
        parent = mapped[span.parent.id]
        attrs = dict(parent._attrs)
        for key, value in span._attrs.items():
            # the caller's attribution is pinned: a remote report may add keys, not move spend to another payer
            if key not in attrs or key in REPLACEABLE_ATTRS:
                attrs[key] = value
        span_id = span.id
        try:
            tree.get(span_id)
            span_id = new_span_id()  # the same process made both trees: keep ids unique in this one
        except KeyError:
            pass
        leaf = span.kind not in ("run", "agent")
        calls += leaf and not (span.status == "skipped" and span.cost == 0)  # a skip marker is not a call
        # the original source, once: a span already remote (grafted at an earlier hop) keeps its note as it is
        source_note = (f"remote, {span.cost_source}",) if span.cost_source and span.cost_source != "remote" else ()
        grafted = Span(
            span_id,
            parent,
            span.kind,
            span.name,
            attrs,
            span.usage,
            span.cost,
            "remote" if span.cost is not None and leaf else None,
            span.started_at,
            span.ended_at,
            span.model,
            span.requested_model,
            span.provider,
            span.status,
            span.error,
            (*span.notes, *source_note) if leaf else span.notes,
        )
        tree._attach(grafted)
        mapped[span.id] = grafted
    if notes:
        ctx.span.notes = (*ctx.span.notes, *notes)
    return max(calls, 1)


def delegate(
    ctx: CostContext,
    audience: str,
    *,
    keyring: Keyring,
    name: str | None = None,
    kind: Literal["agent", "tool"] = "agent",
    budget: DelegatedBudget | None = None,
    attrs: Mapping[str, str] | None = None,
    shared_store: bool = False,
    ttl_ms: int = DEFAULT_TTL_MS,
) -> Delegation:
    """Open a child node of ``ctx`` for a remote call to ``audience`` and issue the signed context to send.

    The delegated budget is ``budget`` narrowed to what ``ctx`` has left (a context never widens a budget); with no
    ``budget``, what is left. An explicit ``budget`` is also held on ``ctx``'s budgets until the final report (or
    :meth:`Delegation.fail`) settles it, so parallel delegations cannot promise the same money twice; when it does
    not fit, ``BudgetExceeded`` is raised and nothing is sent.
    """
    child = ctx.child(name or audience, kind=kind, attrs=attrs)
    left = child.remaining()  # the store's limits included, shared or not: a context never widens a budget
    if shared_store:
        child._limits = ()  # the callee charges the shared store for its own calls
    sent = narrow(budget, left.cost, left.tokens, left.calls)
    hold: Reservation | None = None
    if budget is not None and sent is not None and child.budgeted:
        # only the metrics the caller chose to delegate are held (a cost-only delegation must not lock the caller's
        # remaining calls and tokens); the others are still sent narrowed. The hold lives as long as the run's
        # holds do: the remote work may outlast the context's own expiry.
        try:
            hold = child.reserve(
                cost=sent.cost if budget.cost is not None and sent.cost is not None else ZERO,
                tokens=sent.tokens or 0 if budget.tokens is not None else 0,
                calls=sent.calls or 0 if budget.calls is not None else 0,
            )
        except BudgetExceeded as refused:
            child.end(status="skipped", error=str(refused))  # nothing is sent: the node says why
            raise
    context = WireContext.issue(
        keyring,
        root=ctx.tree.root.id,
        parent=child.span.id,
        aud=audience,
        attrs=dict(child.attrs),
        budget=sent,
        ttl_ms=ttl_ms,
    )
    return Delegation(child, context, encode_context(context, keyring), hold)


class Served:
    """Remote work done for one inbound context: its run, and the reports it sends back."""

    __slots__ = ("_seq", "context", "ctx")

    ctx: CostContext
    """The run the work records on."""
    context: WireContext | None
    """The context it serves (``None``: a caller that sent none, or an invalid one)."""

    def __init__(self, ctx: CostContext, context: WireContext | None) -> None:
        self.ctx = ctx
        self.context = context
        self._seq = 0

    def report(
        self, keyring: Keyring, *, final: bool | None = None, tree: bool = True, max_bytes: int | None = None
    ) -> str | None:
        """The signed report for the caller: running while the run is open, final once it has ended (or as
        ``final`` says); ``None`` when there is no context to report to. ``tree=False`` sends the totals only, and so
        does a report whose token with the tree would be longer than ``max_bytes`` (the carrier's limit)."""
        context = self.context
        if context is None:
            return None
        cost_tree = self.ctx.tree
        is_final = self.ctx.span.ended_at is not None if final is None else final
        totals = WireTotals.from_tree(cost_tree)
        exhausted = _exhausted(cost_tree.events)
        token = ""
        for with_tree in (True, False) if tree else (False,):
            report = WireReport.issue(
                keyring,
                node=context.parent,
                final=is_final,
                seq=self._seq,
                cost=ZERO,
                source=None,
                totals=totals,
                tree=cost_tree.to_dict() if with_tree else None,
                exhausted=exhausted,
            )
            token = encode_report(report, keyring)
            if max_bytes is None or len(token) <= max_bytes:
                break
        self._seq += 1
        return token

    def __enter__(self) -> Served:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.ctx.__exit__(exc_type, exc, traceback)


def _exhausted(events: list[BudgetEvent]) -> bool:
    return any(event.kind == "degraded" or (event.kind == "exceeded" and event.denied) for event in events)


def serve(
    context: WireContext | None,
    name: str,
    *,
    attrs: Mapping[str, str] | None = None,
    allow_override: bool = False,
    budget: Budget | None = None,
    store: BudgetStore | None = None,
) -> Served:
    """Open the run for remote work done for ``context`` (``None``: no caller context; the run is the callee's own).

    Attribution: the context's, with ``attrs`` (what this server pins) winning unless ``allow_override``. Budget:
    the delegated one, narrowed further by ``budget`` (this server's own cap) if given; never wider than either.
    """
    inbound = dict(context.attrs) if context is not None else {}
    pinned = dict(attrs or {})
    merged = {**pinned, **inbound} if allow_override else {**inbound, **pinned}
    delegated = context.budget if context is not None else None
    own = (
        DelegatedBudget(cost=budget.max_cost, tokens=budget.max_tokens, calls=budget.max_calls, hard=budget.hard)
        if budget is not None
        else None
    )
    limit = tighter(delegated, own)
    run_budget = (
        Budget(
            max_cost=limit.cost,
            max_tokens=limit.tokens,
            max_calls=limit.calls,
            hard=limit.hard,
            policy=budget.policy if budget is not None else None,
        )
        if limit is not None
        else None
    )
    ctx = run(name, attrs=merged, budget=run_budget, store=store)
    if context is not None:
        ctx.span.notes = (f"serving node {context.parent} of run {context.root}",)
    return Served(ctx, context)
