"""Dashboard widgets as metric queries plus formulas (the request's plain `q` is deprecated
in the provider), shared by every dashboard of the program."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import pulumi_datadog as datadog

from settings.slo import SLO_TIMEFRAMES


def host_variable(hostnames: Sequence[str]) -> datadog.DashboardTemplateVariableArgs:
    """A `host` template variable offering the stack's hosts, all of them (`*`) on load.

    Every query of a board filters on `$host` and on the stack's host tags, so `*` means
    this stack's hosts only.
    """
    return datadog.DashboardTemplateVariableArgs(name="host", prefix="host", defaults=["*"],
                                                 available_values=list(hostnames))


def timeseries(title: str, queries: str | Sequence[str], formulas: str | Sequence[str] = "q1",
               display_type: str = "line", events: Optional[str] = None) -> datadog.DashboardWidgetArgs:
    """A timeseries of metric queries `q1`, `q2`... (in that order), drawn through `formulas`,
    with the events `events` finds overlaid (the hosts' changes, so a spike lines up with its cause)."""
    queries = [queries] if isinstance(queries, str) else list(queries)
    formulas = [formulas] if isinstance(formulas, str) else list(formulas)
    return datadog.DashboardWidgetArgs(
        timeseries_definition=datadog.DashboardWidgetTimeseriesDefinitionArgs(
            title=title,
            show_legend=True,
            events=[datadog.DashboardWidgetTimeseriesDefinitionEventArgs(q=events)] if events else None,
            requests=[datadog.DashboardWidgetTimeseriesDefinitionRequestArgs(
                display_type=display_type,
                queries=[datadog.DashboardWidgetTimeseriesDefinitionRequestQueryArgs(
                    metric_query=datadog.DashboardWidgetTimeseriesDefinitionRequestQueryMetricQueryArgs(
                        name=f"q{n}", query=query, data_source="metrics"))
                    for n, query in enumerate(queries, 1)],
                formulas=[datadog.DashboardWidgetTimeseriesDefinitionRequestFormulaArgs(formula_expression=f)
                          for f in formulas],
            )],
        ))


def query_value(title: str, query: str, aggregator: str, live_span: str) -> datadog.DashboardWidgetArgs:
    return datadog.DashboardWidgetArgs(
        query_value_definition=datadog.DashboardWidgetQueryValueDefinitionArgs(
            title=title,
            live_span=live_span,
            precision=0,
            requests=[datadog.DashboardWidgetQueryValueDefinitionRequestArgs(
                queries=[datadog.DashboardWidgetQueryValueDefinitionRequestQueryArgs(
                    metric_query=datadog.DashboardWidgetQueryValueDefinitionRequestQueryMetricQueryArgs(
                        name="q1", query=query, data_source="metrics", aggregator=aggregator))],
                formulas=[datadog.DashboardWidgetQueryValueDefinitionRequestFormulaArgs(
                    formula_expression="q1")],
            )],
        ))


def toplist(title: str, query: str, order: str, count: int = 10) -> datadog.DashboardWidgetArgs:
    """The `count` groups of `query` with the lowest (`asc`) or highest (`desc`) last value."""
    return datadog.DashboardWidgetArgs(
        toplist_definition=datadog.DashboardWidgetToplistDefinitionArgs(
            title=title,
            requests=[datadog.DashboardWidgetToplistDefinitionRequestArgs(
                queries=[datadog.DashboardWidgetToplistDefinitionRequestQueryArgs(
                    metric_query=datadog.DashboardWidgetToplistDefinitionRequestQueryMetricQueryArgs(
                        name="q1", query=query, data_source="metrics", aggregator="last"))],
                formulas=[datadog.DashboardWidgetToplistDefinitionRequestFormulaArgs(
                    formula_expression="q1",
                    limit=datadog.DashboardWidgetToplistDefinitionRequestFormulaLimitArgs(count=count, order=order))],
            )],
        ))


def slo(title: str, slo_id: Any, timeframe: str) -> datadog.DashboardWidgetArgs:
    """An SLO's status and remaining error budget over its own timeframe and the shorter ones
    (`slo_id`: the id, or the engine's output of it)."""
    windows = list(SLO_TIMEFRAMES[: SLO_TIMEFRAMES.index(timeframe) + 1])
    return datadog.DashboardWidgetArgs(
        service_level_objective_definition=datadog.DashboardWidgetServiceLevelObjectiveDefinitionArgs(
            title=title, slo_id=slo_id, view_type="detail", view_mode="overall",
            time_windows=windows, show_error_budget=True))


def log_stream(title: str, query: str) -> datadog.DashboardWidgetArgs:
    """The newest log lines `query` finds, with their host and service."""
    return datadog.DashboardWidgetArgs(
        log_stream_definition=datadog.DashboardWidgetLogStreamDefinitionArgs(
            title=title, query=query, indexes=[], columns=["host", "service"], show_date_column=True,
            show_message_column=True, message_display="expanded-md",
            sort=datadog.DashboardWidgetLogStreamDefinitionSortArgs(column="time", order="desc")))
