"""What the trace intake (ddapm-test-agent) received, read as the app's logs show it."""


def logged_trace_id(span: dict) -> str:
    """The trace id as ddtrace writes it in logs (format_trace_id), from the two halves the
    trace intake received: the low 64 bits as `trace_id`, the high ones in `_dd.p.tid`."""
    high = span["meta"].get("_dd.p.tid")
    full = int(high, 16) << 64 | span["trace_id"] if high else span["trace_id"]
    return f"{full:032x}" if full >= 1 << 64 else str(full)
