"""The app's log lines: one JSON object per line on stdout, which systemd hands to journald.

Each line carries ddtrace's log correlation (`dd.trace_id`, `dd.span_id`, `dd.service`,
`dd.env`, `dd.version`: ddtrace-run's logging integration puts them on every LogRecord made
while a span is active), so Datadog links a trace to its log lines. The other keys are
Datadog's standard attributes (`status`, `logger.name`, `http.*`, `duration` in ns, `error.*`).

Each line starts with its syslog priority (`<3>` for an error): journald reads that prefix
(systemd's SyslogLevelPrefix=, on by default), strips it and records PRIORITY, from which the
Agent's journald tailer sets the log's status, whatever Datadog makes of the JSON's own.
"""
import json
import logging
import time

CORRELATION = ("trace_id", "span_id", "service", "env", "version")
# logging level -> syslog priority (sd-daemon(3): <2> crit, <3> err, <4> warning, <6> info, <7> debug)
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno):
    return next((p for level, p in PRIORITIES if levelno >= level), 7)


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                         + f".{int(record.msecs):03d}Z",
            "status": record.levelname.lower(),
            "logger": {"name": record.name},
            "message": record.getMessage(),
        }
        correlation = {key: getattr(record, f"dd.{key}") for key in CORRELATION if hasattr(record, f"dd.{key}")}
        if correlation:
            entry["dd"] = correlation
        for key in ("http", "duration"):  # passed with `extra=` by the app's request log
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = {"kind": record.exc_info[0].__name__, "message": str(record.exc_info[1]),
                              "stack": self.formatException(record.exc_info)}
        return f"<{priority(record.levelno)}>" + json.dumps(entry, separators=(",", ":"), default=str)
