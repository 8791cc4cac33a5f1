"""Downtime schedules: dev only, wired to the my_metric monitor, and correct by simulation.

The simulation takes the registered rules and durations, computes each schedule's
start the way the program does (`WeeklyRecurrence.first_start` from the instant its
anchor records), and expands the rule with python-dateutil under both readings of a
recurrence start: RFC 5545's, where the start always counts as the first occurrence,
and the one where it only bounds the set (dateutil's own). Durations are added both
in wall-clock and in elapsed time, since Datadog does not document which it uses
across DST. Schedules are created, and later changed (replaced, with a new anchor
instant), at odd times on every day of the weeks around both DST changes of New York
and Paris. Minute by minute over the following two weeks: no weekday 09:00-19:00
minute is ever muted, and once both schedules have started, no night or weekend
minute is left unmuted.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rruleset, rrulestr

from offline.engine import FAKE_NOW
from rendering.recurrence import NIGHTS, START_LEAD, WEEKEND, WeeklyRecurrence, api_start, parse_instant
from tests.support.resource_types import ANCHOR, DOWNTIME, DOWNTIMES
from tests.support.shared_settings import DEV_DATADOG, PROD_DATADOG

UTC = timezone.utc


def schedules(evaluation) -> dict[str, dict]:
    return {r.name.removeprefix("datadog-downtimes-"): r.inputs for r in evaluation.of_type(DOWNTIME)}


def recurrence_of(schedule: dict) -> dict:
    (recurrence,) = schedule["recurringSchedule"]["recurrences"]
    return recurrence


def test_prod_has_no_downtimes(prod):
    assert prod.of_type(DOWNTIME) == [] and prod.of_type(DOWNTIMES) == [] and prod.of_type(ANCHOR) == []


def test_no_deprecated_downtime_resource_anywhere(stack_eval):
    assert stack_eval.of_type("datadog:index/downtime:Downtime") == []


def test_enabling_follows_the_setting_not_the_stack_name(run_stack):
    assert len(run_stack("prod", PROD_DATADOG).of_type(DOWNTIME)) == 2  # DOWNTIMES_ON
    assert run_stack("dev", {"downtimesEnabled": False}).of_type(DOWNTIME) == []


def test_dev_has_two_schedules_and_their_anchors_under_one_component(dev):
    component = dev.one(DOWNTIMES)
    found = dev.of_type(DOWNTIME) + dev.of_type(ANCHOR)
    assert {r.name for r in found} == {"datadog-downtimes-nights", "datadog-downtimes-weekend",
                                       "datadog-downtimes-nights-anchor", "datadog-downtimes-weekend-anchor"}
    assert all(r.parent == component.urn for r in found)


def test_both_mute_the_my_metric_monitor_by_integer_id(dev):
    monitor_id = dev.outputs["monitorIds"]["myMetric"]
    for key, s in schedules(dev).items():
        value = s["monitorIdentifier"]["monitorId"]
        # A number (the mock engine carries numbers as floats), never the id string.
        assert isinstance(value, (int, float)) and value == int(value), key
        assert int(value) == int(monitor_id), key
        assert "monitorTags" not in s["monitorIdentifier"], key
        assert s["scope"] == "*", key  # every host group of the my_metric monitor


def test_schedules_use_the_program_recurrences_in_the_stack_timezone(dev):
    expected = {"nights": NIGHTS, "weekend": WEEKEND}
    for key, s in schedules(dev).items():
        recurring = s["recurringSchedule"]
        assert recurring["timezone"] == s["displayTimezone"] == "America/New_York", key
        recurrence = recurrence_of(s)
        assert (recurrence["rrule"], recurrence["duration"]) == (expected[key].rrule, expected[key].duration)
        assert "DTSTART" not in recurrence["rrule"], key  # Datadog refuses DTSTART in the rule
        assert "oneTimeSchedule" not in s, key


def test_start_is_the_first_occurrence_after_the_anchor_instant(dev):
    anchors = {r.name.removeprefix("datadog-downtimes-").removesuffix("-anchor"): r.outputs
               for r in dev.of_type(ANCHOR)}
    for key, recurrence in (("nights", NIGHTS), ("weekend", WEEKEND)):
        recorded = parse_instant(anchors[key]["rfc3339"])
        assert recorded == FAKE_NOW  # the mock engine's fixed "now"
        start = recurrence_of(schedules(dev)[key])["start"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", start), start  # the provider's format
        assert start == api_start(recurrence.first_start(recorded, "America/New_York"))
    # FAKE_NOW is a Wednesday 10:37 in New York: nights start that evening, weekend on Saturday.
    assert recurrence_of(schedules(dev)["nights"])["start"] == "2030-01-02T19:00:00"
    assert recurrence_of(schedules(dev)["weekend"])["start"] == "2030-01-05T00:00:00"


def test_every_schedule_input_but_the_start_triggers_a_new_anchor(dev):
    """So any change records a new instant, hence a new start in the future."""
    anchors = {r.name.removesuffix("-anchor"): r.inputs["triggers"] for r in dev.of_type(ANCHOR)}
    for schedule in dev.of_type(DOWNTIME):
        triggers = set(anchors[schedule.name].values())
        for path, value in leaves(schedule.inputs):
            if path != "recurringSchedule.recurrences.0.start":
                shown = str(int(value)) if isinstance(value, float) else str(value)
                assert shown in triggers, (schedule.name, path)


def test_any_change_replaces_the_schedule(dev):
    for schedule in dev.of_type(DOWNTIME):
        assert schedule.options["replaceOnChanges"] == ["*"], schedule.name


def test_messages_name_the_env_and_notify_the_handles(dev):
    for key, s in schedules(dev).items():
        assert s["message"].startswith("[dev] The my_metric monitor is muted on every host of the stack "), key
        assert s["message"].endswith("@sre-dev@example.com"), key


def test_timezone_setting_moves_both_schedules(run_stack):
    moved = schedules(run_stack("dev", DEV_DATADOG))  # DOWNTIME_TIMEZONE: Europe/Paris
    for key, s in moved.items():
        assert s["recurringSchedule"]["timezone"] == s["displayTimezone"] == "Europe/Paris", key
    # FAKE_NOW is 16:37 in Paris: still before that evening's 19:00.
    assert recurrence_of(moved["nights"])["start"] == "2030-01-02T19:00:00"


def test_recurrence_refuses_nonsense():
    for days, hour, hours in ((("XX",), 19, 14), ((), 19, 14), (("MO",), 24, 1), (("MO",), 9, 0)):
        with pytest.raises(ValueError):
            WeeklyRecurrence(days, hour, hours)


def leaves(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}.{index}")
    else:
        yield path, value


# --- simulation ---------------------------------------------------------------------

def _duration(text: str) -> timedelta:
    amount, unit = re.fullmatch(r"(\d+)([mhdw])", text).groups()
    return timedelta(**{{"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: int(amount)})


@lru_cache(maxsize=None)
def occurrences(rule: str, start: datetime, until: datetime, start_is_occurrence: bool) -> tuple[datetime, ...]:
    """The rule expanded from `start`: RFC 5545 counts the start itself as the first
    occurrence; dateutil alone only yields instances of the rule at or after it."""
    expansion = rrulestr(rule, dtstart=start)
    if start_is_occurrence:
        with_start = rruleset()
        with_start.rrule(expansion)
        with_start.rdate(start)
        expansion = with_start
    return tuple(expansion.between(start, until, inc=True))


class Minutes:
    """One flag per minute from `origin` (UTC): a minute counts by its first instant."""

    def __init__(self, origin: datetime, count: int):
        self.origin, self.count = origin, count

    def index(self, instant: datetime) -> int:
        return max(0, min(self.count, -(-int((instant - self.origin).total_seconds()) // 60)))

    def mark(self, flags: bytearray, start: datetime, end: datetime) -> None:
        a, b = self.index(start), self.index(end)
        flags[a:b] = b"\x01" * (b - a)


class Week:
    """Working hours (weekdays 09:00-19:00 local) as minute flags, for one timezone and period."""

    def __init__(self, tz: ZoneInfo, first_day: date, days: int):
        self.tz = tz
        self.minutes = Minutes(datetime(*first_day.timetuple()[:3], tzinfo=tz).astimezone(UTC), days * 24 * 60)
        self.working = bytearray(self.minutes.count)
        for offset in range(days):
            day = first_day + timedelta(days=offset)
            if day.weekday() < 5:
                self.minutes.mark(self.working, datetime(day.year, day.month, day.day, 9, tzinfo=tz),
                                  datetime(day.year, day.month, day.day, 19, tzinfo=tz))
        self.resting = bytes(1 - flag for flag in self.working)

    def local(self, index: int) -> str:
        return f"{(self.minutes.origin + timedelta(minutes=index)).astimezone(self.tz):%a %Y-%m-%d %H:%M %Z}"

    def first_muted_working_minute(self, muted: bytearray, start: datetime, end: datetime):
        a, b = self.minutes.index(start), self.minutes.index(end)
        if int.from_bytes(self.working[a:b], "big") & int.from_bytes(muted[a:b], "big"):
            return next(self.local(i) for i in range(a, b) if self.working[i] and muted[i])
        return None

    def first_unmuted_resting_minute(self, muted: bytearray, start: datetime, end: datetime):
        a, b = self.minutes.index(start), self.minutes.index(end)
        if int.from_bytes(self.resting[a:b], "big") & ~int.from_bytes(muted[a:b], "big"):
            return next(self.local(i) for i in range(a, b) if self.resting[i] and not muted[i])
        return None


def muted_minutes(week: Week, schedules_from: list[tuple[datetime, dict[str, datetime], datetime]],
                  rules: dict[str, tuple[str, timedelta]], start_is_occurrence: bool, wall_clock: bool) -> bytearray:
    """Minute flags muted by successive generations of schedules, each (created, starts, deleted)."""
    muted = bytearray(week.minutes.count)
    horizon = week.minutes.origin + timedelta(minutes=week.minutes.count)
    for created, starts, deleted in schedules_from:
        for key, start in starts.items():
            rule, length = rules[key]
            for occurrence in occurrences(rule, start, horizon, start_is_occurrence):
                # Aware + timedelta is wall-clock arithmetic in Python; via UTC it is elapsed time.
                end = (occurrence + length) if wall_clock else (occurrence.astimezone(UTC) + length)
                week.minutes.mark(muted, max(occurrence, created), min(end, deleted))
    return muted


RECURRENCES = {"nights": NIGHTS, "weekend": WEEKEND}
# (timezone, a DST change day): the weeks simulated are the one ending that Sunday and the next two.
DST_CHANGES = {
    "New York spring forward": ("America/New_York", date(2027, 3, 14)),
    "New York fall back": ("America/New_York", date(2027, 11, 7)),
    "Paris spring forward": ("Europe/Paris", date(2027, 3, 28)),
    "Paris fall back": ("Europe/Paris", date(2027, 10, 31)),
}
# Local times of creation: around the 09:00 and 19:00 hand-overs, within START_LEAD of
# 19:00, midnight (the weekend's start) and plain odd ones.
ODD_TIMES = ((0, 0, 0), (0, 17, 31), (8, 59, 59), (9, 0, 0), (13, 37, 42), (18, 49, 30), (18, 59, 59),
             (19, 0, 0), (23, 59, 59))
# A later change of the schedules (a new anchor instant, the old schedules deleted): lands on
# other days and times, across the DST change for the creations late in the week.
UPDATE_AFTER = timedelta(days=3, hours=5, minutes=17, seconds=13)
CHECKED_FOR = timedelta(days=15)


def simulate(tz_name: str, change: date, start_is_occurrence: bool, wall_clock: bool,
             first_start=lambda recurrence, recorded, tz: recurrence.first_start(recorded, tz)) -> list[str]:
    """Every violation found for creations on each day of the week ending on `change`."""
    tz = ZoneInfo(tz_name)
    monday = change - timedelta(days=6)
    week = Week(tz, monday, 7 + 3 + 15 + 2)
    rules = {key: (r.rrule, _duration(r.duration)) for key, r in RECURRENCES.items()}
    problems = []
    for day in (monday + timedelta(days=d) for d in range(7)):
        for clock in ODD_TIMES:
            created = datetime(day.year, day.month, day.day, *clock, tzinfo=tz)
            updated = created + UPDATE_AFTER
            first = {k: first_start(r, created, tz_name) for k, r in RECURRENCES.items()}
            second = {k: first_start(r, updated, tz_name) for k, r in RECURRENCES.items()}
            for label, generations in (
                    ("created", [(created, first, created + CHECKED_FOR)]),
                    ("created then changed", [(created, first, updated), (updated, second, updated + CHECKED_FOR)])):
                muted = muted_minutes(week, generations, rules, start_is_occurrence, wall_clock)
                end = generations[-1][2]
                found = week.first_muted_working_minute(muted, created, end)
                if found:
                    problems.append(f"{label} {created:%a %H:%M:%S}: working minute {found} muted")
                for born, starts, deleted in generations:
                    # Muting is complete once both schedules of a generation have started.
                    found = week.first_unmuted_resting_minute(muted, max(starts.values()), deleted)
                    if found:
                        problems.append(f"{label} {created:%a %H:%M:%S}: resting minute {found} not muted")
    return problems


@pytest.mark.parametrize("wall_clock", [True, False], ids=["wall-clock", "elapsed"])
@pytest.mark.parametrize("start_is_occurrence", [True, False], ids=["start-is-occurrence", "start-bounds"])
@pytest.mark.parametrize("tz_name,change", DST_CHANGES.values(), ids=DST_CHANGES.keys())
def test_schedules_mute_weekday_nights_and_weekends_only(tz_name, change, start_is_occurrence, wall_clock):
    assert simulate(tz_name, change, start_is_occurrence, wall_clock) == []


def test_starts_lie_on_the_rule_and_leave_a_lead():
    """Checked against dateutil's own expansion: the start is one of the rule's instances."""
    for tz_name, change in DST_CHANGES.values():
        tz = ZoneInfo(tz_name)
        for hours in range(0, 7 * 24, 7):
            recorded = datetime(*change.timetuple()[:3], 3, 13, tzinfo=tz) - timedelta(days=6, hours=hours)
            for recurrence in RECURRENCES.values():
                start = recurrence.first_start(recorded, tz_name)
                after = rrulestr(recurrence.rrule, dtstart=recorded.astimezone(tz)).after(
                    (recorded + START_LEAD).astimezone(tz), inc=True)
                assert start == after and start.utcoffset() == after.utcoffset(), (recorded, recurrence.rrule)


def test_simulation_catches_a_start_that_is_not_on_the_rule():
    """The defect this design removes: no start (the API then starts at the creation, or
    the provider re-sends null on an update) under RFC 5545's reading mutes working hours."""
    def at_the_instant(recurrence, recorded, tz):
        return recorded.astimezone(ZoneInfo(tz))

    problems = simulate("America/New_York", date(2027, 3, 14), True, True, first_start=at_the_instant)
    assert any(p.startswith("created Tue 13:37:42: working minute Tue") for p in problems), problems[:5]
