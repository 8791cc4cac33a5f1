"""Gunicorn entry point for tests/host/test_flask_app.py: the real app with a fake network.

Loaded in a subprocess as ``ddtrace-run gunicorn ... flask_app_harness:app`` (the app's
directory and this one on PYTHONPATH). It swaps app.resolve/app.fetch for fakes that
never touch the network and append one JSON line per call to $FAKE_NET_LOG, so the test
can prove which requests got as far as DNS or an outbound connection.
"""
import json
import os
import socket

import app as sample_app  # userdata/app/app.py

FAKE_BODY = b"<html>fake</html>"
_DNS = json.loads(os.environ.get("FAKE_DNS", "{}"))  # {"host": ["ip", ...]}
_LOG = os.environ["FAKE_NET_LOG"]


def _record(fn, *args):
    # O_APPEND single write: safe across the gunicorn workers.
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps({"fn": fn, "args": list(args)}) + "\n").encode())
    finally:
        os.close(fd)


def fake_resolve(host, port):
    _record("resolve", host, port)
    if host not in _DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return list(_DNS[host])


def fake_fetch(ip, host, port, scheme, path):
    _record("fetch", ip, host, port, scheme, path)
    return FAKE_BODY


sample_app.resolve = fake_resolve
sample_app.fetch = fake_fetch
app = sample_app.app
