"""Wire-format benchmarks: how long agentcost.wire takes to verify (or reject) a context token.

Run from the repository root::

    python benchmarks/bench_wire.py          # full run (about 20 s)
    python benchmarks/bench_wire.py --quick  # smoke run (a few seconds)

What it measures, per call of ``Verifier.verify_context`` (or ``encode_context``):

1. Hostile inputs of 8 KB (the default ``max_bytes``), each rejected: random bytes; random text in the token's
   alphabet shaped like a token (``v1.<8 KB of base64url>.<43 chars>``, so it gets past the shape check to the
   base64 and JSON decoding); a correctly shaped, well-formed 8 KB context (six long attributes)
   signed with another key, which is fully decoded and schema-checked before its MAC fails (the most work an input
   without the key can cause); a signed 8 KB payload of deeply nested arrays (JSON recursion); and 8,193 bytes
   (refused on length alone). Target from issue 6: <= 1 ms per 8 KB input.
2. Valid tokens: a typical context (attribution and a delegated budget, about 400 bytes) verified end to end, each
   with a fresh nonce so the replay window admits it (a fresh verifier per batch, untimed); the same at 8 KB; and
   ``encode_context`` for the typical context.

Timing: ``time.perf_counter_ns`` around batches of N calls; the figure is the median per-call time over batches
(min and max shown too), batches of the peers interleaved in a rotating order, the cyclic gc off during batches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pydantic
from _harness import Peer, Summary, finish, run_interleaved, section, start, table

import agentcost
from agentcost.wire import DelegatedBudget, Keyring, Verifier, WireContext, WireError, encode_context

TARGET_8KB_US = 1000.0
NOW = 1_767_225_600_000
KEY = bytes(range(32))
MAX_BYTES = 8192


@dataclass(frozen=True)
class Config:
    """How much work each section does."""

    batches: int
    n: int
    inputs: int


FULL = Config(batches=15, n=2_000, inputs=2_000)
QUICK = Config(batches=5, n=300, inputs=300)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(payload: bytes, key: bytes) -> str:
    body = b64(payload)
    return f"v1.{body}.{b64(hmac.new(key, b'agentcost.v1.' + body.encode('ascii'), hashlib.sha256).digest())}"


def make_context(keyring: Keyring, number: int, attrs: dict[str, str]) -> WireContext:
    return WireContext(
        root="8a3f000000000001",
        parent="8a3f000000000007",
        attrs=attrs,
        budget=DelegatedBudget(cost=Decimal("0.25"), tokens=20_000),
        iat=NOW,
        exp=NOW + 60_000,
        aud="search-agent",
        nonce=f"{number:032x}",
        kid=keyring.active,
    )


TYPICAL_ATTRS = {"team": "search", "user": "u-42", "feature": "answers", "agent": "planner"}
LARGE_ATTRS = {**{f"attr{n}": "x" * 1000 for n in range(5)}, "attr5": "x" * 790}
"""Attribution that makes a context token of 8,190 bytes, just under the default limit."""


def hostile_inputs(config: Config, rng: random.Random) -> dict[str, list[bytes | str]]:
    """Rejected inputs of (about) 8 KB each, by kind."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    forger = Keyring({"k1": bytes(range(100, 132))}, active="k1")
    count = config.inputs
    kinds: dict[str, list[bytes | str]] = {
        "random bytes, 8 KB": [rng.randbytes(MAX_BYTES) for _ in range(count)],
        "random token-shaped text, 8 KB": [
            "v1." + "".join(rng.choices(alphabet, k=MAX_BYTES - 47)) + "." + "".join(rng.choices(alphabet, k=43))
            for _ in range(count)
        ],
        "well-formed 8 KB context, forged MAC": [
            encode_context(make_context(forger, number, LARGE_ATTRS), forger) for number in range(count)
        ],
        "signed 8 KB of nested arrays": [sign(b'{"v":1,"x":' + b"[" * 3000 + b"]" * 3000 + b"}", KEY)] * count,
        "8,193 bytes (too large)": [rng.randbytes(MAX_BYTES + 1) for _ in range(count)],
    }
    for name, items in kinds.items():
        if name.startswith("8,193"):
            continue
        assert all(len(item) <= MAX_BYTES for item in items), name
    return kinds


def rejecting(verifier: Verifier, inputs: list[bytes | str]) -> Callable[[int], None]:
    verify = verifier.verify_context
    size = len(inputs)

    def batch(n: int) -> None:
        for index in range(n):
            try:
                verify(inputs[index % size])
            except WireError:
                pass
            else:
                raise AssertionError("a hostile input was accepted")

    return batch


def bench_hostile(config: Config, summary: Summary) -> None:
    section("1. verify_context on hostile 8 KB inputs (all rejected)")
    keyring = Keyring({"k1": KEY}, active="k1")
    verifier = Verifier(keyring, audience="search-agent", now=lambda: NOW)
    kinds = hostile_inputs(config, random.Random(6))
    peers = [Peer(name, rejecting(verifier, inputs), config.n) for name, inputs in kinds.items()]
    run_interleaved(peers, config.batches)
    rows = [[p.name, f"{p.median_us:.1f}", f"{p.min_us:.1f}", f"{p.max_us:.1f}"] for p in peers]
    print(table(["input", "median us", "min us", "max us"], rows))
    print(f"rejections counted: {dict(verifier.rejected)}")
    worst = max(peers, key=lambda peer: peer.median_us)
    summary.add(
        "verify_context <= 1 ms per hostile 8 KB input",
        f"worst median {worst.median_us:.1f} us ({worst.name})",
        worst.median_us <= TARGET_8KB_US,
    )


def bench_valid(config: Config, summary: Summary) -> None:
    section("2. valid tokens: verify_context end to end, and encode_context")
    keyring = Keyring({"k1": KEY}, active="k1")
    typical = [encode_context(make_context(keyring, number, TYPICAL_ATTRS), keyring) for number in range(config.n)]
    large = [encode_context(make_context(keyring, number, LARGE_ATTRS), keyring) for number in range(config.n)]
    holder: list[Verifier] = []

    def fresh_verifier() -> None:
        holder[:] = [Verifier(keyring, audience="search-agent", now=lambda: NOW)]

    def verifying(tokens: list[str]) -> Callable[[int], None]:
        def batch(n: int) -> None:
            verify = holder[0].verify_context
            for index in range(n):
                verify(tokens[index])

        return batch

    context = make_context(keyring, 1, TYPICAL_ATTRS)

    def encoding(n: int) -> None:
        for _ in range(n):
            encode_context(context, keyring)

    peers = [
        Peer(f"verify typical context ({len(typical[0])} bytes)", verifying(typical), config.n, fresh_verifier),
        Peer(f"verify 8 KB context ({len(large[0])} bytes)", verifying(large), config.n, fresh_verifier),
        Peer("encode typical context", encoding, config.n),
    ]
    run_interleaved(peers, config.batches)
    rows = [[p.name, f"{p.median_us:.1f}", f"{p.min_us:.1f}", f"{p.max_us:.1f}"] for p in peers]
    print(table(["operation", "median us", "min us", "max us"], rows))
    summary.add(
        "verify_context <= 1 ms per valid 8 KB token",
        f"median {peers[1].median_us:.1f} us",
        peers[1].median_us <= TARGET_8KB_US,
    )
    summary.add("verify_context, typical valid token (informational)", f"median {peers[0].median_us:.1f} us", True)


def main(argv: list[str] | None = None) -> int:
    quick = start(
        __doc__,
        argv,
        f"agentcost {agentcost.__version__}, pydantic {pydantic.VERSION}",
        "a fast smoke run (fewer inputs and repetitions)",
    )
    config = QUICK if quick else FULL
    summary = Summary()
    started = time.perf_counter()
    bench_hostile(config, summary)
    bench_valid(config, summary)
    finish(summary, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
