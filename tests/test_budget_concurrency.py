"""Budgets under concurrency: 64 threads, 5,000 asyncio tasks, overshoot bounds and leak-freedom."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import agentcost
from agentcost import Amount, Budget, BudgetExceeded, CostContext, Limit, MemoryStore, Usage
from agentcost._budget import _Account

D = Decimal
SMALLEST = D("1E-50")


@contextmanager
def fast_switching() -> Iterator[None]:
    """Switch threads far more often than CPython's default 5 ms, so that reserve and commit interleave."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def accounts_of(*contexts: CostContext) -> list[_Account]:
    """Every distinct account on the paths of ``contexts``. Private: the public remaining() only gives the tightest
    remainder, while these tests check each budget's spent and held amounts, read under the tree's lock."""
    seen: dict[int, _Account] = {}
    for ctx in contexts:
        for account in ctx._accounts:
            seen[id(account)] = account
    return list(seen.values())


def violations(accounts: list[_Account]) -> list[str]:
    """The hard limits that spent + held exceeds. Call under the tree lock."""
    out = []
    for account in accounts:
        budget = account.budget
        for name, used, maximum in (
            ("cost", account.spent_cost + account.held_cost, budget.max_cost),
            ("tokens", account.spent_tokens + account.held_tokens, budget.max_tokens),
            ("calls", account.spent_calls + account.held_calls, budget.max_calls),
        ):
            if budget.hard and maximum is not None and used > maximum:
                out.append(f"{account.label} {name}: {used} > {maximum}")
    return out


def nothing_held(accounts: list[_Account]) -> bool:
    return all(a.held_cost == 0 and a.held_tokens == 0 and a.held_calls == 0 for a in accounts)


# ---------------------------------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------------------------------


def test_64_threads_never_commit_or_hold_above_any_hard_limit() -> None:
    """64 threads x 1,000 reserve/commit (actual <= reserved) never exceed any limit, seen by a live sampler."""
    store = MemoryStore()
    limit = store.add_limit(Limit(scope={"team": "search"}, window="none", max_cost=D("45"), max_calls=30_000))
    root = agentcost.run(
        "threads", attrs={"team": "search"}, store=store, budget=Budget(max_cost=D("50"), max_tokens=4_000_000)
    )
    agents = [root.child(f"agent{i}", budget=Budget(max_cost=D("8"), max_calls=5_000)) for i in range(8)]
    accounts = accounts_of(*agents)
    lock = root._run.tree._lock
    committed: list[list[tuple[Decimal, int]]] = [[] for _ in range(64)]
    refusals = [0] * 64
    failures: list[str] = []
    samples = [0]
    done = threading.Event()

    def work(index: int) -> None:
        rng = random.Random(index)
        ctx = agents[index % 8].child(f"worker{index}")
        for _ in range(1000):
            cost = D(rng.randint(1, 10)).scaleb(-3)
            tokens = rng.randint(0, 200)
            try:
                reservation = ctx.reserve(cost=cost, tokens=tokens)
            except BudgetExceeded:
                refusals[index] += 1
                continue
            if rng.random() < 0.1:
                reservation.release()
                continue
            actual = cost * rng.randint(0, 10) / 10
            actual_tokens = rng.randint(0, tokens)
            reservation.commit(actual, tokens=actual_tokens)
            committed[index].append((actual, actual_tokens))

    def sample() -> None:
        while not done.is_set():
            with lock:
                found = violations(accounts)
                usage = store.usage(limit)
            if found:
                failures.extend(found)
            if usage.spent.cost + usage.held.cost > D("45") or usage.spent.calls + usage.held.calls > 30_000:
                failures.append(f"limit: {usage}")
            samples[0] += 1
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    workers = [threading.Thread(target=work, args=(i,)) for i in range(64)]
    with fast_switching():
        sampler.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done.set()
        sampler.join()

    assert failures == []
    assert samples[0] >= 20
    assert sum(refusals) > 0
    total_cost = sum((cost for chunk in committed for cost, _ in chunk), D(0))
    total_tokens = sum(tokens for chunk in committed for _, tokens in chunk)
    root_account = root._accounts[0]
    assert (root_account.spent_cost, root_account.spent_tokens) == (total_cost, total_tokens)
    assert sum(a.spent_cost for a in accounts[1:]) == total_cost
    assert nothing_held(accounts)
    assert all(a.spent_cost <= a.budget.max_cost for a in accounts if a.budget.max_cost is not None)
    assert store.usage(limit).spent.cost == total_cost
    assert store.usage(limit).held == Amount()


def test_64_threads_overshoot_at_most_what_holds_in_flight_exceeded() -> None:
    """With commits d above their holds, 64 threads overshoot the limit by at most 64 x d (the holds in flight)."""
    excess = D("0.001")
    maximum = D("5")
    root = agentcost.run("overshoot", budget=Budget(max_cost=maximum))
    admitted = [0] * 64

    def work(index: int) -> None:
        for _ in range(1000):
            try:
                reservation = root.reserve(cost=D("0.01"))
            except BudgetExceeded:
                continue
            admitted[index] += 1
            reservation.commit(D("0.01") + excess)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(64)]
    with fast_switching():
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    spent = root._accounts[0].spent_cost
    assert spent == sum(admitted) * (D("0.01") + excess)
    assert maximum - D("0.01") < spent <= maximum + 64 * excess


def test_threads_of_two_runs_share_a_scoped_limit_atomically() -> None:
    """Threads of two runs reserving against one scoped limit never take it over its maximum together."""
    store = MemoryStore()
    limit = store.add_limit(Limit(scope={"team": "ads"}, window="day", max_cost=D("3"), max_tokens=50_000))
    runs = [agentcost.run(f"run{i}", attrs={"team": "ads"}, store=store) for i in range(2)]
    committed: list[list[Decimal]] = [[] for _ in range(32)]
    failures: list[str] = []
    done = threading.Event()

    def work(index: int) -> None:
        rng = random.Random(1000 + index)
        ctx = runs[index % 2]
        for _ in range(300):
            cost = D(rng.randint(1, 20)).scaleb(-3)
            try:
                reservation = ctx.reserve(cost=cost, tokens=rng.randint(0, 100))
            except BudgetExceeded:
                continue
            actual = cost * rng.randint(0, 4) / 4
            reservation.commit(actual)
            committed[index].append(actual)

    def sample() -> None:
        while not done.is_set():
            usage = store.usage(limit)
            used = usage.spent + usage.held
            if used.cost > D("3") or used.tokens > 50_000:
                failures.append(repr(usage))
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    workers = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    with fast_switching():
        sampler.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done.set()
        sampler.join()
    assert failures == []
    usage = store.usage(limit)
    assert usage.held == Amount()
    assert usage.spent.cost == sum((c for chunk in committed for c in chunk), D(0))
    assert usage.spent.cost <= D("3")


# ---------------------------------------------------------------------------------------------------------------------
# asyncio
# ---------------------------------------------------------------------------------------------------------------------


def test_5000_asyncio_tasks_never_commit_or_hold_above_any_hard_limit() -> None:
    """5,000 tasks holding across awaits never exceed any limit (per a sampler task); spend = sum of commits."""
    root = agentcost.run("tasks", budget=Budget(max_cost=D("20"), max_calls=4000))
    agents = [root.child(f"agent{i}", budget=Budget(max_cost=D("3"), max_tokens=200_000)) for i in range(10)]
    accounts = accounts_of(*agents)
    lock = root._run.tree._lock
    committed: list[Decimal] = []
    failures: list[str] = []
    samples = [0]
    refused = [0]

    async def task(index: int) -> None:
        rng = random.Random(index)
        ctx = agents[index % 10]
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        cost = D(rng.randint(1, 20)).scaleb(-3)
        tokens = rng.randint(1, 400)
        try:
            reservation = ctx.reserve(cost=cost, tokens=tokens)
        except BudgetExceeded:
            refused[0] += 1
            return
        for _ in range(rng.randint(1, 3)):
            await asyncio.sleep(0)
        actual = cost * rng.randint(0, 5) / 5
        if index % 3 == 0:
            ctx.record("tool", "t", cost=actual, usage=Usage(tokens, 0), reservation=reservation)
        else:
            reservation.commit(actual)
        committed.append(actual)

    async def sampler(finished: asyncio.Event) -> None:
        while not finished.is_set():
            with lock:
                failures.extend(violations(accounts))
            samples[0] += 1
            await asyncio.sleep(0)

    async def main() -> None:
        finished = asyncio.Event()
        watcher = asyncio.create_task(sampler(finished))
        await asyncio.gather(*(task(i) for i in range(5000)))
        finished.set()
        await watcher

    asyncio.run(main())
    assert failures == []
    assert samples[0] >= 3
    assert refused[0] > 0
    assert root._accounts[0].spent_cost == sum(committed, D(0))
    assert nothing_held(accounts)
    assert root._run.holds == {}  # private: no hold is left waiting for expiry


def test_5000_asyncio_tasks_reserving_exactly_the_limit() -> None:
    """Of 5,000 concurrent equal holds, exactly limit / amount are admitted and the spend ends at the limit."""
    unit = D("0.0037")
    root = agentcost.run("exact", budget=Budget(max_cost=unit * 1234))
    admitted = [0]

    async def task(index: int) -> None:
        for _ in range(index % 4):
            await asyncio.sleep(0)
        try:
            reservation = root.reserve(cost=unit)
        except BudgetExceeded:
            return
        admitted[0] += 1
        for _ in range(index % 3):
            await asyncio.sleep(0)
        reservation.commit(unit)

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(5000)))

    asyncio.run(main())
    assert admitted[0] == 1234
    assert root._accounts[0].spent_cost == unit * 1234
    assert root.remaining().cost == 0
    try:
        root.reserve(cost=SMALLEST)
    except BudgetExceeded:
        pass
    else:
        raise AssertionError("one smallest unit over the limit was admitted")


def test_no_hold_leaks_when_tasks_are_cancelled_or_raise() -> None:
    """With 30% of tasks cancelled and 10% raising, after expiry nothing is held and spend = sum of commits."""
    maximum = D("6")
    root = agentcost.run("leaks", budget=Budget(max_cost=maximum), hold_ttl=0.2)
    agents = [root.child(f"agent{i}", budget=Budget(max_cost=D("2"))) for i in range(4)]
    accounts = accounts_of(*agents)
    committed: list[Decimal] = []
    count = 1000

    async def task(index: int, holding: asyncio.Semaphore, go: asyncio.Event) -> None:
        ctx = agents[index % 4]
        fate = index % 10  # 0-2: cancelled, 3: raises, else commits
        if index % 2:
            try:
                reservation = ctx.reserve(cost=D(1 + index % 9).scaleb(-3))
            except BudgetExceeded:
                holding.release()
                return
            holding.release()
            await go.wait()
            if fate == 3:
                raise RuntimeError("tool crashed")
            span = ctx.record("tool", "t", cost=reservation.cost * (index % 5) / 4, reservation=reservation)
        else:
            try:
                guard = ctx.guard(model="gpt-4o", provider="openai", input_tokens=100, max_output_tokens=100)
                with guard as decision:
                    holding.release()
                    await go.wait()
                    if fate == 3:
                        raise RuntimeError("model crashed")
                    span = decision.record(usage=Usage(100, index % 100))
            except BudgetExceeded:
                holding.release()
                return
        assert span.cost is not None
        committed.append(span.cost)

    async def main() -> None:
        holding = asyncio.Semaphore(0)
        go = asyncio.Event()
        tasks = [asyncio.create_task(task(i, holding, go)) for i in range(count)]
        for _ in range(count):
            await holding.acquire()  # every task has reserved (or been refused) and now holds across an await
        for index, pending in enumerate(tasks):
            if index % 10 < 3:
                pending.cancel()
        go.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        kinds = [type(outcome).__name__ for outcome in outcomes]
        assert kinds.count("CancelledError") == 300
        assert kinds.count("RuntimeError") == 100

    asyncio.run(main())
    time.sleep(0.25)  # past every hold's ttl
    spent_total = sum(committed, D(0))
    assert len(committed) > 0
    # everything not committed is free again: the rest of the budget, and not one smallest unit more, is admitted
    rest = root.reserve(cost=maximum - spent_total)
    try:
        root.reserve(cost=SMALLEST)
    except BudgetExceeded:
        pass
    else:
        raise AssertionError("admitted more than the budget once the leaked holds expired")
    rest.release()
    with root._run.tree._lock:
        assert nothing_held(accounts)
        assert root._run.holds == {}  # private: the run's table of holds awaiting expiry is empty
        assert accounts[0].spent_cost == spent_total
    assert root.tree.total_cost == spent_total
    assert sum(a.spent_cost for a in accounts[1:]) == spent_total
