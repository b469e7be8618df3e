#!/usr/bin/env python3
"""How long dockyard takes before its first SSH byte, and how much of that is imports.

Run as `python3 [-X importtime] bench/first_byte.py PORT deploy -p PLAYBOOK --json`: it installs an audit
hook that writes one marker line to stderr at the first `socket.connect` to 127.0.0.1:PORT (paramiko's
connect, before any SSH byte is sent), then runs `python -m provision` with the remaining arguments, as the
`dockyard` program would. With -X importtime, the import lines before the marker are the imports paid
before the first SSH byte. `measure()` runs it and parses both figures.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
import time
from pathlib import Path

MARKER = "first-byte-marker: connect at monotonic "
IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+\d+\s+\|\s*(\S+)")


def _hook(port: int):
    fired = False

    def hook(event: str, args: tuple) -> None:
        nonlocal fired
        if fired or event != "socket.connect":
            return
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2 and address[1] == port:
            fired = True
            sys.stderr.write(f"{MARKER}{time.monotonic():.6f}\n")
            sys.stderr.flush()
    return hook


def imports_before_marker(stderr: str) -> tuple[float, dict[str, float]]:
    """Sum of -X importtime's self times before the marker (ms), and that sum per top-level package (ms)."""
    total_us = 0
    by_package: dict[str, float] = {}
    for line in stderr.splitlines():
        if line.startswith(MARKER):
            break
        m = IMPORT_LINE.match(line)
        if m is None:
            continue
        total_us += int(m.group(1))
        package = m.group(2).split(".")[0]
        by_package[package] = by_package.get(package, 0) + int(m.group(1)) / 1000
    return total_us / 1000, by_package


def measure(python: str, port: int, argv: list[str], env: dict[str, str], cwd: Path,
            *, importtime: bool) -> dict[str, object]:
    """One run: ms from spawn to the connect (without importtime), or the import ms before it (with)."""
    cmd = [python, *(["-X", "importtime"] if importtime else []), str(Path(__file__).resolve()), str(port), *argv]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False)
    marker = next((ln for ln in done.stderr.splitlines() if ln.startswith(MARKER)), None)
    result: dict[str, object] = {"rc": done.returncode, "connected": marker is not None, "stdout": done.stdout}
    if marker is not None:
        result["to_connect_ms"] = (float(marker[len(MARKER):]) - t0) * 1000
    if importtime:
        result["imports_ms"], result["by_package"] = imports_before_marker(done.stderr)
    return result


def interpreter_floor_ms(python: str, env: dict[str, str]) -> float:
    """The interpreter's own start-up imports (`python3 -X importtime -c pass`), part of every Python tool."""
    done = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    return imports_before_marker(done.stderr)[0]


def main() -> None:
    port = int(sys.argv[1])
    sys.addaudithook(_hook(port))
    sys.argv = ["provision", *sys.argv[2:]]
    sys.path[0] = os.getcwd()  # as `python -m` has it (not this script's directory)
    runpy.run_module("provision", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
