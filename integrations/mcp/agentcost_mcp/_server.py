"""The server side: a tool runs in a cost run opened from the request's ``_meta``, and reports back in the result's."""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from mcp_types.jsonrpc import INVALID_PARAMS

from agentcost import Budget, BudgetExceeded, BudgetStore, CostContext
from agentcost.remote import serve
from agentcost.wire import Keyring, Verifier, WireContext, WireError, accept_context

CONTEXT_META_KEY: Final = "dev.agentcost/context"
"""The request ``_meta`` key whose value is the signed context token (caller to tool server)."""
REPORT_META_KEY: Final = "dev.agentcost/report"
"""The ``CallToolResult._meta`` key whose value is the signed final report token (tool server to caller)."""

DEFAULT_MAX_REPORT_BYTES: Final = 65_536
"""A report token with the tree larger than this is sent with the totals only (the caller's verifier must accept
tokens of this size: ``Verifier(..., max_bytes=65536)``)."""

_MCP_CONTEXT_PARAM: Final = "agentcost_mcp_context"

logger = logging.getLogger("agentcost_mcp")

ToolFn = Callable[..., Any]


def context_token(meta: Mapping[str, Any] | None) -> object | None:
    """The context token in a request's ``_meta`` (``None`` when absent); for a low-level ``Server`` handler:
    ``accept_context(context_token(ctx.meta), verifier)``. Any value is returned as sent: the verifier rejects a
    value that is not a token as malformed."""
    if meta is None:
        return None
    return meta.get(CONTEXT_META_KEY)


def with_report(result: CallToolResult, token: str | None) -> CallToolResult:
    """``result`` with the report token added to its ``_meta`` (other keys kept); unchanged when ``token`` is
    ``None``."""
    if token is None:
        return result
    return result.model_copy(update={"meta": {**(result.meta or {}), REPORT_META_KEY: token}})


def _cost_parameter(fn: ToolFn, hints: Mapping[str, Any]) -> str | None:
    for name in inspect.signature(fn).parameters:
        hint = hints.get(name)
        if hint is CostContext or (
            typing.get_origin(hint) is not None and CostContext in typing.get_args(hint)  # CostContext | None
        ):
            return name
    return None


def cost_aware(
    *,
    keyring: Keyring,
    verifier: Verifier,
    name: str | None = None,
    attrs: Mapping[str, str] | None = None,
    allow_override: bool = False,
    budget: Budget | None = None,
    store: BudgetStore | None = None,
    refuse: bool = False,
    tree: bool = True,
    max_report_bytes: int = DEFAULT_MAX_REPORT_BYTES,
) -> Callable[[ToolFn], Callable[..., Awaitable[Any]]]:
    """Make a tool function cost-aware; apply it under the SDK's registration::

        @server.tool()
        @cost_aware(keyring=keyring, verifier=verifier, name="search-server")
        async def search(query: str, cost: CostContext) -> str: ...

    Each call runs in a cost run named ``name`` (default: the function's name) opened from the context in the
    request's ``_meta`` with :func:`agentcost.remote.serve`: the caller's attribution (``attrs``, what this server
    pins, wins unless ``allow_override``) and its delegated budget, narrowed by ``budget`` (this server's own cap).
    The parameter annotated ``CostContext`` receives that run; it is not part of the tool's input schema. The final
    report, signed with ``keyring``, goes back in the result's ``_meta`` under :data:`REPORT_META_KEY`, also when the
    tool fails (an error result, status ``error``). A request without a context, or with one ``verifier`` rejects
    (counted in ``verifier.rejected``), runs as the server's own run and gets no report; with ``refuse=True`` an
    invalid context is refused with an ``INVALID_PARAMS`` protocol error and the tool does not run. An uncaught
    ``BudgetExceeded`` becomes an error result reading ``skipped: budget ...``.
    """

    def decorate(fn: ToolFn) -> Callable[..., Awaitable[Any]]:
        hints = typing.get_type_hints(fn, include_extras=True)
        signature = inspect.signature(fn)
        cost_param = _cost_parameter(fn, hints)
        own_mcp_param = find_context_parameter(fn)
        mcp_param = own_mcp_param or _MCP_CONTEXT_PARAM
        skip = [p for p in (cost_param, own_mcp_param) if p is not None]
        converter = func_metadata(fn, skip_names=skip)
        run_name = name or fn.__name__
        is_async = inspect.iscoroutinefunction(fn)

        parameters = [
            parameter.replace(annotation=hints.get(parameter.name, parameter.annotation))
            for parameter in signature.parameters.values()
            if parameter.name != cost_param
        ]
        if own_mcp_param is None:
            extra = inspect.Parameter(_MCP_CONTEXT_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Context)
            at = next((i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD), len(parameters))
            parameters.insert(at, extra)
        returns = hints.get("return", signature.return_annotation)

        @functools.wraps(fn)
        async def tool(**kwargs: Any) -> Any:
            mcp_ctx: Context = kwargs[mcp_param] if own_mcp_param else kwargs.pop(mcp_param)
            request = mcp_ctx.request_context
            tool_name = str((request.params or {}).get("name", fn.__name__))
            try:
                inbound: WireContext | None = accept_context(
                    context_token(request.meta),  # any value: rejected as malformed
                    verifier,
                    refuse=refuse,
                )
            except WireError as error:
                raise MCPError(INVALID_PARAMS, f"agentcost context refused ({error.reason}): {error}") from error
            served = serve(inbound, run_name, attrs=attrs, allow_override=allow_override, budget=budget, store=store)
            if cost_param is not None:
                kwargs[cost_param] = served.ctx
            result: CallToolResult
            try:
                if is_async:
                    value = await fn(**kwargs)
                else:
                    value = await anyio.to_thread.run_sync(functools.partial(fn, **kwargs))
                converted = value if isinstance(value, CallToolResult) else converter.convert_result(value)
                if not isinstance(converted, CallToolResult):  # an InputRequiredResult: a round, not the end
                    served.ctx.end()
                    return converted
                result = converted
                served.ctx.end(status="error" if result.is_error else None)
            except MCPError as error:
                served.__exit__(type(error), error, error.__traceback__)
                raise  # a protocol error carries no result, so no report: the caller records the cost as unknown
            except BudgetExceeded as error:
                served.__exit__(type(error), error, error.__traceback__)
                result = _error_result(f"skipped: budget ({error})")
            except ToolError as error:
                served.__exit__(type(error), error, error.__traceback__)
                result = _error_result(f"Error executing tool {tool_name}: {error}")
            except Exception as error:
                logger.exception("Tool %r raised an unexpected exception", tool_name)
                served.__exit__(type(error), error, error.__traceback__)
                result = _error_result(f"Error executing tool {tool_name}")  # the crash's text stays on the server
            return with_report(result, served.report(keyring, tree=tree, max_bytes=max_report_bytes))

        tool.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters, return_annotation=returns
        )
        tool.__annotations__ = {
            **{p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty},
            **({"return": returns} if returns is not inspect.Signature.empty else {}),
        }
        del tool.__wrapped__  # the SDK reads the signature above, not fn's
        return tool

    return decorate


def _error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
