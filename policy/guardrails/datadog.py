"""Datadog: monitors that are tagged, notify someone and alert where they say; targeted
downtimes; dashboards that can be re-scoped."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from guardrails.values import get, items, label, number, plain, strings

MONITOR = "datadog:index/monitor:Monitor"
DOWNTIME_SCHEDULE = "datadog:index/downtimeSchedule:DowntimeSchedule"
DOWNTIME = "datadog:index/downtime:Downtime"  # the v1 API's, deprecated but still available
DASHBOARD = "datadog:index/dashboard:Dashboard"
DASHBOARD_JSON = "datadog:index/dashboardJson:DashboardJson"

TAGS, MESSAGE, TYPE, QUERY = "tags", "message", "type", "query"
CRITICAL = "monitorThresholds.critical"
MONITOR_IDENTIFIER, MONITOR_ID, MONITOR_TAGS = "monitorIdentifier", "monitorId", "monitorTags"
SCOPE, SCOPES = "scope", "scopes"
TEMPLATE_VARIABLES = "templateVariables"
DASHBOARD_DOCUMENT = "dashboard"

REQUIRED_TAG_PREFIXES = ("env:", "service:")
# "@sre@example.com", "@pagerduty-team", "@slack-ops": an @ that does not continue a word
# (so a plain e-mail address in the text is not a notification).
HANDLE = re.compile(r"(?<![\w.@])@[\w.+-]+")
METRIC_TYPES = {"metric alert", "query alert"}  # "query alert" is how the API reports metric monitors
# The comparison that ends a metric monitor's query: "... > 800".
QUERY_THRESHOLD = re.compile(r"(?:>=|<=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")
EVERYTHING = {"", "*"}


def _monitor_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MONITOR:
        return
    tags = strings(get(args.props, TAGS))
    missing = [p for p in REQUIRED_TAG_PREFIXES if not any(t.startswith(p) and len(t) > len(p) for t in tags)]
    if missing:
        report(f"{label(args)}: no {' or '.join(t + '<value>' for t in missing)} tag (tags: {tags}); "
               "add them so the monitor is found by environment and service "
               "(the program uses settings.standard_tags).", None)


def _monitor_notifies(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MONITOR:
        return
    message = str(get(args.props, MESSAGE) or "")
    if not HANDLE.search(message):
        report(f"{label(args)}: its message notifies no one; add at least one @handle "
               "(@team@example.com, @pagerduty-..., @slack-...) to the message "
               "(the program appends notificationHandles).", None)


def _metric_threshold_matches(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MONITOR or get(args.props, TYPE) not in METRIC_TYPES:
        return
    query = str(get(args.props, QUERY) or "")
    critical = number(get(args.props, CRITICAL))
    match = QUERY_THRESHOLD.search(query)
    if critical is None:
        report(f"{label(args)}: a metric alert without {CRITICAL}; set "
               "monitor_thresholds=datadog.MonitorMonitorThresholdsArgs(critical=...) to the query's threshold.", None)
    elif match is None:
        report(f"{label(args)}: its query '{query}' ends in no comparison with a threshold; "
               f"end it with '> {get(args.props, CRITICAL)}' (the critical threshold).", None)
    elif float(match.group(1)) != critical:
        report(f"{label(args)}: its query alerts at {match.group(1)} but {CRITICAL} is "
               f"{get(args.props, CRITICAL)}; Datadog requires them to match: build both from one value.", None)


def _is_set(mapping: Any, key: str) -> bool:
    """Whether `key` has a value; one only known after the update (a new monitor's id) counts."""
    try:
        return isinstance(mapping, Mapping) and plain(mapping.get(key)) is not None
    except UnknownValueError:
        return True


def _targets(args: ResourceValidationArgs) -> tuple[bool, bool]:
    """(targets a monitor, targets a scope) of a downtime of either API."""
    props = args.props
    if args.resource_type == DOWNTIME_SCHEDULE:
        identifier = get(props, MONITOR_IDENTIFIER)
        tags = strings(get(identifier, MONITOR_TAGS)) if isinstance(identifier, Mapping) else []
        return (_is_set(identifier, MONITOR_ID) or any(t not in EVERYTHING for t in tags),
                str(get(props, SCOPE) or "").strip() not in EVERYTHING)
    tags = strings(get(props, MONITOR_TAGS))
    return (_is_set(props, MONITOR_ID) or any(t not in EVERYTHING for t in tags),
            any(s.strip() not in EVERYTHING for s in strings(get(props, SCOPES))))


def _downtime_targeted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (DOWNTIME_SCHEDULE, DOWNTIME):
        return
    monitor, scope = _targets(args)
    if not (monitor or scope):
        report(f"{label(args)}: it targets no monitor and no scope, so it mutes every monitor of the "
               "organisation; set monitor_identifier (monitor_id, or monitor_tags other than \"*\") "
               "or a scope such as \"env:dev\".", None)


def _dashboard_template_variable(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == DASHBOARD:
        variables = items(get(args.props, TEMPLATE_VARIABLES))
    elif args.resource_type == DASHBOARD_JSON:
        try:
            document = json.loads(str(get(args.props, DASHBOARD_DOCUMENT) or "{}"))
        except ValueError:
            return
        variables = (document.get("template_variables") or []) if isinstance(document, dict) else []
    else:
        return
    if not variables:
        report(f"{label(args)}: no template variable; add one (the program's dashboards have `host`) "
               "so the board can be re-scoped to another host or environment.", None)


POLICIES = [
    ResourceValidationPolicy(
        name="datadog-monitor-env-service-tags",
        description="Datadog monitors carry env: and service: tags.",
        validate=_monitor_tags,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="datadog-monitor-notifies-a-handle",
        description="Datadog monitors notify at least one @handle.",
        validate=_monitor_notifies,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="datadog-metric-monitor-threshold-matches-query",
        description="Metric monitors alert at their critical threshold: the query's threshold equals monitorThresholds.critical.",
        validate=_metric_threshold_matches,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="datadog-downtime-targets-monitor-or-scope",
        description="Datadog downtimes target a monitor or a scope, never everything.",
        validate=_downtime_targeted,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="datadog-dashboard-template-variable",
        description="Datadog dashboards have at least one template variable.",
        validate=_dashboard_template_variable,
        enforcement_level=EnforcementLevel.ADVISORY,
    ),
]

READS = {
    "datadog-monitor-env-service-tags": {MONITOR: [TAGS]},
    "datadog-monitor-notifies-a-handle": {MONITOR: [MESSAGE]},
    "datadog-metric-monitor-threshold-matches-query": {MONITOR: [TYPE, QUERY, CRITICAL]},
    "datadog-downtime-targets-monitor-or-scope": {
        DOWNTIME_SCHEDULE: [f"{MONITOR_IDENTIFIER}.{MONITOR_ID}", f"{MONITOR_IDENTIFIER}.{MONITOR_TAGS}", SCOPE],
        DOWNTIME: [MONITOR_ID, MONITOR_TAGS, SCOPES]},
    "datadog-dashboard-template-variable": {DASHBOARD: [TEMPLATE_VARIABLES], DASHBOARD_JSON: [DASHBOARD_DOCUMENT]},
}
