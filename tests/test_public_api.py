"""The public surface: exported names, and a core that imports without any adapter package."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import textwrap

import agentcost
import agentcost.testing

EXPECTED_ALL = [
    "AgentCostError",
    "Amount",
    "Budget",
    "BudgetError",
    "BudgetEvent",
    "BudgetExceeded",
    "BudgetStore",
    "CostContext",
    "CostTotal",
    "CostTree",
    "CustomPrice",
    "Decision",
    "DegradePolicy",
    "InvalidAttribute",
    "InvalidAttributeType",
    "InvalidMoney",
    "InvalidMoneyType",
    "InvalidUsage",
    "Limit",
    "LimitUsage",
    "MemoryStore",
    "PriceBook",
    "PricingError",
    "Quote",
    "RedisStore",
    "Remaining",
    "Reservation",
    "ReservationError",
    "SQLiteStore",
    "Span",
    "SpanSink",
    "StoreUnavailable",
    "TreeFormatError",
    "Usage",
    "__version__",
    "add_sink",
    "format_span_id",
    "format_usd",
    "parse_span_id",
    "remove_sink",
    "retry_call",
    "run",
    "stop_when_unaffordable",
    "to_money",
]

EXPECTED_TESTING_ALL = [
    "Exchange",
    "Fail",
    "FakeProvider",
    "Reply",
    "ScriptedModel",
    "assert_cost",
    "capture_runs",
    "tree_shape",
]

EXPECTED_ADAPTERS_ALL = [
    "Api",
    "GatewayHeaders",
    "Reported",
    "StreamWatch",
    "baggage_header",
    "estimate_tokens",
    "extra_field",
    "money_from_json",
    "rebind",
    "wrap_client",
]

EXPECTED_WIRE_ALL = [
    "CONTEXT_HEADER",
    "REPORT_HEADER",
    "DelegatedBudget",
    "Keyring",
    "Verifier",
    "WireBadSignature",
    "WireContext",
    "WireError",
    "WireExpired",
    "WireMalformed",
    "WireReplayed",
    "WireReport",
    "WireTooLarge",
    "WireTotals",
    "WireUnknownKey",
    "WireWrongAudience",
    "accept_context",
    "baggage_header",
    "canonical_json",
    "encode_context",
    "encode_report",
    "extract",
    "inject",
    "narrow",
    "parse_traceparent",
    "tighter",
    "traceparent",
]

EXPECTED_REMOTE_ALL = ["Delegation", "Served", "delegate", "serve"]

EXPECTED_LEDGER_ALL = [
    "FOCUS_COLUMNS",
    "GROUP_COLUMNS",
    "BudgetEventRecord",
    "Ledger",
    "LedgerError",
    "LedgerWriter",
    "PostgresLedger",
    "RunSummary",
    "SQLiteLedger",
    "SpanRecord",
    "SpendRow",
    "WriterStats",
    "open_ledger",
    "write_focus_csv",
    "write_jsonl",
]

# Packages an adapter may need; the core must never import them.
ADAPTER_PACKAGES = [
    "anthropic",
    "crewai",
    "google.genai",
    "langchain",
    "langchain_core",
    "langgraph",
    "litellm",
    "llama_index",
    "mcp",
    "openai",
    "opentelemetry",
    "prometheus_client",
    "psycopg",
    "pydantic_ai",
    "redis",
]


def test_ledger_all_is_locked_and_postgres_loads_lazily() -> None:
    """agentcost.ledger's public names; psycopg is imported only when PostgreSQL is used."""
    import agentcost.ledger

    assert agentcost.ledger.__all__ == EXPECTED_LEDGER_ALL
    assert all(hasattr(agentcost.ledger, name) for name in EXPECTED_LEDGER_ALL)
    result = subprocess.run(
        [sys.executable, "-c", "import sys, agentcost.ledger; print('psycopg' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"


def test_finops_modules_all_are_locked() -> None:
    import agentcost.alerts
    import agentcost.analytics

    assert agentcost.analytics.__all__ == [
        "Anomaly",
        "Forecast",
        "Runway",
        "UnitCost",
        "anomalies",
        "daily_spend",
        "forecast",
        "runway",
        "unit_costs",
    ]
    assert agentcost.alerts.__all__ == [
        "Alert",
        "AlertMonitor",
        "AlertSink",
        "BudgetUsed",
        "BudgetUsedOnLedger",
        "CallbackSink",
        "DailySpendTrend",
        "DeliveryStats",
        "LedgerAlerts",
        "LedgerRule",
        "LiveRule",
        "LogSink",
        "MonitorStats",
        "Severity",
        "SpendOver",
        "WebhookSink",
        "default_ledger_rules",
        "evaluate",
    ]


def test_exporter_modules_all_are_locked() -> None:
    import agentcost.otel
    import agentcost.prometheus

    assert agentcost.otel.__all__ == ["CountingExporter", "ExportStats", "OTelSink"]
    assert agentcost.prometheus.__all__ == ["DEFAULT_LABELS", "OVERFLOW", "SPAN_LABELS", "PrometheusSink"]


def test_all_is_locked() -> None:
    """agentcost.__all__ is exactly the expected sorted list, without duplicates."""
    assert agentcost.__all__ == EXPECTED_ALL
    assert sorted(EXPECTED_ALL) == EXPECTED_ALL
    assert len(set(EXPECTED_ALL)) == len(EXPECTED_ALL)


def test_every_exported_name_is_importable() -> None:
    """Every name in agentcost.__all__ is an attribute of the package and importable with from-import."""
    module = importlib.import_module("agentcost")
    namespace: dict[str, object] = {}
    exec(f"from agentcost import {', '.join(EXPECTED_ALL)}", namespace)
    for name in EXPECTED_ALL:
        assert getattr(module, name) is namespace[name]
    star: dict[str, object] = {}
    exec("from agentcost import *", star)
    assert sorted(k for k in star if k != "__builtins__") == EXPECTED_ALL


def test_testing_all_is_locked_and_importable() -> None:
    """agentcost.testing.__all__ is exactly the expected sorted list and every name imports."""
    assert agentcost.testing.__all__ == EXPECTED_TESTING_ALL
    assert sorted(EXPECTED_TESTING_ALL) == EXPECTED_TESTING_ALL
    star: dict[str, object] = {}
    exec("from agentcost.testing import *", star)
    assert sorted(k for k in star if k != "__builtins__") == EXPECTED_TESTING_ALL
    for name in EXPECTED_TESTING_ALL:
        assert callable(getattr(agentcost.testing, name))


def test_adapters_all_is_locked_and_importable() -> None:
    """agentcost.adapters (the toolkit the provider adapters are built on) exports exactly the expected names."""
    import agentcost.adapters

    assert agentcost.adapters.__all__ == EXPECTED_ADAPTERS_ALL
    for name in EXPECTED_ADAPTERS_ALL:
        assert getattr(agentcost.adapters, name) is not None


def test_wire_all_is_locked_and_importable() -> None:
    """agentcost.wire (the propagation format) exports exactly the expected sorted names, all importable."""
    import agentcost.wire

    assert agentcost.wire.__all__ == EXPECTED_WIRE_ALL
    # sorted the way ruff's RUF022 sorts: CONSTANTS, then Classes, then functions, each alphabetically
    assert sorted(EXPECTED_WIRE_ALL, key=lambda n: (not n.isupper(), not n[0].isupper(), n)) == EXPECTED_WIRE_ALL
    assert len(set(EXPECTED_WIRE_ALL)) == len(EXPECTED_WIRE_ALL)
    star: dict[str, object] = {}
    exec("from agentcost.wire import *", star)
    assert sorted(k for k in star if k != "__builtins__") == sorted(EXPECTED_WIRE_ALL)
    for name in EXPECTED_WIRE_ALL:
        assert getattr(agentcost.wire, name) is not None
    errors = [getattr(agentcost.wire, name) for name in EXPECTED_WIRE_ALL if name.startswith("Wire")]
    errors = [error for error in errors if isinstance(error, type) and issubclass(error, Exception)]
    assert len(errors) == 8
    for error in errors:
        assert issubclass(error, agentcost.wire.WireError)
        assert issubclass(error, agentcost.AgentCostError)


def test_remote_all_is_locked_and_importable() -> None:
    """agentcost.remote (delegation and grafting across boundaries) exports exactly the expected names."""
    import agentcost.remote

    assert agentcost.remote.__all__ == EXPECTED_REMOTE_ALL
    for name in EXPECTED_REMOTE_ALL:
        assert getattr(agentcost.remote, name) is not None


def test_import_agentcost_loads_neither_pydantic_nor_the_wire_format() -> None:
    """The wire format (and pydantic under it) is imported only by the code that uses it."""
    code = (
        "import sys, agentcost; print(sorted(m for m in sys.modules "
        "if m.split('.')[0] == 'pydantic' or m in ('agentcost.wire', 'agentcost.remote')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_version_matches_distribution_metadata() -> None:
    """agentcost.__version__ is the installed agentcost-sdk distribution's version."""
    assert agentcost.__version__ == importlib.metadata.version("agentcost-sdk")


def test_exported_errors_form_the_documented_hierarchy() -> None:
    """Every exported error class derives from AgentCostError."""
    names = [
        name
        for name in EXPECTED_ALL
        if name.startswith("Invalid") or "Error" in name or name in ("BudgetExceeded", "StoreUnavailable")
    ]
    errors = [getattr(agentcost, name) for name in names]
    assert len(errors) == 12
    for error in errors:
        assert issubclass(error, agentcost.AgentCostError)
        assert issubclass(error, Exception)


CORE_WITHOUT_ADAPTERS = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = set(sys.argv[1:])

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"adapter package {name} is not installed")
            return None

    sys.meta_path.insert(0, Blocker())

    import agentcost
    import agentcost.adapters
    import agentcost.testing
    from decimal import Decimal

    loaded_at_import = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    with agentcost.run("r", attrs={"team": "t"}) as ctx:
        with ctx.child("agent") as agent:
            agent.record_llm(model="gpt-4o", provider="openai", usage=agentcost.Usage(input_tokens=1000))
            agent.record_tool("t", cost=Decimal("0.5"))
    copy = agentcost.CostTree.from_json(ctx.tree.to_json())
    assert copy.render() == ctx.tree.render()
    loaded_after_use = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    print(ctx.tree.total_cost, loaded_at_import, loaded_after_use)
    """
)


def test_core_imports_and_works_without_adapter_packages() -> None:
    """With every adapter package made unimportable, agentcost imports, records, prices and round-trips."""
    result = subprocess.run(
        [sys.executable, "-c", CORE_WITHOUT_ADAPTERS, *ADAPTER_PACKAGES],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.5025", "[]", "[]"]


def test_import_agentcost_loads_no_adapter_package() -> None:
    """A plain `import agentcost` (adapters installed or not) imports none of the adapter packages."""
    code = "import sys, agentcost; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    in_sys_modules = set(result.stdout.split())
    import_timed = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "agentcost" in in_sys_modules
    assert "agentcost" in import_timed
    for name in in_sys_modules | import_timed:
        for package in ADAPTER_PACKAGES:
            assert name != package, name
            assert not name.startswith(package + "."), name
