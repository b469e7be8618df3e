"""A small Flask app: the Python web app of the examples (served by gunicorn from the python-web template).

GET /         a page with a visit counter kept in the `web-data` volume (survives redeploys)
GET /healthz  the health check dockyard waits for before switching to a new version
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from flask import Flask, jsonify

app = Flask(__name__)
DATA = Path(os.environ.get("DATA_DIR", "/data"))
NAME = os.environ.get("APP_NAME", "web")


def _visits() -> int:
    counter = DATA / "visits"
    try:
        count = int(counter.read_text()) + 1
    except (OSError, ValueError):
        count = 1
    try:
        tmp = counter.with_suffix(".tmp")
        tmp.write_text(str(count))
        tmp.replace(counter)
    except OSError:
        pass  # no volume mounted: count in memory only for this request
    return count


@app.get("/")
def index() -> str:
    return (f"<!doctype html><title>{NAME}</title><h1>Hello from {NAME}</h1>"
            f"<p>container {socket.gethostname()}, visit number {_visits()}</p>\n")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", app=NAME)
