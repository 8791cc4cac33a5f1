"""Downtime schedules: dev only, wired to the my_metric monitor, and correct by simulation.

The simulation expands each registered schedule's RRULE with python-dateutil in the
schedule's timezone, from an arbitrary creation instant (the schedules carry no
`start`: Datadog then starts them at creation), and checks every 15 minutes of two
weeks that include a DST change: muted exactly on weekday nights 19:00-09:00 and on
the whole weekend. It does so twice: with the duration added in wall-clock time and
in elapsed time, since Datadog does not document which it uses across DST.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

SCHEDULE = "datadog:index/downtimeSchedule:DowntimeSchedule"
COMPONENT = "observability-lab:datadog:Downtimes"
UTC = timezone.utc


def schedules(evaluation) -> dict[str, dict]:
    return {r.name.removeprefix("datadog-downtimes-"): r.inputs for r in evaluation.of_type(SCHEDULE)}


def test_prod_has_no_downtimes(prod):
    assert prod.of_type(SCHEDULE) == [] and prod.of_type(COMPONENT) == []


def test_no_deprecated_downtime_resource_anywhere(stack_eval):
    assert stack_eval.of_type("datadog:index/downtime:Downtime") == []


def test_enabling_follows_the_setting_not_the_stack_name(run_stack):
    assert len(run_stack("prod", {"downtimesEnabled": True}).of_type(SCHEDULE)) == 2
    assert run_stack("dev", {"downtimesEnabled": False}).of_type(SCHEDULE) == []


def test_dev_has_two_schedules_under_one_component(dev):
    component = dev.one(COMPONENT)
    found = dev.of_type(SCHEDULE)
    assert {r.name for r in found} == {"datadog-downtimes-nights", "datadog-downtimes-weekend"}
    assert all(r.parent == component.urn for r in found)


def test_both_mute_the_my_metric_monitor_by_integer_id(dev):
    monitor_id = dev.outputs["monitorIds"]["myMetric"]
    for key, s in schedules(dev).items():
        value = s["monitorIdentifier"]["monitorId"]
        # A number (the mock engine carries numbers as floats), never the id string.
        assert isinstance(value, (int, float)) and value == int(value), key
        assert int(value) == int(monitor_id), key
        assert "monitorTags" not in s["monitorIdentifier"], key
        assert s["scope"] == "*", key


def test_schedules_are_deterministic_and_in_the_stack_timezone(dev):
    for key, s in schedules(dev).items():
        recurring = s["recurringSchedule"]
        assert recurring["timezone"] == s["displayTimezone"] == "America/New_York", key
        (recurrence,) = recurring["recurrences"]
        # No start (a past one is refused, a computed one changes every run) and no DTSTART.
        assert "start" not in recurrence and "DTSTART" not in recurrence["rrule"], key
        assert "oneTimeSchedule" not in s, key


def test_messages_name_the_env_and_notify_the_handles(dev):
    for key, s in schedules(dev).items():
        assert s["message"].startswith("[dev] ") and "observability-lab-dev" in s["message"], key
        assert s["message"].endswith("@sre-dev@example.com"), key


def test_timezone_setting_moves_both_schedules(run_stack):
    for key, s in schedules(run_stack("dev", {"downtimeTimezone": "Europe/Paris"})).items():
        assert s["recurringSchedule"]["timezone"] == s["displayTimezone"] == "Europe/Paris", key


# --- simulation ---------------------------------------------------------------------

def _duration(text: str) -> timedelta:
    amount, unit = re.fullmatch(r"(\d+)([mhdw])", text).groups()
    return timedelta(**{{"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: int(amount)})


def muted_windows(schedule: dict, created: datetime, until: datetime,
                  wall_clock: bool) -> list[tuple[datetime, datetime]]:
    """[start, end) in UTC of every occurrence of the schedule between creation and `until`."""
    tz = ZoneInfo(schedule["recurringSchedule"]["timezone"])
    windows = []
    for recurrence in schedule["recurringSchedule"]["recurrences"]:
        length = _duration(recurrence["duration"])
        rule = rrulestr(recurrence["rrule"], dtstart=created.astimezone(tz))
        for start in rule.between(created.astimezone(tz), until.astimezone(tz), inc=True):
            # Aware + timedelta is wall-clock arithmetic in Python; via UTC it is elapsed time.
            end = start + length if wall_clock else start.astimezone(UTC) + length
            windows.append((start.astimezone(UTC), end.astimezone(UTC)))
    return windows


def should_be_muted(local: datetime) -> bool:
    return local.weekday() >= 5 or local.hour < 9 or local.hour >= 19


# (stack timezone, creation instant (local), first Monday of two simulated weeks)
PERIODS = {
    "New York, spring forward 2027-03-14": ("America/New_York", (2027, 3, 3, 13, 37, 42), (2027, 3, 8)),
    "New York, fall back 2027-11-07": ("America/New_York", (2027, 10, 27, 10, 11, 12), (2027, 11, 1)),
    "Paris, spring forward 2027-03-28": ("Europe/Paris", (2027, 3, 19, 19, 30, 0), (2027, 3, 22)),
    "Paris, fall back 2027-10-31": ("Europe/Paris", (2027, 10, 20, 8, 59, 59), (2027, 10, 25)),
}


@pytest.mark.parametrize("wall_clock", [True, False], ids=["wall-clock", "elapsed"])
@pytest.mark.parametrize("tz_name,created,monday", PERIODS.values(), ids=PERIODS.keys())
def test_schedules_mute_weekday_nights_and_weekends_only(run_stack, tz_name, created, monday, wall_clock):
    tz = ZoneInfo(tz_name)
    evaluation = run_stack("dev", {"downtimeTimezone": tz_name})
    start = datetime(*monday, tzinfo=tz)
    end = start + timedelta(days=14)
    windows = [w for s in schedules(evaluation).values()
               for w in muted_windows(s, datetime(*created, tzinfo=tz), end, wall_clock)]

    def muted(local: datetime) -> bool:
        instant = local.astimezone(UTC)
        return any(a <= instant < b for a, b in windows)

    for week in (0, 7):
        day = lambda offset, hour, minute=0: datetime(  # noqa: E731
            *(start + timedelta(days=week + offset)).timetuple()[:3], hour, minute, tzinfo=tz)
        for label, at in {"Monday 20:00": day(0, 20), "Tuesday 08:30": day(1, 8, 30),
                          "Friday 23:00": day(4, 23), "Saturday 12:00": day(5, 12),
                          "Sunday 23:00": day(6, 23), "next Monday 03:00": day(7, 3)}.items():
            assert muted(at), f"{label} {at} should be muted"
        for label, at in {"Wednesday 12:00": day(2, 12), "Monday 09:30": day(0, 9, 30),
                          "Friday 18:59": day(4, 18, 59), "Monday 09:00": day(0, 9)}.items():
            assert not muted(at), f"{label} {at} should not be muted"

    # Every 15 minutes of the two weeks, in UTC so the DST change itself is walked through.
    instant = start.astimezone(UTC)
    while instant < end.astimezone(UTC):
        local = instant.astimezone(tz)
        assert muted(local) == should_be_muted(local), local
        instant += timedelta(minutes=15)
