"""A background worker without ports: does a unit of work every few seconds and logs it (see `invoke logs`)."""

from __future__ import annotations

import os
import signal
import sys
import time

INTERVAL = float(os.environ.get("INTERVAL", "5"))
running = True


def stop(_signum: int, _frame: object) -> None:
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
jobs = 0
print(f"worker started (every {INTERVAL:g}s)", flush=True)
while running:
    jobs += 1
    print(f"job {jobs} done", flush=True)
    for _ in range(int(INTERVAL * 10)):
        if not running:
            break
        time.sleep(0.1)
print(f"worker stopping after {jobs} jobs", flush=True)
sys.exit(0)
