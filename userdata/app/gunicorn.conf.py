"""Gunicorn settings for the sample Flask app.

Started by systemd as:
  ddtrace-run gunicorn --config=/opt/sample-flask-app/gunicorn.conf.py app:app
ddtrace-run must wrap gunicorn (not the other way round) so every forked worker is traced.
"""
import os

# APP_HOST exists only so tests can bind to loopback; the host listens on all interfaces.
_port = int(os.environ.get("APP_PORT", "5050"))
bind = f"{os.environ.get('APP_HOST', '0.0.0.0')}:{_port}"
# From the stack setting appWorkers (via app.env): the app's live process monitor expects
# exactly this many workers plus the master, so the number has no default here.
workers = int(os.environ["APP_WORKERS"])
worker_class = "sync"
# /url_lookup may spend up to ~0.75 s setup overhead + 3 s connect + 5 s read (per read
# call), so give requests comfortable headroom before the arbiter kills a worker.
timeout = 30
graceful_timeout = 10
keepalive = 5
# Logs: JSON lines on stdout -> journald (log_format.py), gunicorn's own and the app's alike.
# No access log: the app writes one line per request itself, inside the request's span, so
# that the line carries the trace id (gunicorn's access line comes after the span ended).
accesslog = None
errorlog = "-"
loglevel = "info"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "log_format.JsonFormatter"}},
    "handlers": {"journal": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"level": "INFO", "handlers": ["journal"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["journal"], "propagate": False, "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False, "qualname": "gunicorn.access"},
    },
}
# Gunicorn >= 25 opens a control socket under $HOME/.gunicorn by default; we do not use
# gunicornc and the service user may have no writable home directory.
control_socket_disable = True
