"""Tools with a price, and optional tools that the budget may skip."""

from __future__ import annotations

import inspect
from decimal import Decimal
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForToolRun,
    BaseCallbackManager,
    CallbackManagerForToolRun,
)
from langchain_core.callbacks.manager import BaseRunManager
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from agentcost import CostContext, to_money
from agentcost_langgraph._handler import COST_KEY, OPTIONAL_KEY, CostCallbackHandler

__all__ = ["node_context", "optional_tool", "priced_tool"]


def priced_tool(tool: BaseTool, *, cost: Decimal | int | str) -> BaseTool:
    """A copy of ``tool`` that declares its price per call (``Decimal("0")`` for a free tool).

    Under a hard cost budget a tool with no price, here or in the run's price book, is refused like any call that
    cannot be priced; declaring it lets the budget hold the right amount.
    """
    money = to_money(cost, what="cost")
    return tool.model_copy(update={"metadata": {**(tool.metadata or {}), COST_KEY: str(money)}})


def optional_tool(tool: BaseTool, *, cost: Decimal | int | str | None = None) -> BaseTool:
    """A copy of ``tool`` that the budget may skip: when it cannot pay for the call, the tool does not run and the
    model gets "skipped: budget (why)" as the tool's answer, so it can carry on without it.

    ``cost`` is the price per call (default: the run's price book's price for the tool's name).
    """
    metadata: dict[str, Any] = {**(tool.metadata or {}), OPTIONAL_KEY: True}
    if cost is not None:
        metadata[COST_KEY] = str(to_money(cost, what="cost"))
    return _OptionalTool(
        inner=tool,
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
        response_format=tool.response_format,
        tags=tool.tags,
        metadata=metadata,
        handle_tool_error=tool.handle_tool_error,
        handle_validation_error=tool.handle_validation_error,
    )


def _skip_reason(run_manager: BaseRunManager | None) -> str | None:
    if run_manager is None:
        return None
    for handler in run_manager.handlers:
        if isinstance(handler, CostCallbackHandler):
            reason = handler.skipped(run_manager.run_id)
            if reason is not None:
                return reason
    return None


def _inner_kwargs(
    method: Any, config: RunnableConfig, run_manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None
) -> dict[str, Any]:
    """What LangChain's ``BaseTool.run`` would pass a tool's ``_run`` besides its arguments."""
    parameters = inspect.signature(method).parameters
    extra: dict[str, Any] = {}
    if "run_manager" in parameters:
        extra["run_manager"] = run_manager
    if "config" in parameters:
        extra["config"] = config
    return extra


class _OptionalTool(BaseTool):
    """``optional_tool``'s wrapper: the same name, description and arguments; runs the wrapped tool's own
    implementation unless the budget skipped the call (no second tool run, so one span)."""

    inner: BaseTool

    def _skipped(self, reason: str) -> Any:
        return (reason, None) if self.response_format == "content_and_artifact" else reason

    def _run(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        reason = _skip_reason(run_manager)
        if reason is not None:
            return self._skipped(reason)
        return self.inner._run(*args, **kwargs, **_inner_kwargs(self.inner._run, config, run_manager))

    async def _arun(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        reason = _skip_reason(run_manager)
        if reason is not None:
            return self._skipped(reason)
        return await self.inner._arun(*args, **kwargs, **_inner_kwargs(self.inner._arun, config, run_manager))


def node_context(config: RunnableConfig) -> CostContext | None:
    """The cost context of the node (or tool) that ``config`` was handed to, for recording costs LangChain does not
    see (an embedding call, a paid API) on the right node: ``node_context(config).record(...)``.

    ``None`` when no :class:`CostCallbackHandler` is in the config's callbacks.
    """
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        handlers, parent = callbacks.handlers, callbacks.parent_run_id
    elif isinstance(callbacks, list):
        handlers, parent = callbacks, None
    else:
        return None
    for handler in handlers:
        if isinstance(handler, CostCallbackHandler):
            return handler.node(parent)
    return None
