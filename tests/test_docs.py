"""The documentation's examples run, and the README's commands are the ones CI runs.

A page whose examples need an adapter says so on its first line, ``<!-- requires: agentcost_langgraph -->`` (several
modules separated by spaces or commas). Its examples are skipped, with the reason printed, when a module is not
importable, so the core passes its tests with no adapter installed; under ``CI``, where everything is installed, a
missing module fails the test instead. A page whose examples need an environment of their own says on its first
line which test runs them instead, ``<!-- runs-in: integrations/kagenti/tests/test_kagenti_agent.py -->``.
"""

from __future__ import annotations

import gc
import importlib
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
REQUIRES = re.compile(r"\A<!-- requires: ([\w., ]+?) -->\n")
RUNS_IN = re.compile(r"\A<!-- runs-in: ([\w./-]+) -->\n")
ADAPTER_IMPORT = re.compile(r"^\s*(?:from|import) (agentcost_\w+)", re.M)


def python_blocks(path: Path) -> list[str]:
    return PYTHON_BLOCK.findall(path.read_text(encoding="utf-8"))


def required_modules(path: Path) -> list[str]:
    """The modules a page's first line says its examples need."""
    match = REQUIRES.match(path.read_text(encoding="utf-8"))
    return match.group(1).replace(",", " ").split() if match else []


def require_modules(path: Path) -> None:
    """Skip the test (fail it under CI) unless every module the page requires can be imported."""
    for module in required_modules(path):
        try:
            importlib.import_module(module)
        except ImportError as error:
            reason = f"{path.name} needs {module}, which is not installed ({error}); install it to run the examples"
            print(reason)
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)


def runs_in(path: Path) -> str | None:
    """The test that runs a page's examples in an environment of their own, if its first line names one."""
    match = RUNS_IN.match(path.read_text(encoding="utf-8"))
    return match.group(1) if match else None


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p) and not runs_in(p)], ids=lambda p: p.name)
def test_doc_examples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every python block of a page runs, in order, in one namespace (as a reader would paste them)."""
    require_modules(path)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for number, block in enumerate(python_blocks(path), start=1):
        code = compile(block, f"{path.name}[block {number}]", "exec")
        exec(code, namespace)
    # Examples, like most readers' code, leave their SDK clients to the garbage collector: collect them here, where
    # the unclosed sockets' ResourceWarnings belong to no test, rather than in whichever test runs when gc does.
    namespace.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_pages_declare_the_adapters_they_import() -> None:
    """A page whose examples import an adapter requires it on its first line, so the core's suite can skip it."""
    for path in DOCS:
        if runs_in(path):
            continue  # its own environment, its own test
        imported = {name for block in python_blocks(path) for name in ADAPTER_IMPORT.findall(block)}
        assert imported <= set(required_modules(path)), (
            f"{path.name}: add <!-- requires: {' '.join(sorted(imported))} -->"
        )


def test_pages_run_elsewhere_are_run_by_the_test_they_name() -> None:
    """A ``runs-in`` page names a test file that exists and reads that page's examples."""
    elsewhere = {path.name: runs_in(path) for path in DOCS if runs_in(path)}
    assert elsewhere  # docs/kagenti.md at least
    for page, test in elsewhere.items():
        assert test is not None
        assert f'"{page}"' in (ROOT / test).read_text(encoding="utf-8"), f"{test} does not run {page}"


def test_every_doc_page_has_a_runnable_example_or_is_reference() -> None:
    """Guides carry at least one runnable example; only the architecture page may have none."""
    without = {p.name for p in DOCS if not python_blocks(p)}
    assert without <= {"architecture.md"}


def test_readme_commands_are_what_ci_runs() -> None:
    """The README gives exactly two commands (demo, tests), and .ci/run runs the test command as written."""
    commands = [block.strip() for block in SHELL_BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))]
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("agentcost demo")
    assert tests.endswith("-m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()


def test_demo_command_prints_tree_and_totals(tmp_path: Path) -> None:
    """`agentcost demo` runs end to end and prints the tree, the total and the per-model table, then writes the
    30-day ledger where it runs, finds the planted anomaly and names the command that opens the dashboard."""
    result = subprocess.run(
        [sys.executable, "-m", "agentcost", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "agent researcher" in result.stdout
    assert "llm claude-sonnet-4-5" in result.stdout
    assert "Total: $0.0763095 + 1 unpriced" in result.stdout
    assert "Cost by model" in result.stdout
    assert (tmp_path / "agentcost-demo.db").is_file()
    assert "Anomaly: team=ads" in result.stdout
    assert "agentcost dashboard" in result.stdout
