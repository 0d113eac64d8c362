"""The FinOps half of ``agentcost demo``: thirty days of a three-team agent workload written to a ledger.

Every LLM call goes through the real openai and anthropic SDK clients wrapped by agentcost, against
:class:`agentcost.testing.FakeProvider` on 127.0.0.1 (no network, no key); a translator sub-agent runs behind an
HTTP service on loopback and is reached across that boundary with a signed context and a signed report
(:mod:`agentcost.remote`); the support team's runs have a budget that forces the adapter to degrade a call to a
cheaper model; and one team has a runaway day (the planted anomaly). The runs are recorded now and written to the
ledger as the day they simulate: their timestamps are shifted to that day.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.request import Request, urlopen

import agentcost
from agentcost._budget import Budget, BudgetEvent, DegradePolicy
from agentcost._context import CostContext
from agentcost._ledger import BudgetEventRecord, SpanRecord
from agentcost._ledger_sqlite import SQLiteLedger
from agentcost._span import Span
from agentcost._tree import CostTree
from agentcost.testing import FakeProvider, Reply

__all__ = ["ANOMALY_TEAM", "DemoResult", "run_finops_demo"]

DAYS: Final = 30
ANOMALY_TEAM: Final = "ads"
ANOMALY_DAYS_AGO: Final = 6
"""The ads team's runaway day: a retry loop makes it run five times its usual work."""
KEY: Final = bytes(range(32))  # the demo's shared key: a real deployment loads its keys from a secret store


@dataclass(frozen=True)
class DemoResult:
    ledger_path: Path
    spans: int
    runs: int
    first_day: date
    last_day: date
    anomaly_day: date
    degraded_calls: int
    remote_calls: int


class _Collector:
    """A sink that keeps a day's finished spans and budget events, to be written with the day's timestamps."""

    def __init__(self) -> None:
        self.spans: list[tuple[Span, CostTree]] = []
        self.events: list[tuple[BudgetEvent, CostTree]] = []
        self._lock = threading.Lock()

    def on_span(self, span: Span, tree: CostTree) -> None:
        with self._lock:
            self.spans.append((span, tree))

    def on_event(self, event: BudgetEvent, tree: CostTree) -> None:
        with self._lock:
            self.events.append((event, tree))

    def drain(self, day: date, now: float) -> tuple[list[SpanRecord], list[BudgetEventRecord]]:
        """The collected spans and events moved to ``day`` (same time of day, order kept)."""
        shift = datetime(day.year, day.month, day.day, 9, tzinfo=UTC).timestamp() - now
        with self._lock:
            spans, events, self.spans, self.events = self.spans, self.events, [], []
        records = []
        for span, tree in spans:
            record = SpanRecord.from_span(span, tree)
            records.append(
                replace(
                    record,
                    started_at=record.started_at + shift,
                    ended_at=None if record.ended_at is None else record.ended_at + shift,
                )
            )
        event_records = [BudgetEventRecord.from_event(event, tree, now + shift) for event, tree in events]
        return records, event_records


@contextmanager
def _translator_service(provider: FakeProvider) -> Iterator[str]:
    """The translator sub-agent as an HTTP service on 127.0.0.1: it reads the signed context from the request
    header, runs in a cost run opened from it (the caller's attribution and delegated budget), makes its own LLM
    call through the anthropic adapter and answers with the signed report."""
    import anthropic
    from agentcost_anthropic import wrap as wrap_anthropic

    from agentcost.remote import serve
    from agentcost.wire import CONTEXT_HEADER, Keyring, Verifier, accept_context

    keyring = Keyring({"demo": KEY}, active="demo")
    verifier = Verifier(keyring, audience="translator")
    client = anthropic.Anthropic(base_url=provider.anthropic_base_url, api_key="demo", max_retries=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
            context = accept_context(self.headers.get(CONTEXT_HEADER), verifier)
            with serve(context, "translator", attrs={"agent": "translator"}) as served:
                llm = wrap_anthropic(client, served.ctx)
                llm.messages.create(
                    model="claude-haiku-4-5",
                    max_tokens=400,
                    messages=[{"role": "user", "content": f"Translate: {body.get('text', '')}"}],
                )
            answer = json.dumps({"text": "traduit", "report": served.report(keyring)}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        client.close()


def _translate(ctx: CostContext, url: str, text: str) -> None:
    """Call the translator across the HTTP boundary; graft its signed report under an agent node."""
    from agentcost.remote import delegate
    from agentcost.wire import CONTEXT_HEADER, DelegatedBudget, Keyring, Verifier

    keyring = Keyring({"demo": KEY}, active="demo")
    delegation = delegate(ctx, "translator", keyring=keyring, budget=DelegatedBudget(cost=Decimal("0.05")))
    request = Request(url, data=json.dumps({"text": text}).encode(), method="POST")
    request.add_header(CONTEXT_HEADER, delegation.token)
    request.add_header("content-type", "application/json")
    try:
        with urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
    except Exception as error:
        delegation.fail(error)
        return
    delegation.receive(reply["report"], Verifier(keyring, audience="demo", max_bytes=1_000_000))


def run_finops_demo(
    ledger_path: Path,
    *,
    today: date | None = None,
    seed: int = 20261129,
    progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Write thirty days of the workload to a fresh SQLite ledger at ``ledger_path``."""
    import anthropic
    import openai
    from agentcost_anthropic import wrap as wrap_anthropic
    from agentcost_openai import wrap as wrap_openai

    last = today or datetime.now(UTC).date()
    first = last - timedelta(days=DAYS - 1)
    anomaly_day = last - timedelta(days=ANOMALY_DAYS_AGO)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger_path}{suffix}").unlink(missing_ok=True)
    ledger = SQLiteLedger(ledger_path)
    rng = random.Random(seed)
    collector = _Collector()
    degraded = remote = runs = spans = 0
    policy = DegradePolicy(fallbacks={"gpt-4o": "gpt-4o-mini"})
    with FakeProvider(default=Reply(text="Here is what I found.")) as provider, _translator_service(provider) as url:
        openai_client = openai.OpenAI(base_url=provider.openai_base_url, api_key="demo", max_retries=0)
        anthropic_client = anthropic.Anthropic(base_url=provider.anthropic_base_url, api_key="demo", max_retries=0)

        def reply(input_tokens: tuple[int, int], output_tokens: tuple[int, int]) -> None:
            """What the provider will report for the next call (a RAG prompt's size is not its question's)."""
            provider.script(Reply(input_tokens=rng.randint(*input_tokens), output_tokens=rng.randint(*output_tokens)))

        def request(ctx: CostContext, team: str, feature: str, n: int) -> None:
            with ctx.child("planner") as planner:
                reply((600, 1_200), (80, 200))
                wrap_openai(openai_client, planner).chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"plan: {feature}"}], max_tokens=300
                )
            if feature == "qa":
                ctx.record_tool("web_search", cost=Decimal("0.005"))
                reply((40_000, 70_000), (500, 900))
                wrap_openai(openai_client, ctx).chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "answer from the sources"}], max_tokens=1_000
                )
            elif feature == "summarize":
                reply((90_000, 130_000), (800, 1_500))
                wrap_openai(openai_client, ctx).chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "summarize the report"}], max_tokens=2_000
                )
            elif feature == "chat":  # under a $0.03 budget: the adapter caps or swaps the model before sending
                reply((2_500, 4_500), (300, 900))
                wrap_openai(openai_client, ctx).chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "help " * 3_000}], max_tokens=4_000
                )
                if n % 3 == 0:
                    _translate(ctx, url, "your refund is on its way")
            else:  # copywriting: draft, critique and final with Claude, then a translation across the boundary
                writer = wrap_anthropic(anthropic_client, ctx)
                for step in ("draft", "critique", "final"):
                    reply((30_000, 45_000), (1_000, 2_000))
                    writer.messages.create(
                        model="claude-sonnet-4-6", max_tokens=2_000, messages=[{"role": "user", "content": step}]
                    )
                _translate(ctx, url, "the new tagline")

        try:
            for index in range(DAYS):
                day = first + timedelta(days=index)
                day_started = time.time()
                weekday = day.weekday() < 5
                plan = [
                    ("search", "qa", rng.randint(5, 7) if weekday else 2),
                    ("search", "summarize", rng.randint(2, 3) if weekday else 1),
                    ("support", "chat", rng.randint(4, 6) if weekday else 3),
                    (ANOMALY_TEAM, "copywriting", rng.randint(2, 3) * (5 if day == anomaly_day else 1)),
                ]
                for team, feature, count in plan:
                    for n in range(count):
                        user = f"u{rng.randint(1, 40)}"
                        attrs = {
                            "team": team,
                            "feature": feature,
                            "user": user,
                            "conversation": f"c-{day.isoformat()}-{team}-{n // 2}",
                        }
                        budget = Budget(max_cost=Decimal("0.03"), policy=policy) if team == "support" else None
                        with agentcost.run(f"{feature} request", attrs=attrs, budget=budget, sinks=[collector]) as ctx:
                            request(ctx, team, feature, n)
                        runs += 1
                        remote += feature == "copywriting" or (feature == "chat" and n % 3 == 0)
                records, events = collector.drain(day, day_started)
                degraded += sum(event.kind == "degraded" for event in events)
                ledger.write(records, events)
                spans += len(records)
                if progress is not None:
                    progress(index + 1, DAYS)
        finally:
            openai_client.close()
            anthropic_client.close()
    ledger.close()
    return DemoResult(ledger_path, spans, runs, first, last, anomaly_day, degraded, remote)
