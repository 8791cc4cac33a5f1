"""Nights-and-weekends downtime schedules for the my_metric monitor (seed section 3, bonus).

Together the two schedules mute every weekday night (19:00-09:00) and the whole weekend,
and never a weekday 09:00-19:00, in the stack's timezone:

* nights: Sunday to Friday at 19:00, for 14h (ends 09:00 the next morning, Monday to
  Saturday). Sunday's night covers Monday 00:00-09:00, Friday's covers Friday evening.
* weekend: Saturday at 00:00, for 48h (Saturday and Sunday).

Every hand-over overlaps by at least 4 hours, and neither window ends at a weekday
09:00 after crossing a DST change, so the schedules stay correct whether Datadog adds
the duration in wall-clock time or in elapsed time across a DST change (the weekend
window crosses one twice a year; it then ends at Sunday 23:00 or Monday 01:00, both
inside Sunday's night). Datadog does not document which one it uses.

Each recurrence has a `start` that lies on its rule and is in the future when the
schedule is created. Without one, the API starts the schedule at its creation instant,
and RFC 5545 leaves a start that is not on the rule undefined: read as the first
occurrence, a schedule created on a Tuesday at 10:15 would mute from 10:15 for 14 h
(48 h for the weekend one). Worse, the provider sends `start: null` again on every
update (the attribute is optional + computed), re-anchoring the schedule at the
update instant. With a start on the rule both readings give the same occurrences.

The start must also be stable (a start computed from the clock would change in every
preview) and never in the past (the API refuses that). So each schedule has an anchor:
a `time:Static` resource (pulumiverse-time) that records the instant it was created,
once, in the stack's state. The start is the first occurrence at least 15 minutes after
that instant (`WeeklyRecurrence.first_start`). The anchor's triggers are every input of
its schedule, so any change to a schedule records a new instant, and the schedule is
replaced (`replace_on_changes=["*"]`), never updated in place: a new schedule with a
new start in the future. Muting begins at each schedule's first occurrence after the
`pulumi up` that created it; a change applied during a muted night or weekend unmutes
the rest of it (the old schedule is deleted, the new one starts at its next occurrence).

Not verifiable offline: that Datadog expands the rule from the start as
python-dateutil does (the tests expand it both ways). After `pulumi up`, check the
next occurrences under "Preview planned recurrences" on the downtime's page in Datadog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_datadog as datadog
import pulumiverse_time

from components.base import Component
from rendering.recurrence import NIGHTS, WEEKEND, WeeklyRecurrence, api_start, parse_instant
from settings.naming import Naming
from settings.stack import DowntimeSettings, MonitorSettings

# The schedules target one monitor by id; "*" matches every group of it: my_metric is
# grouped by host, so every host of the stack, however many there are (no per-host copy).
SCOPE = "*"


@dataclass(frozen=True)
class DowntimesArgs:
    naming: Naming
    downtimes: DowntimeSettings  # the timezone where "night" and "weekend" are
    monitors: MonitorSettings    # its handles are notified when a downtime starts and ends


class Downtimes(Component):
    """Two recurring DowntimeSchedules on one monitor (dev only, by settings)."""

    former_types = ("observability-lab:datadog:Downtimes",)

    def __init__(self, name: str, args: DowntimesArgs, monitor: datadog.Monitor,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        handles = " ".join(args.monitors.notification_handles)
        tz = args.downtimes.timezone

        def schedule(suffix: str, recurrence: WeeklyRecurrence, when: str) -> datadog.DowntimeSchedule:
            message = args.naming.title(f"The my_metric monitor is muted on every host of the stack {when} "
                                        f"({tz}). {handles}")
            # Every input of the schedule but the start, which is derived from the anchor.
            definition: dict[str, pulumi.Input[str]] = {
                "scope": SCOPE, "monitorId": monitor.id, "timezone": tz, "displayTimezone": tz,
                "rrule": recurrence.rrule, "duration": recurrence.duration, "message": message,
            }
            anchor = pulumiverse_time.Static(f"{name}-{suffix}-anchor", triggers=definition, opts=self.child)
            start = anchor.rfc3339.apply(lambda instant: api_start(recurrence.first_start(parse_instant(instant), tz)))
            return datadog.DowntimeSchedule(
                f"{name}-{suffix}",
                scope=SCOPE,
                monitor_identifier=datadog.DowntimeScheduleMonitorIdentifierArgs(
                    monitor_id=monitor.id.apply(int)),
                recurring_schedule=datadog.DowntimeScheduleRecurringScheduleArgs(
                    timezone=tz,
                    recurrences=[datadog.DowntimeScheduleRecurringScheduleRecurrenceArgs(
                        rrule=recurrence.rrule, duration=recurrence.duration, start=start)],
                ),
                display_timezone=tz,
                message=message,
                opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["*"]),
            )

        self.nights = schedule("nights", NIGHTS, "from 19:00 until 09:00 the next morning")
        self.weekend = schedule("weekend", WEEKEND, "from Saturday 00:00 until Monday 00:00")
        self.register_outputs({"nights": self.nights.id, "weekend": self.weekend.id})
