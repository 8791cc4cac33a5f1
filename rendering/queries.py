"""Small helpers shared by the Datadog builders: scopes and numbers in queries, messages, links.

Kept free of `pulumi_datadog` so it imports instantly and is unit-testable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from settings.naming import Naming

# Live Processes search matching the app's master and workers (the command line of
# flask-app.service: `.../venv/bin/gunicorn --config ... app:app`), and its window. The
# monitor API's process alert query:
# processes(search).over(tags).by(group).rollup('count').last(timeframe) op #
APP_PROCESS_SEARCH = "gunicorn"
APP_PROCESS_WINDOW = "5m"
# The Mustache-style conditions Datadog renders per monitor state, in the order
# they appear in every message.
MESSAGE_SECTIONS = ("is_warning", "is_alert", "is_no_data", "is_recovery")


@dataclass(frozen=True)
class HostScope:
    """Which hosts a stack's Datadog objects watch, written for each query grammar.

    `tags` are host tags every host of the stack carries and no other host does (the
    Agent adds `env:<env>` and `project:<project>`): monitors and dashboards follow the
    stack as it grows or shrinks, with no per-host copy. `hostnames` are its hosts now.
    """

    tags: tuple[str, ...]
    hostnames: tuple[str, ...]

    @classmethod
    def of(cls, naming: Naming) -> HostScope:
        return cls(tags=naming.stack_host_tags, hostnames=naming.datadog_hostnames)

    @property
    def metric(self) -> str:
        """A metric query's tag filter: `env:dev,project:observability-lab`."""
        return ",".join(self.tags)

    @property
    def service_check(self) -> str:
        """The arguments of a service check query's `.over()`: one quoted tag each."""
        return ",".join(f'"{tag}"' for tag in self.tags)

    @property
    def named_hosts(self) -> str:
        """The tags and exactly the stack's hosts, in the boolean filter syntax
        (`env:dev AND project:x AND host IN (a, b)`; it cannot mix with `,` filters)."""
        return " AND ".join([*self.tags, f"host IN ({', '.join(self.hostnames)})"])


def app_process_count(workers: int) -> int:
    """gunicorn processes of the app: one master (arbiter) plus its workers."""
    return workers + 1


def number(value: float) -> str:
    """A threshold as Datadog shows it: 800.0 -> "800", 0.5 -> "0.5".

    The query and `monitor_thresholds` are both formatted with this, so the
    number in the query can never drift from the critical threshold.
    """
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def monitor_message(summary: str, sections: Mapping[str, str],
                    handles: Sequence[str], footer: str = "") -> str:
    """One line of summary, a block per monitor state, the footer, then the handles.

    The handles stay outside the conditional blocks so every transition
    (warning, alert, no data, recovery) notifies them.
    """
    unknown = set(sections) - set(MESSAGE_SECTIONS)
    if unknown:
        raise ValueError(f"unknown message sections {sorted(unknown)}")
    lines = [summary]
    for name in MESSAGE_SECTIONS:
        if name in sections:
            lines += [f"{{{{#{name}}}}}", sections[name], f"{{{{/{name}}}}}"]
    if footer:
        lines.append(footer)
    lines.append(" ".join(handles))
    return "\n".join(lines)


def app_base_url(site: str) -> str:
    """Web UI origin of a Datadog site (the API is api.<site>, the UI is not always app.<site>)."""
    # US1, EU1 and US1-FED serve the UI from app.<site>; regional sites from the site itself.
    if site.count(".") == 1:
        return f"https://app.{site}"
    return f"https://{site}"
