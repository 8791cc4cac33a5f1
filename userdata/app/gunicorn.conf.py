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
# Logs go to stdout/stderr -> journald.
accesslog = "-"
errorlog = "-"
loglevel = "info"
# Gunicorn >= 25 opens a control socket under $HOME/.gunicorn by default; we do not use
# gunicornc and the service user may have no writable home directory.
control_socket_disable = True
