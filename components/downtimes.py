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

No `start`, on purpose. The recurrence `start` is optional ("if not provided, the
downtime starts the moment it is created"); when given, the API rejects one in the past
("Scheduled downtime start cannot be in the past", terraform-provider-datadog #68,
#1169, #2060), so a literal date breaks the first re-create after that date, and a
date computed from the clock changes on every run (a diff in every preview). Instead
the time of day is in the RRULE (BYHOUR/BYMINUTE/BYSECOND, standard RFC 5545 parts;
Datadog only excludes DTSTART, DTEND and DURATION), so any creation instant yields the
same 19:00 / 00:00 occurrences and the program's inputs never change. The provider
keeps the API's computed `start` in state (the attribute is optional + computed), so
previews stay clean.

Not verifiable offline: that Datadog expands BYHOUR/BYMINUTE/BYSECOND from a creation
instant the way python-dateutil does (the tests simulate exactly that). After the
first `pulumi up`, check the next occurrences under "Preview planned recurrences" on
the downtime's page in Datadog.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_datadog as datadog

from components.settings import Settings

NIGHTS_RRULE = "FREQ=WEEKLY;BYDAY=SU,MO,TU,WE,TH,FR;BYHOUR=19;BYMINUTE=0;BYSECOND=0"
NIGHTS_DURATION = "14h"
WEEKEND_RRULE = "FREQ=WEEKLY;BYDAY=SA;BYHOUR=0;BYMINUTE=0;BYSECOND=0"
WEEKEND_DURATION = "48h"


class Downtimes(pulumi.ComponentResource):
    """Two recurring DowntimeSchedules on one monitor (dev only, by settings)."""

    def __init__(self, name: str, settings: Settings, monitor: datadog.Monitor,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:datadog:Downtimes", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        host = settings.datadog_hostname
        handles = " ".join(settings.monitors.notification_handles)
        tz = settings.downtimes.timezone

        def schedule(suffix: str, rrule: str, duration: str, when: str) -> datadog.DowntimeSchedule:
            return datadog.DowntimeSchedule(
                f"{name}-{suffix}",
                # The schedule targets one monitor by id; that monitor is a simple alert
                # (no groups), so the group scope must be "*" to match it at all.
                scope="*",
                monitor_identifier=datadog.DowntimeScheduleMonitorIdentifierArgs(
                    monitor_id=monitor.id.apply(int)),
                recurring_schedule=datadog.DowntimeScheduleRecurringScheduleArgs(
                    timezone=tz,
                    recurrences=[datadog.DowntimeScheduleRecurringScheduleRecurrenceArgs(
                        rrule=rrule, duration=duration)],
                ),
                display_timezone=tz,
                message=(f"[{settings.env}] The my_metric monitor on {host} is muted {when} "
                         f"({tz}). {handles}"),
                opts=child,
            )

        self.nights = schedule("nights", NIGHTS_RRULE, NIGHTS_DURATION,
                               "from 19:00 until 09:00 the next morning")
        self.weekend = schedule("weekend", WEEKEND_RRULE, WEEKEND_DURATION,
                                "from Saturday 00:00 until Monday 00:00")
        self.register_outputs({"nights": self.nights.id, "weekend": self.weekend.id})
