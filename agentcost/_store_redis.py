"""A :class:`BudgetStore` in Redis, shared by any number of processes and hosts.

Design:

* **One round trip per operation.** ``reserve``, ``commit``, ``release`` and ``charge`` are each exactly one
  ``EVALSHA`` of one Lua script (``usage`` and ``expire`` too), which runs atomically on the server: the sweep of
  expired holds, the checks against every limit and the writes all happen in that one call, so a reservation
  against several limits is all-or-nothing. The script is loaded once when the store is made (``SCRIPT LOAD``); if
  the server lost it (a restart, ``SCRIPT FLUSH``), the call that meets ``NOSCRIPT`` sends the script body with
  ``EVAL`` (a second round trip, counted as such) and the server caches it again. redis-py's own retries and
  health checks are turned off, and connections speak RESP2 without ``HELLO`` or ``CLIENT SETINFO``, so
  :attr:`RedisStore.round_trips` (the requests written to the network, counted in the connection class) grows by
  exactly one per operation. (A URL with a database other than 0 adds one ``SELECT`` per new connection.)
* **Money as integer nano-dollars** (1e-9 USD). Held and committed amounts are rounded *up* to the next nano-dollar
  and limits *down*, so rounding can only make the store stricter, never let spend pass a limit. Counters are
  changed with ``HINCRBY`` on decimal strings, so they are exact 64-bit integers in Redis. Lua numbers are doubles,
  so limits (and single amounts) of 2**53 nano-dollars (about $9.007M) or more are refused with
  :class:`~agentcost.BudgetError`: below that, ``spent + held + requested <= max`` is decided exactly (and a sum
  that is too large to be exact is still correctly found above the limit).
* **Windows** (``2026-11-28`` for a day, ``2026-11-28T05`` for an hour, ``2026-11`` for a month, ``all`` for
  ``none``) are computed inside the script from the server's clock (``TIME``), so hosts with skewed clocks agree.
  ``clock`` (tests only) makes the client send its own time instead.
* **Key layout**, all under the hash tag ``{prefix}`` (one cluster slot; the tag is also the script's one declared
  key), with ``W`` = ``<limit id>:<window key>``:

  - ``{prefix}:w:W`` hash: ``sc``/``st``/``sk`` spent cost (nano-dollars), tokens, calls; ``hc``/``ht``/``hk`` held.
  - ``{prefix}:z:W`` sorted set of the holds on that window, scored by expiry (microseconds since the epoch); each
    member is ``<cost>:<tokens>:<calls>:<hold id>``, so the window can release an expired hold on its own.
  - ``{prefix}:h:<hold id>`` hash: ``m`` the member, ``k`` the JSON list of the ``W`` it holds, ``x`` its expiry.
  - ``{prefix}:hx`` sorted set of every live hold id by expiry, for :meth:`RedisStore.expire`.
  - ``{prefix}:s:<hold id>``: a settled (committed or released) hold id, or a charge's id, kept for a day so a
    retried settlement is a no-op.

* **Expiry.** Every script first sweeps the expired members (``score <= now``) of the window sets it touches: the
  whole hold is dropped (removed from all its windows, their held totals decremented). A window's held total is
  decremented only when ``ZREM`` removed the member, so no hold is ever released twice. ``w`` and ``z`` keys get a
  TTL of one day past the end of their window (the two always the same), hold hashes one day past the hold's
  expiry, settled ids one day: nothing grows forever. ``none`` windows never expire.
* **When Redis cannot be reached** (connection refused or lost, timeout, ``LOADING``, ``OOM``, ...): ``reserve``
  raises :class:`~agentcost.StoreUnavailable` (``on_unavailable="closed"``, the default) or admits without holding
  anything and returns False (``"open"``, counted in :attr:`RedisStore.fail_open_admissions`). ``commit``,
  ``release`` and ``charge`` never raise for that: the call is queued in memory (at most ``max_pending``; beyond
  that releases are dropped first, since an unreleased hold expires anyway; drops are counted in
  :attr:`RedisStore.dropped_settlements`) and replayed, in one pipelined round trip, before the next call that
  reaches the server. Replays are safe because every settlement is idempotent by id (a charge gets a fresh id).
  A replayed commit lands in the window current when it is replayed.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any, Final

from agentcost._errors import BudgetError, BudgetExceeded, StoreUnavailable
from agentcost._money import EXACT
from agentcost._store import Amount, BudgetStore, Limit, LimitUsage, check_amount, distinct_limits

if TYPE_CHECKING:
    import redis

__all__ = ["RedisStore"]

NANO_EXPONENT: Final = 9
"""Money in Redis is in units of 10**-9 dollars."""
MAX_EXACT: Final = 2**53
"""Limits and amounts must stay below this many units: Lua compares doubles."""
SETTLED_FOR: Final = 86_400
"""Seconds a settled hold id is remembered."""
GRACE: Final = 86_400
MAX_TTL_US: Final = 10 * 366 * 86_400 * 1_000_000
"""Hold TTLs are capped at ten years (an infinite one included), so expiry times stay exact in Lua."""
"""Seconds a window's keys (and a hold's hash) outlive the window's end (the hold's expiry)."""

_UNAVAILABLE_REPLIES: Final = ("OOM", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")

SCRIPT: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local P = KEYS[1]
local op = ARGV[1]
local now_us
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now_us = tonumber(ARGV[2])
end
local now_s = math.floor(now_us / 1000000)
local GRACE = @GRACE@
local SETTLED = @SETTLED@

local function int(x) return string.format('%.0f', x) end

-- proleptic Gregorian calendar (H. Hinnant's algorithms): days since 1970-01-01 <-> year, month, day
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m + 9
  if m > 2 then mp = m - 3 end
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- the key of the window containing now, and the second it ends (nil: never)
local function window(kind)
  if kind == 'none' then return 'all', nil end
  local days = math.floor(now_s / 86400)
  local y, m, d = civil(days)
  if kind == 'day' then
    return string.format('%04d-%02d-%02d', y, m, d), (days + 1) * 86400
  elseif kind == 'hour' then
    local h = math.floor((now_s - days * 86400) / 3600)
    return string.format('%04d-%02d-%02dT%02d', y, m, d, h), (math.floor(now_s / 3600) + 1) * 3600
  elseif kind == 'month' then
    local ny, nm = y, m + 1
    if nm == 13 then ny, nm = y + 1, 1 end
    return string.format('%04d-%02d', y, m), days_from_civil(ny, nm, 1) * 86400
  end
  error('unknown window ' .. tostring(kind))
end

local function add(key, field, value, sign)
  if value ~= '0' then redis.call('HINCRBY', key, field, sign .. value) end
end

local function unhold(suffix, c, t, n)
  local w = P .. ':w:' .. suffix
  add(w, 'hc', c, '-')
  add(w, 'ht', t, '-')
  add(w, 'hk', n, '-')
end

-- the window's hash and hold set expire together, a day after the window ends
local function touch(suffix, ends)
  if ends then
    local ttl = int(ends - now_s + GRACE)
    redis.call('EXPIRE', P .. ':w:' .. suffix, ttl)
    redis.call('EXPIRE', P .. ':z:' .. suffix, ttl)
  end
end

local function parse(member)
  return string.match(member, '^(%d+):(%d+):(%d+):(.*)$')
end

-- drop a hold everywhere; with `only`, just when it is that member (not a newer hold reusing the id)
local function drop_hold(id, only)
  local hkey = P .. ':h:' .. id
  local fields = redis.call('HMGET', hkey, 'm', 'k')
  local member = fields[1]
  if not member or (only and member ~= only) then return false end
  local c, t, n = parse(member)
  for _, suffix in ipairs(cjson.decode(fields[2])) do
    if redis.call('ZREM', P .. ':z:' .. suffix, member) == 1 then unhold(suffix, c, t, n) end
  end
  redis.call('DEL', hkey)
  redis.call('ZREM', P .. ':hx', id)
  return true
end

local function sweep(suffix)
  local z = P .. ':z:' .. suffix
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', int(now_us))) do
    local c, t, n, id = parse(member)
    if not drop_hold(id, member) and redis.call('ZREM', z, member) == 1 then
      unhold(suffix, c, t, n)
    end
  end
end

local function counters(suffix)
  local v = redis.call('HMGET', P .. ':w:' .. suffix, 'sc', 'st', 'sk', 'hc', 'ht', 'hk')
  for i = 1, 6 do v[i] = v[i] or '0' end
  return v
end

local function add_spend(first, count, c, t, n)
  for i = 1, count do
    local base = first + (i - 1) * 2
    local key, ends = window(ARGV[base + 1])
    local suffix = ARGV[base] .. ':' .. key
    sweep(suffix)
    local w = P .. ':w:' .. suffix
    add(w, 'sc', c, '')
    add(w, 'st', t, '')
    add(w, 'sk', n, '')
    touch(suffix, ends)
  end
end

if op == 'reserve' then
  local id, ttl_us, c, t, n, count = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
  local hkey = P .. ':h:' .. id
  local expires = redis.call('HGET', hkey, 'x')
  if expires and tonumber(expires) <= now_us then drop_hold(id, nil) end
  if redis.call('EXISTS', hkey) == 1 or redis.call('EXISTS', P .. ':s:' .. id) == 1 then return {1} end
  local suffixes, ends = {}, {}
  for i = 1, count do
    local key
    key, ends[i] = window(ARGV[8 + (i - 1) * 5 + 2])
    suffixes[i] = ARGV[8 + (i - 1) * 5 + 1] .. ':' .. key
    sweep(suffixes[i])
  end
  local requested = {c, t, n}
  for i = 1, count do
    local v = counters(suffixes[i])
    for j = 1, 3 do
      local max = ARGV[8 + (i - 1) * 5 + 2 + j]
      if max ~= '' and tonumber(v[j]) + tonumber(v[j + 3]) + tonumber(requested[j]) > tonumber(max) then
        return {0, i, j, v[j], v[j + 3]}
      end
    end
  end
  local member = c .. ':' .. t .. ':' .. n .. ':' .. id
  local at = int(now_us + ttl_us)
  for i = 1, count do
    local w = P .. ':w:' .. suffixes[i]
    add(w, 'hc', c, '')
    add(w, 'ht', t, '')
    add(w, 'hk', n, '')
    redis.call('ZADD', P .. ':z:' .. suffixes[i], at, member)
    touch(suffixes[i], ends[i])
  end
  redis.call('HSET', hkey, 'm', member, 'k', cjson.encode(suffixes), 'x', at)
  redis.call('EXPIRE', hkey, int(math.ceil(ttl_us / 1000000) + GRACE))
  redis.call('ZADD', P .. ':hx', at, id)
  return {1}
elseif op == 'commit' then
  local id = ARGV[3]
  local skey = P .. ':s:' .. id
  if redis.call('EXISTS', skey) == 1 then return 0 end
  drop_hold(id, nil)
  add_spend(8, tonumber(ARGV[7]), ARGV[4], ARGV[5], ARGV[6])
  redis.call('SET', skey, '1', 'EX', SETTLED)
  return 1
elseif op == 'release' then
  local id = ARGV[3]
  drop_hold(id, nil)
  redis.call('SET', P .. ':s:' .. id, '1', 'EX', SETTLED, 'NX')
  return 1
elseif op == 'usage' then
  local key = window(ARGV[4])
  local suffix = ARGV[3] .. ':' .. key
  sweep(suffix)
  local v = counters(suffix)
  return {key, v[1], v[2], v[3], v[4], v[5], v[6]}
elseif op == 'expire' then
  local dropped = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':hx', '-inf', int(now_us))) do
    local expires = redis.call('HGET', P .. ':h:' .. id, 'x')
    if not expires then
      redis.call('ZREM', P .. ':hx', id)
    elseif tonumber(expires) <= now_us and drop_hold(id, nil) then
      dropped = dropped + 1
    end
  end
  return dropped
end
error('unknown operation ' .. tostring(op))
""".replace("@GRACE@", str(GRACE)).replace("@SETTLED@", str(SETTLED_FOR))

SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()
METRICS: Final = ("cost", "tokens", "calls")


def _nano_up(cost: Decimal) -> int:
    return int(cost.scaleb(NANO_EXPONENT, EXACT).to_integral_value(rounding=ROUND_CEILING))


def _nano_down(cost: Decimal) -> int:
    return int(cost.scaleb(NANO_EXPONENT, EXACT).to_integral_value(rounding=ROUND_FLOOR))


def _dollars(nano: int) -> Decimal:
    return Decimal(nano).scaleb(-NANO_EXPONENT, EXACT) if nano else Decimal(0)


def _bounded(value: int, what: str) -> str:
    if value >= MAX_EXACT:
        raise BudgetError(f"{what} is too large for RedisStore: it must stay below 2**53 (nano-dollars for money)")
    return str(value)


def _ttl_us(ttl: float) -> int:
    if math.isnan(ttl):
        raise BudgetError("a hold's ttl must be a number of seconds, got nan")
    if ttl <= 0:
        return 0
    return MAX_TTL_US if ttl >= MAX_TTL_US / 1_000_000 else min(math.ceil(ttl * 1_000_000), MAX_TTL_US)


class _Counter:
    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1


class RedisStore(BudgetStore):
    """Limits shared by every process and host that reaches the Redis server at ``url``.

    ``prefix`` namespaces the keys (stores with the same prefix share limits). ``on_unavailable`` is ``"closed"``
    (refuse reservations when Redis cannot be reached) or ``"open"`` (admit them). ``socket_timeout`` (seconds)
    bounds connecting and every call. ``clock`` is for tests: windows and expiry then follow it instead of the
    server's clock. ``max_pending`` bounds the settlements queued while Redis is unreachable.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "agentcost",
        on_unavailable: str = "closed",
        clock: Callable[[], float] | None = None,
        socket_timeout: float = 2.0,
        max_pending: int = 10_000,
    ) -> None:
        super().__init__()
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as error:
            raise ImportError(
                "RedisStore needs the redis package: pip install 'agentcost-sdk[redis]'", name=error.name
            ) from error
        if on_unavailable not in ("closed", "open"):
            raise BudgetError(f"on_unavailable must be 'closed' or 'open', got {on_unavailable!r}")
        if not prefix or "{" in prefix or "}" in prefix:
            raise BudgetError(f"prefix must be a non-empty string without braces, got {prefix!r}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 0:
            raise BudgetError(f"max_pending must be a non-negative int, got {max_pending!r}")
        self._tag = "{" + prefix + "}"
        self._fail_open = on_unavailable == "open"
        self._clock = clock
        self._max_pending = max_pending
        self._pending: deque[list[str]] = deque()
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.fail_open_admissions = 0
        """Reservations admitted without Redis (``on_unavailable="open"``)."""
        self.dropped_settlements = 0
        """Settlements lost because the queue of unsent ones was full."""
        self._unavailable: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._response_error: type[redis.ResponseError] = redis.ResponseError
        self._no_script: type[redis.exceptions.NoScriptError] = redis.exceptions.NoScriptError

        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
            "decode_responses": True,
            "protocol": 2,  # RESP3 would cost a HELLO (and a CLIENT MAINT_NOTIFICATIONS) per connection
        }
        if "driver_info" in inspect.signature(redis.connection.AbstractConnection.__init__).parameters:
            options["driver_info"] = None  # no CLIENT SETINFO round trips on connect
        else:  # pragma: no cover - redis-py < 7
            options["lib_name"] = None
            options["lib_version"] = None
        pool = redis.ConnectionPool.from_url(url, **options)
        self._trips = _Counter()
        pool.connection_class = _counting(pool.connection_class, self._trips)
        self._pool = pool
        self._client: redis.Redis = redis.Redis(connection_pool=pool)
        with contextlib.suppress(*self._unavailable):
            self._client.script_load(SCRIPT)  # else loaded by the first call that reaches the server

    # -- counters ---------------------------------------------------------------------------------------------------
    @property
    def round_trips(self) -> int:
        """Requests written to the network so far (a pipeline counts once), in every thread of this process."""
        return self._trips.value

    @property
    def pending_settlements(self) -> int:
        """Commits, releases and charges queued while Redis was unreachable, not yet sent."""
        return len(self._pending)

    # -- the atomic operations --------------------------------------------------------------------------------------
    def reserve(self, hold_id: str, limits: Sequence[Limit], amount: Amount, ttl: float) -> bool:
        check_amount(amount)
        limits = distinct_limits(limits)
        args = ["reserve", self._now(), hold_id, str(_ttl_us(ttl)), *self._amount(amount)]
        args.append(str(len(limits)))
        for limit in limits:
            args += [limit.id, limit.window, *self._maxima(limit)]
        try:
            self._flush()
            reply = self._eval(args)
        except self._unavailable as error:
            if self._fail_open:
                with self._stats_lock:
                    self.fail_open_admissions += 1
                return False
            raise StoreUnavailable(f"the Redis budget store cannot be reached: {error}") from error
        if reply[0] == 1:
            return True
        _, index, metric, spent, held = reply
        raise self._refusal(limits[int(index) - 1], METRICS[int(metric) - 1], int(spent) + int(held), amount)

    def commit(self, hold_id: str, limits: Sequence[Limit], amount: Amount) -> None:
        check_amount(amount)
        self._settle(self._commit_args(hold_id, distinct_limits(limits), amount))

    def release(self, hold_id: str) -> None:
        self._settle(["release", self._now(), hold_id])

    def charge(self, limits: Sequence[Limit], amount: Amount) -> None:
        check_amount(amount)
        # a commit under a fresh id: it holds nothing, and a replay after an ambiguous failure cannot count twice
        self._settle(self._commit_args(f"charge:{uuid.uuid4().hex}", distinct_limits(limits), amount))

    def usage(self, limit: Limit) -> LimitUsage:
        try:
            self._flush()
            reply = self._eval(["usage", self._now(), limit.id, limit.window])
        except self._unavailable as error:
            raise StoreUnavailable(f"the Redis budget store cannot be reached: {error}") from error
        key, spent_cost, spent_tokens, spent_calls, held_cost, held_tokens, held_calls = reply
        return LimitUsage(
            limit,
            str(key),
            Amount(_dollars(int(spent_cost)), int(spent_tokens), int(spent_calls)),
            Amount(_dollars(int(held_cost)), int(held_tokens), int(held_calls)),
        )

    def expire(self) -> int:
        try:
            self._flush()
            return int(self._eval(["expire", self._now()]))
        except self._unavailable as error:
            raise StoreUnavailable(f"the Redis budget store cannot be reached: {error}") from error

    def close(self) -> None:
        """Try once more to send queued settlements, then close the connections."""
        with contextlib.suppress(*self._unavailable):
            self._flush()
        self._pool.disconnect()

    # -- helpers ----------------------------------------------------------------------------------------------------
    def _now(self) -> str:
        return "" if self._clock is None else str(math.floor(self._clock() * 1_000_000))

    @staticmethod
    def _amount(amount: Amount) -> list[str]:
        return [
            _bounded(_nano_up(amount.cost), "a cost"),
            _bounded(amount.tokens, "a token count"),
            _bounded(amount.calls, "a call count"),
        ]

    @staticmethod
    def _maxima(limit: Limit) -> list[str]:
        return [
            "" if limit.max_cost is None else _bounded(_nano_down(limit.max_cost), f"max_cost of {limit!r}"),
            "" if limit.max_tokens is None else _bounded(limit.max_tokens, f"max_tokens of {limit!r}"),
            "" if limit.max_calls is None else _bounded(limit.max_calls, f"max_calls of {limit!r}"),
        ]

    def _commit_args(self, hold_id: str, limits: Sequence[Limit], amount: Amount) -> list[str]:
        args = ["commit", self._now(), hold_id, *self._amount(amount), str(len(limits))]
        for limit in limits:
            args += [limit.id, limit.window]
        return args

    @staticmethod
    def _refusal(limit: Limit, metric: str, used: int, amount: Amount) -> BudgetExceeded:
        if metric == "cost":
            assert limit.max_cost is not None
            remaining: Decimal | int = _dollars(max(_nano_down(limit.max_cost) - used, 0))
            return BudgetExceeded(
                node=f"limit {limit.id}",
                limit=f"max_cost={limit.max_cost}",
                metric=metric,
                requested=amount.cost,
                remaining=remaining,
            )
        maximum = limit.max_tokens if metric == "tokens" else limit.max_calls
        assert maximum is not None
        return BudgetExceeded(
            node=f"limit {limit.id}",
            limit=f"max_{metric}={maximum}",
            metric=metric,
            requested=amount.tokens if metric == "tokens" else amount.calls,
            remaining=max(maximum - used, 0),
        )

    def _eval(self, args: list[str]) -> Any:
        """One EVALSHA; raises one of ``self._unavailable`` when the server cannot be reached or cannot serve."""
        try:
            try:
                return self._client.evalsha(SCRIPT_SHA, 1, self._tag, *args)
            except self._no_script:
                return self._client.eval(SCRIPT, 1, self._tag, *args)
        except self._response_error as error:
            if str(error).startswith(_UNAVAILABLE_REPLIES):
                raise self._unavailable[0](str(error)) from error
            raise

    def _settle(self, args: list[str]) -> None:
        try:
            self._flush()
            self._eval(args)
        except self._unavailable:
            self._enqueue([args])

    def _enqueue(self, batch: list[list[str]], *, front: bool = False) -> None:
        with self._pending_lock:
            pending = self._pending
            if front:
                pending.extendleft(reversed(batch))
            else:
                pending.extend(batch)
            while len(pending) > self._max_pending:
                # releases go first: an unreleased hold expires on its own; otherwise the newest is lost
                victim = next((i for i, item in enumerate(pending) if item[0] == "release"), len(pending) - 1)
                del pending[victim]
                self.dropped_settlements += 1

    def _flush(self) -> None:
        """Send the queued settlements in one pipelined round trip (if there are any)."""
        if not self._pending:
            return
        with self._flush_lock:
            with self._pending_lock:
                batch = list(self._pending)
                self._pending.clear()
            if not batch:
                return
            try:
                results = self._pipeline(batch)
                missing = [args for args, result in zip(batch, results, strict=True) if self._is_no_script(result)]
                if missing:  # the server lost the script: load it, send those again
                    self._client.script_load(SCRIPT)
                    done = [(a, r) for a, r in zip(batch, results, strict=True) if not self._is_no_script(r)]
                    batch = [args for args, _ in done] + missing
                    results = [result for _, result in done] + self._pipeline(missing)
            except self._unavailable:
                self._enqueue(batch, front=True)
                raise
            later: list[list[str]] = []
            for args, result in zip(batch, results, strict=True):
                if isinstance(result, self._response_error):
                    if str(result).startswith(_UNAVAILABLE_REPLIES):
                        later.append(args)
                    else:
                        with self._pending_lock:
                            self.dropped_settlements += 1  # refused for good (not expected to happen)
            if later:
                self._enqueue(later, front=True)
                raise self._unavailable[0](f"Redis cannot take the queued settlements now: {results[0]}")

    def _pipeline(self, batch: list[list[str]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for args in batch:
            pipe.evalsha(SCRIPT_SHA, 1, self._tag, *args)
        return list(pipe.execute(raise_on_error=False))

    def _is_no_script(self, result: object) -> bool:
        return isinstance(result, self._no_script)


def _counting(base: type[redis.connection.AbstractConnection], counter: _Counter) -> Any:
    """``base`` counting the requests it writes to the network (a handshake's or a pipeline's included)."""

    class CountingConnection(base):  # type: ignore[misc,valid-type]
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            super().send_packed_command(command, check_health)
            counter.add()

    return CountingConnection
