"""The request bodies pulumi-datadog sends for our Datadog resources, checked against
Datadog's own API models (the `datadog-api-client` package).

pulumi-datadog wraps terraform-provider-datadog; each `*_body` function below rebuilds,
from a resource's registered inputs (Pulumi's camelCase names), the JSON body the
provider's build function makes from the same Terraform attributes, for the fields
this program uses. Each cites the provider function it follows. An input the mapping
does not know is an error: a new field must be mapped before it can pass.

`problems()` loads a body into the client's model with type checking on and lists
every field the model does not define, every value outside an enum and every node no
model could parse (the client keeps those as "unparsed" instead of failing).
"""
from __future__ import annotations

import re
from typing import Any

from datadog_api_client.configuration import Configuration
from datadog_api_client.model_utils import (
    ModelComposed,
    ModelNormal,
    ModelSimple,
    UnparsedObject,
    validate_and_convert_types,
)
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.service_level_objective_request import ServiceLevelObjectiveRequest
from datadog_api_client.v2.model.downtime_create_request import DowntimeCreateRequest


class Inputs:
    """A resource's inputs, consumed key by key; `done()` fails on any key left over."""

    def __init__(self, values: dict[str, Any], where: str):
        self.values, self.where, self.used = dict(values), where, set()

    def take(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.values.get(key, default)

    def nested(self, key: str) -> Inputs:
        return Inputs(self.take(key) or {}, f"{self.where}.{key}")

    def each(self, key: str) -> list[Inputs]:
        return [Inputs(item, f"{self.where}.{key}[{i}]") for i, item in enumerate(self.take(key) or [])]

    def done(self) -> None:
        unmapped = set(self.values) - self.used
        if unmapped:
            raise AssertionError(f"{self.where}: no mapping to the API body for inputs {sorted(unmapped)}")


def _int(value: Any) -> int:
    """Pulumi carries numbers as floats; the provider's TypeInt attributes are integers."""
    if float(value) != int(value):
        raise AssertionError(f"not an integer: {value!r}")
    return int(value)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def monitor_body(inputs: dict[str, Any]) -> dict[str, Any]:
    """datadog/resource_datadog_monitor.go, buildMonitorStruct (the SDKv2 resource the
    provider serves unless its framework monitor is switched on)."""
    i = Inputs(inputs, "monitor")
    thresholds = i.nested("monitorThresholds")
    options = {
        # monitor_thresholds.*: json.Number(value).Float64()
        "thresholds": {_snake(k): float(thresholds.take(k)) for k in list(thresholds.values)},
        # Always sent, from the schema defaults when unset (true, false, true, 300).
        "include_tags": i.take("includeTags", True),
        "notify_no_data": i.take("notifyNoData", False),
        "require_full_window": i.take("requireFullWindow", True),
        "new_host_delay": _int(i.take("newHostDelay", 300)),
        # GetOk with the schema default 10: sent even where no-data does not notify.
        "no_data_timeframe": _int(i.take("noDataTimeframe", 10)),
    }
    # `if attr, ok := d.GetOk("new_group_delay"); ok { o.SetNewGroupDelay(...) }`: only when nonzero.
    new_group_delay = _int(i.take("newGroupDelay", 0))
    if new_group_delay:
        options["new_group_delay"] = new_group_delay
    # `if monitorType == MONITORTYPE_LOG_ALERT`: enable_logs_sample always (false unless set),
    # groupby_simple_monitor only when set.
    if i.values.get("type") == "log alert":
        options["enable_logs_sample"] = i.take("enableLogsSample", False)
        if i.take("groupbySimpleMonitor") is not None:
            options["groupby_simple_monitor"] = i.values["groupbySimpleMonitor"]
    thresholds.done()
    # monitor_threshold_windows.0.{trigger,recovery}_window -> options.threshold_windows
    windows = i.nested("monitorThresholdWindows")
    if windows.values:
        options["threshold_windows"] = {_snake(k): windows.take(k) for k in list(windows.values)}
    windows.done()
    body = {"name": i.take("name"), "type": i.take("type"), "query": i.take("query"),
            "message": i.take("message"), "tags": i.take("tags", []), "options": options}
    i.done()
    return body


def dashboard_body(inputs: dict[str, Any]) -> dict[str, Any]:
    """datadog/resource_datadog_dashboard.go, buildDatadogDashboard."""
    i = Inputs(inputs, "dashboard")
    body = {"title": i.take("title"), "layout_type": i.take("layoutType"), "description": i.take("description"),
            "template_variables": [_template_variable(v) for v in i.each("templateVariables")],
            "widgets": [_widget(w) for w in i.each("widgets")]}
    i.done()
    return body


def _template_variable(i: Inputs) -> dict[str, Any]:
    """buildDatadogTemplateVariables: available_values only when the list is not empty."""
    body = {"name": i.take("name"), "prefix": i.take("prefix"), "defaults": i.take("defaults")}
    available = i.take("availableValues")
    if available:
        body["available_values"] = available
    i.done()
    return body


def _widget(i: Inputs) -> dict[str, Any]:
    """buildDatadogWidget: one *_definition block becomes `definition` with its `type`."""
    if "timeseriesDefinition" in i.values:
        definition = _timeseries(i.nested("timeseriesDefinition"))
    elif "queryValueDefinition" in i.values:
        definition = _query_value(i.nested("queryValueDefinition"))
    elif "toplistDefinition" in i.values:
        definition = _toplist(i.nested("toplistDefinition"))
    elif "serviceLevelObjectiveDefinition" in i.values:
        definition = _slo_widget(i.nested("serviceLevelObjectiveDefinition"))
    elif "logStreamDefinition" in i.values:
        definition = _log_stream(i.nested("logStreamDefinition"))
    else:
        definition = {}
    i.done()
    return {"definition": definition}


def _timeseries(i: Inputs) -> dict[str, Any]:
    """buildDatadogTimeseriesDefinition and buildDatadogTimeseriesRequests."""
    body = {"type": "timeseries", "title": i.take("title"), "show_legend": i.take("showLegend"),
            "requests": [_formula_request(r, "timeseries", display_type=r.take("displayType"))
                         for r in i.each("requests")]}
    events = [_widget_event(e) for e in i.each("events")]
    if events:  # buildDatadogWidgetEvents: q, and tags_execution when not empty
        body["events"] = events
    i.done()
    return body


def _widget_event(i: Inputs) -> dict[str, Any]:
    body = {"q": i.take("q")}
    if i.take("tagsExecution"):
        body["tags_execution"] = i.values["tagsExecution"]
    i.done()
    return body


def _slo_widget(i: Inputs) -> dict[str, Any]:
    """buildDatadogServiceLevelObjectiveDefinition: the strings when not empty, show_error_budget as set."""
    body: dict[str, Any] = {"type": "slo"}
    for key in ("title", "viewType", "sloId", "viewMode", "globalTimeTarget"):
        if i.take(key):
            body[_snake(key)] = i.values[key]
    if i.take("showErrorBudget") is not None:
        body["show_error_budget"] = i.values["showErrorBudget"]
    body["time_windows"] = i.take("timeWindows") or []
    i.done()
    return body


def _log_stream(i: Inputs) -> dict[str, Any]:
    """buildDatadogLogStreamDefinition: indexes and columns always; the rest when set."""
    body: dict[str, Any] = {"type": "log_stream", "indexes": i.take("indexes") or [], "columns": i.take("columns") or []}
    for key in ("query", "messageDisplay", "title"):
        if i.take(key):
            body[_snake(key)] = i.values[key]
    for key in ("showDateColumn", "showMessageColumn"):
        if i.take(key) is not None:
            body[_snake(key)] = i.values[key]
    sort = i.nested("sort")
    if sort.values:  # buildDatadogWidgetFieldSort
        body["sort"] = {"column": sort.take("column"), "order": sort.take("order")}
    sort.done()
    if i.take("liveSpan"):  # buildDatadogWidgetTime
        body["time"] = {"live_span": i.values["liveSpan"]}
    i.done()
    return body


def _query_value(i: Inputs) -> dict[str, Any]:
    """buildDatadogQueryValueDefinition, buildDatadogWidgetTime (live_span) and
    buildDatadogQueryValueRequests."""
    body = {"type": "query_value", "title": i.take("title"), "precision": _int(i.take("precision")),
            "time": {"live_span": i.take("liveSpan")},
            "requests": [_formula_request(r, "scalar") for r in i.each("requests")]}
    i.done()
    return body


def _toplist(i: Inputs) -> dict[str, Any]:
    """buildDatadogToplistDefinition and buildDatadogToplistRequests (scalar formulas)."""
    body = {"type": "toplist", "title": i.take("title"),
            "requests": [_formula_request(r, "scalar") for r in i.each("requests")]}
    i.done()
    return body


def _formula_request(i: Inputs, response_format: str, **extra: Any) -> dict[str, Any]:
    """A request of `query` blocks and `formula` blocks; the provider sets the
    response format (timeseries or scalar) by widget type."""
    body = {**{k: v for k, v in extra.items() if v is not None},
            "queries": [_query(q) for q in i.each("queries")],
            "response_format": response_format,
            "formulas": [_formula(f) for f in i.each("formulas")]}
    i.done()
    return body


def _query(i: Inputs) -> dict[str, Any]:
    body = _metric_query(i.nested("metricQuery"))
    i.done()
    return body


def _formula(i: Inputs) -> dict[str, Any]:
    """buildDatadogFormula: formula_expression -> formula; limit.{count,order} as WidgetFormulaLimit."""
    body = {"formula": i.take("formulaExpression")}
    limit = i.nested("limit")
    if limit.values:
        body["limit"] = {"count": _int(limit.take("count")), "order": limit.take("order")}
    limit.done()
    i.done()
    return body


def _metric_query(i: Inputs) -> dict[str, Any]:
    """buildDatadogMetricQuery: the data source is always "metrics"."""
    i.take("dataSource")
    body = {"data_source": "metrics", "name": i.take("name"), "query": i.take("query")}
    aggregator = i.take("aggregator")
    if aggregator:
        body["aggregator"] = aggregator
    i.done()
    return body


def downtime_schedule_body(inputs: dict[str, Any]) -> dict[str, Any]:
    """datadog/fwprovider/resource_datadog_downtime_schedule.go,
    buildDowntimeScheduleCreateRequestBody (recurring schedule, monitor by id)."""
    i = Inputs(inputs, "downtimeSchedule")
    monitor = i.nested("monitorIdentifier")
    schedule = i.nested("recurringSchedule")
    recurrences = []
    for r in schedule.each("recurrences"):
        recurrence = {"duration": r.take("duration"), "rrule": r.take("rrule")}
        if r.take("start") is not None:
            recurrence["start"] = r.values["start"]
        r.done()
        recurrences.append(recurrence)
    attributes = {"scope": i.take("scope"), "display_timezone": i.take("displayTimezone"),
                  "message": i.take("message"),
                  "monitor_identifier": {"monitor_id": _int(monitor.take("monitorId"))},
                  "schedule": {"timezone": schedule.take("timezone"), "recurrences": recurrences}}
    monitor.done()
    schedule.done()
    i.done()
    return {"data": {"type": "downtime", "attributes": attributes}}


def slo_body(inputs: dict[str, Any]) -> dict[str, Any]:
    """datadog/resource_datadog_service_level_objective.go, buildServiceLevelObjectiveStructs
    (the request half): a metric SLO's query, or a time-slice SLO's sli_specification."""
    i = Inputs(inputs, "serviceLevelObjective")
    body: dict[str, Any] = {"name": i.take("name"), "type": i.take("type")}
    if i.take("description"):
        body["description"] = i.values["description"]
    query = i.nested("query")
    if query.values:
        body["query"] = {"numerator": query.take("numerator"), "denominator": query.take("denominator")}
    query.done()
    spec = i.nested("sliSpecification")
    if spec.values:
        body["sli_specification"] = {"time_slice": _time_slice(spec.nested("timeSlice"))}
    spec.done()
    if i.take("tags"):
        body["tags"] = i.values["tags"]
    thresholds = []
    for t in i.each("thresholds"):  # target_display/warning_display are the API's, never sent
        threshold = {"timeframe": t.take("timeframe"), "target": float(t.take("target"))}
        if t.take("warning") is not None:
            threshold["warning"] = float(t.values["warning"])
        t.done()
        thresholds.append(threshold)
    body["thresholds"] = thresholds
    for key in ("timeframe", "targetThreshold", "warningThreshold"):
        if i.take(key) is not None:
            body[_snake(key)] = i.values[key] if key == "timeframe" else float(i.values[key])
    i.done()
    return body


def _time_slice(i: Inputs) -> dict[str, Any]:
    """buildSLOTimeSliceQueryStruct and the time_slice block: query_interval_seconds only when set."""
    query = i.nested("query")
    formula = query.nested("formula")
    body: dict[str, Any] = {
        "comparator": i.take("comparator"), "threshold": float(i.take("threshold")),
        "query": {"formulas": [{"formula": formula.take("formulaExpression")}],
                  "queries": [_query(q) for q in query.each("queries")]}}
    if i.take("queryIntervalSeconds"):
        body["query_interval_seconds"] = _int(i.values["queryIntervalSeconds"])
    formula.done()
    query.done()
    i.done()
    return body


# Resource type -> (body builder, the API model of the request body).
REQUESTS = {
    "datadog:index/monitor:Monitor": (monitor_body, Monitor),
    "datadog:index/dashboard:Dashboard": (dashboard_body, Dashboard),
    "datadog:index/downtimeSchedule:DowntimeSchedule": (downtime_schedule_body, DowntimeCreateRequest),
    "datadog:index/serviceLevelObjective:ServiceLevelObjective": (slo_body, ServiceLevelObjectiveRequest),
}


def problems(body: dict[str, Any], model: type) -> list[str]:
    """Load `body` as the API client deserializes JSON (type checking on) and list
    what the model does not accept. Type errors raise ApiTypeError."""
    loaded = validate_and_convert_types(body, (model,), [model.__name__], True, True, Configuration())
    return list(_walk(loaded, model.__name__))


def _walk(node: Any, path: str):
    if isinstance(node, UnparsedObject):
        yield f"{path}: matches none of the model's variants: {node._data_store}"
    elif isinstance(node, ModelComposed):
        for instance in node._composed_instances:
            yield from _walk(instance, path)
    elif isinstance(node, ModelSimple):
        if node._unparsed:
            yield f"{path}: {node.value!r} is not one of {sorted(node.allowed_values)}"
    elif isinstance(node, ModelNormal):
        for key, value in node._data_store.items():
            if key not in node.openapi_types:
                yield f"{path}.{key}: not a field of {type(node).__name__}"
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{path}[{index}]")
