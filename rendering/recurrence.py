"""Weekly recurrences for downtime schedules: the RRULE, its duration, and a start on it.

Kept free of Pulumi so the downtime simulation in the tests can use it directly, and
free of any RRULE library: the rules here are simple enough to render and step
through by hand, and the tests expand what this renders with python-dateutil (an
independent RFC 5545 implementation) to check both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

# RFC 5545 day codes in Python's weekday() order (Monday = 0).
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# The first start is at least this far after the recorded instant: the schedule is
# created moments after that instant, in the same `pulumi up`, so its start is never
# in the past when the API receives it (the API refuses a past start).
START_LEAD = timedelta(minutes=15)
# The recurrence start as the provider sends it: local time, no UTC offset.
API_START_FORMAT = "%Y-%m-%dT%H:%M:%S"


@dataclass(frozen=True)
class WeeklyRecurrence:
    """Every week on `days` at `hour`:00:00 local time, for `hours` hours."""

    days: tuple[str, ...]
    hour: int
    hours: int

    def __post_init__(self) -> None:
        if not self.days or not set(self.days) <= set(WEEKDAYS) or not 0 <= self.hour <= 23 or self.hours < 1:
            raise ValueError(f"not a weekly recurrence: {self}")

    @property
    def rrule(self) -> str:
        # The time of day is in the rule too, so the rule alone fixes every occurrence.
        return f"FREQ=WEEKLY;BYDAY={','.join(self.days)};BYHOUR={self.hour};BYMINUTE=0;BYSECOND=0"

    @property
    def duration(self) -> str:
        return f"{self.hours}h"

    def first_start(self, recorded: datetime, tz: str) -> datetime:
        """The first occurrence at least START_LEAD after `recorded` (aware), in `tz`.

        It lies on the rule, so whether an RRULE expansion counts the start itself as
        an occurrence (RFC 5545's DTSTART) or only as a lower bound, the occurrences
        are the same.
        """
        zone = ZoneInfo(tz)
        earliest = (recorded + START_LEAD).astimezone(zone)
        day = earliest.date()
        for _ in range(15):  # two weeks: a slot skipped for not existing (DST gap) recurs
            candidate = datetime(day.year, day.month, day.day, self.hour, tzinfo=zone)
            # Compared in UTC: aware datetimes sharing a tzinfo compare by wall clock.
            if (WEEKDAYS[day.weekday()] in self.days and _exists(candidate)
                    and candidate.astimezone(timezone.utc) >= earliest.astimezone(timezone.utc)):
                return candidate
            day += timedelta(days=1)
        raise ValueError(f"no occurrence of {self.rrule} in {tz} within two weeks of {recorded}")


# The downtimes' two schedules (components/downtimes.py): every weekday night and the weekend.
NIGHTS = WeeklyRecurrence(days=("SU", "MO", "TU", "WE", "TH", "FR"), hour=19, hours=14)
WEEKEND = WeeklyRecurrence(days=("SA",), hour=0, hours=48)


def api_start(start: datetime) -> str:
    """A local start as the recurrence's `start` field: no offset (the schedule's timezone applies)."""
    return start.strftime(API_START_FORMAT)


def parse_instant(rfc3339: str) -> datetime:
    """An RFC 3339 instant (as the time provider records it) as an aware datetime."""
    instant = datetime.fromisoformat(rfc3339)
    if instant.tzinfo is None:
        raise ValueError(f"instant without a UTC offset: {rfc3339!r}")
    return instant


def _exists(local: datetime) -> bool:
    """False for a wall-clock time skipped by a DST change."""
    return local.astimezone(timezone.utc).astimezone(local.tzinfo).replace(tzinfo=None) == local.replace(tzinfo=None)
