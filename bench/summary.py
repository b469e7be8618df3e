"""The markdown the interleaved pass prints: the per-tool table, the machine, and dockyard's targets.

Only runs that passed every check are timed; failed runs are counted in the table and listed, never averaged.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

SCENARIOS = {"first": "(a) first run, clean state", "noop": "(b) no-op re-run", "change": "(c) api index.html changed"}
TOOL_NAMES = {"ansible": "ansible", "ansible-warm": "ansible, warm ControlPersist master", "pyinfra": "pyinfra",
              "dockyard": "**dockyard**"}

Row = dict[str, object]


def spread(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "–"
    med, low, high = (f"{v:.{digits}f}" for v in (statistics.median(values), min(values), max(values)))
    return med if low == high else f"{med} ({low}–{high})"


def counts(values: Iterable[object]) -> str:
    ints = sorted(int(str(v)) for v in values)
    if not ints:
        return "–"
    med = statistics.median(ints)
    med_s = f"{med:g}"
    return med_s if ints[0] == ints[-1] else f"{med_s} ({ints[0]}–{ints[-1]})"


def passed(rows: list[Row], tool: str, scenario: str) -> list[Row]:
    return [r for r in rows if r["tool"] == tool and r["scenario"] == scenario and r["ok"]]


def table(rows: list[Row], tools: list[str]) -> str:
    out = ["| scenario | tool | runs ok | wall s | controller user+sys s | peak RSS MiB | host CPU s | SSH conns "
           "| SSH exec | SSH sftp |", "|---|---|---|---|---|---|---|---|---|---|"]
    for scenario, title in SCENARIOS.items():
        for tool in tools:
            every = [r for r in rows if r["tool"] == tool and r["scenario"] == scenario]
            if not every:
                continue
            ok = [r for r in every if r["ok"]]
            wall = [float(str(r["wall_s"])) for r in ok]
            cpu = [float(str(r["user_s"])) + float(str(r["sys_s"])) for r in ok]
            rss = [int(str(r["maxrss_kb"])) / 1024 for r in ok]
            host = [float(str(r["host_cpu_s"])) for r in ok]
            name = TOOL_NAMES.get(tool, tool)
            wall_s = f"**{spread(wall)}**" if tool == "dockyard" and wall else spread(wall)
            out.append(f"| {title} | {name} | {len(ok)}/{len(every)} | {wall_s} | {spread(cpu)} | {spread(rss, 0)} | "
                       f"{spread(host)} | {counts(r['ssh_conns'] for r in ok)} | {counts(r['ssh_exec'] for r in ok)} "
                       f"| {counts(r['ssh_sftp'] for r in ok)} |")
    failed = [r for r in rows if not r["ok"]]
    if failed:
        out.append("")
        out.append("Failed runs (not timed):")
        out += [f"- {r['tool']} {r['scenario']} #{r['rep']}: {r['why']}" for r in failed]
    return "\n".join(out)


def _verdict_max(value: float, limit: float, unit: str) -> str:
    d = 2 if unit == "s" else 0
    if value <= limit:
        return f"met ({value:.{d}f} {unit} ≤ {limit:.{d}f} {unit})"
    return f"**missed** by {value - limit:.{d}f} {unit} ({value:.{d}f} {unit} vs ≤ {limit:.{d}f} {unit})"


def targets(rows: list[Row], probe: dict[str, object] | None) -> str:
    """dockyard's figures next to the issue's targets, each with how it was measured."""
    out = ["| target | figure | verdict | how measured |", "|---|---|---|---|"]
    noop = [float(str(r["wall_s"])) for r in passed(rows, "dockyard", "noop")]
    pyinfra = [float(str(r["wall_s"])) for r in passed(rows, "pyinfra", "noop")]
    if noop:
        med = statistics.median(noop)
        out.append(f"| no-op deploy ≤ 0.5 s | {med:.2f} s | {_verdict_max(med, 0.5, 's')} | median wall of the "
                   f"{len(noop)} timed (b) runs, whole process (`/usr/bin/time`) |")
        if pyinfra:
            ratio = statistics.median(pyinfra) / med
            verdict = f"met ({ratio:.1f}x)" if ratio >= 5 else f"**missed**: {ratio:.1f}x, short by {5 - ratio:.1f}x"
            out.append(f"| no-op ≥ 5x faster than pyinfra | {ratio:.1f}x | {verdict} | pyinfra's (b) median "
                       f"{statistics.median(pyinfra):.2f} s / dockyard's, same interleaved pass |")
    out.append("| `up -e local` no-op ≤ 1.0 s | not measured | – | needs the local sandbox host (its own dockerd), "
               "a different job from the anchors'; not run on this shared machine |")
    if probe and probe.get("imports_ms"):
        imports = [float(v) for v in probe["imports_ms"]]  # type: ignore[union-attr]
        med = statistics.median(imports)
        floor = float(str(probe["floor_ms"]))
        out.append(f"| ≤ 150 ms of imports before the first SSH byte | {med:.0f} ms ({med - floor:.0f} ms beyond "
                   f"the interpreter's own {floor:.0f} ms) | {_verdict_max(med, 150, 'ms')} | `python3 -X importtime`"
                   f" of a no-op deploy: self times of every import before the first `socket.connect` to the sshd "
                   f"(audit hook, bench/first_byte.py), median of {len(imports)} |")
    if probe and probe.get("by_package"):
        heavy = sorted(probe["by_package"].items(), key=lambda kv: -kv[1])[:10]  # type: ignore[union-attr]
        out.append(f"| (context) imports before connect, by package | "
                   f"{', '.join(f'{name} {ms:.0f}' for name, ms in heavy)} (ms) | – | one of those runs, self "
                   f"times summed per top-level package |")
    if probe and probe.get("to_connect_ms"):
        conn = statistics.median(float(v) for v in probe["to_connect_ms"])  # type: ignore[union-attr]
        out.append(f"| (context) spawn → first SSH connect | {conn:.0f} ms | – | same hook without importtime, "
                   f"median of {len(probe['to_connect_ms'])} |")  # type: ignore[arg-type]
    first = passed(rows, "dockyard", "first")
    if first:
        wall = statistics.median(float(str(r["wall_s"])) for r in first)
        build = statistics.median(float(str(r["build_s"])) for r in first)
        out.append(f"| first run ≤ 2.5 s + build time | {wall:.2f} s (build {build:.2f} s) | "
                   f"{_verdict_max(wall, 2.5 + build, 's')} | median wall of (a); build time = the longest "
                   f"`app X: image` task of each run (the 3 builds run in parallel), from dockyard's --json |")
    return "\n".join(out)
