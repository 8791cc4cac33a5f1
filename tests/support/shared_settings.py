"""Settings changes that several tests evaluate together, one evaluation per stack instead of one per test.

Each test changes settings that only it reads, and reads only what its own settings decide (a
Datadog object of its concern), so no change here can make another test pass or fail. A test
changes its own values here, together with its expectations, and keeps a failure its own.
"""

from __future__ import annotations

# dev: the Datadog objects' own settings (monitors, SLO widgets, downtimes, bike-share monitors).
MY_METRIC = {"myMetricCritical": 900, "myMetricWarning": 600, "myMetricWindowMinutes": 15, "noDataMinutes": 30}
FOOTER = {"monitorMessageFooter": "Runbook: https://wiki.example.com/observability-lab"}
SLO_WIDGETS = {"sloTimeframe": "90d"}
DOWNTIME_TIMEZONE = {"downtimeTimezone": "Europe/Paris"}
BIKE_SHARE_MONITORS = {"bikeShareEmptyBelowBikes": 3, "bikeShareFullBelowDocks": 4, "bikeShareWindowMinutes": 20,
                       "bikeShareStaleAfterMinutes": 30}
DEV_DATADOG = {**MY_METRIC, **FOOTER, **SLO_WIDGETS, **DOWNTIME_TIMEZONE, **BIKE_SHARE_MONITORS}

# dev: who reaches the host (the security group's app rule) and who may decrypt its key (the KMS key policy).
APP_CIDRS = {"appAllowedCidrs": ["203.0.113.0/24", "2001:db8::/32"]}
DEPLOYERS = {"deployerArns": ["arn:aws:iam::123456789012:role/ci/observability-lab-delivery",
                              "arn:aws:iam::123456789012:user/alice"]}
DEV_ACCESS = {**APP_CIDRS, **DEPLOYERS}

# prod: switched-on workloads and the monitors' settings.
JAVA_APP = {"javaAppEnabled": True, "hostCount": 3, "javaWindowMinutes": 30, "javaHeapWarningPercent": 70,
            "javaHeapCriticalPercent": 85, "javaMajorGcWarningMsPerMinute": 500,
            "javaMajorGcCriticalMsPerMinute": 1500.5, "javaPoolWarningPercent": 60, "javaPoolCriticalPercent": 80,
            "javaService": "fleet"}
SLOS = {"sloTimeframe": "7d", "sloAvailabilityTarget": 99.9, "sloLatencyTarget": 95, "sloLatencySeconds": 0.3,
        "sloPageFastBurn": "10x 2h/10m", "sloTicketBurn": "2x 1d/2h", "sloPageHandles": ["@pager"],
        "sloTicketHandles": ["@jira-sre"]}
APP_MONITORS = {"appWorkers": 5, "appErrorLogsPerHost": 250}
DOWNTIMES_ON = {"downtimesEnabled": True}
PROD_DATADOG = {**JAVA_APP, **SLOS, **APP_MONITORS, **DOWNTIMES_ON}
