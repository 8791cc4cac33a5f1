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
# Monitors whose query ends in the comparison with their critical threshold: metric ("query
# alert" is how the API reports them), SLO burn-rate and log monitors.
THRESHOLD_TYPES = {"metric alert", "query alert", "slo alert", "log alert"}
SLO_ALERT = "slo alert"
# An SLO burn-rate query and the windows Datadog accepts (docs: Burn Rate Alerts): over the
# SLO's 7d/30d/90d timeframe, 1 h <= long window <= 48 h, short window < long window.
BURN_RATE = re.compile(r'burn_rate\("[^"]+"\)\.over\("(7d|30d|90d)"\)\.long_window\("(\d+)([mhd])"\)'
                       r'\.short_window\("(\d+)([mhd])"\)\s*(?:>=|>)')
MINUTES = {"m": 1, "h": 60, "d": 1440}
LONG_WINDOW_MINUTES = (60, 48 * 60)
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
    if args.resource_type != MONITOR or get(args.props, TYPE) not in THRESHOLD_TYPES:
        return
    query = str(get(args.props, QUERY) or "")
    critical = number(get(args.props, CRITICAL))
    match = QUERY_THRESHOLD.search(query)
    if critical is None:
        report(f"{label(args)}: a {get(args.props, TYPE)} without {CRITICAL}; set "
               "monitor_thresholds=datadog.MonitorMonitorThresholdsArgs(critical=...) to the query's threshold.", None)
    elif match is None:
        report(f"{label(args)}: its query '{query}' ends in no comparison with a threshold; "
               f"end it with '> {get(args.props, CRITICAL)}' (the critical threshold).", None)
    elif float(match.group(1)) != critical:
        report(f"{label(args)}: its query alerts at {match.group(1)} but {CRITICAL} is "
               f"{get(args.props, CRITICAL)}; Datadog requires them to match: build both from one value.", None)


def _burn_rate_windows(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MONITOR or get(args.props, TYPE) != SLO_ALERT:
        return
    query = str(get(args.props, QUERY) or "")
    if not query.startswith("burn_rate("):
        return  # an error-budget alert: no windows
    match = BURN_RATE.match(query)
    if match is None:
        report(f"{label(args)}: '{query}' is not burn_rate(\"<slo id>\").over(\"7d|30d|90d\")"
               ".long_window(\"<n>h\").short_window(\"<n>m\") > <rate>, the only burn-rate query Datadog takes.", None)
        return
    long_window = int(match.group(2)) * MINUTES[match.group(3)]
    short_window = int(match.group(4)) * MINUTES[match.group(5)]
    if not LONG_WINDOW_MINUTES[0] <= long_window <= LONG_WINDOW_MINUTES[1]:
        report(f"{label(args)}: its long window is {match.group(2)}{match.group(3)}; Datadog accepts "
               "1 hour to 48 hours.", None)
    if not 0 < short_window < long_window:
        report(f"{label(args)}: its short window ({match.group(4)}{match.group(5)}) must be shorter than "
               f"its long window ({match.group(2)}{match.group(3)}).", None)


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
        description="Metric, SLO and log monitors alert at their critical threshold: the query's threshold equals monitorThresholds.critical.",
        validate=_metric_threshold_matches,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="datadog-burn-rate-windows-datadog-accepts",
        description="SLO burn-rate monitors use windows Datadog accepts: a 1 to 48 hour long window, a shorter short one.",
        validate=_burn_rate_windows,
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
    "datadog-burn-rate-windows-datadog-accepts": {MONITOR: [TYPE, QUERY]},
    "datadog-downtime-targets-monitor-or-scope": {
        DOWNTIME_SCHEDULE: [f"{MONITOR_IDENTIFIER}.{MONITOR_ID}", f"{MONITOR_IDENTIFIER}.{MONITOR_TAGS}", SCOPE],
        DOWNTIME: [MONITOR_ID, MONITOR_TAGS, SCOPES]},
    "datadog-dashboard-template-variable": {DASHBOARD: [TEMPLATE_VARIABLES], DASHBOARD_JSON: [DASHBOARD_DOCUMENT]},
}
