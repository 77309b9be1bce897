"""Runs the scenarios and writes the report; also the entry point of every child process.

The parent (:func:`run_all`) starts one child per scenario (``python -m
tracemux.bench.runner SCENARIO main OPTIONS RESULT``), collects the JSON each one writes,
renders the sections, and writes ``report.md``, the charts and ``results.json``. A
scenario that fails is reported with its error; the others still run.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tracemux.bench import RUN_ORDER, SCENARIOS
from tracemux.bench.common import Options, run_child, write_result
from tracemux.bench.report import Section, machine_info, md_table, write_report

#: a generous limit per scenario child (a full run takes about 10 minutes in all)
SCENARIO_TIMEOUT = 900.0


def default_out_dir() -> Path:
    """``bench/out/<timestamp>`` under the current directory."""
    return Path("bench") / "out" / datetime.now().strftime("%Y%m%d-%H%M%S")


def _side_versions(results: dict[str, Any]) -> dict[str, str]:
    """Versions reported from the langfuse 2 side venv, if it ran."""
    out: dict[str, str] = {}
    for result in results.values():
        if not isinstance(result, dict):
            continue
        stack = [result]
        while stack:
            item = stack.pop()
            for key, value in item.items():
                if key == "langfuse2_version" and isinstance(value, str):
                    out["langfuse (side venv langfuse2)"] = value
                elif isinstance(value, dict):
                    stack.append(value)
    return out


def _render(name: str, result: dict[str, Any], out_dir: Path) -> Section:
    module = importlib.import_module(f"tracemux.bench.{name}")
    title = getattr(module, "TITLE", name)
    if "error" in result:
        return Section(
            title,
            f"**This scenario failed**: {result['error']}\n\n```\n"
            f"{result.get('stderr', '')[-2000:]}\n```",
        )
    try:
        section: Section = module.render(result, out_dir)
        return section
    except Exception:
        return Section(title, f"**Rendering failed**:\n\n```\n{traceback.format_exc()}\n```")


def run_all(
    opts: Options,
    *,
    only: Sequence[str] = (),
    command: str = "tracemux bench",
    echo: Any = None,
) -> int:
    """Run every scenario (or ``only`` those), write the report. Returns an exit code:
    0 when every scenario produced a result, 1 otherwise (the report is written anyway)."""
    say = echo or (lambda text: None)
    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opts.out_dir = str(out_dir.resolve())
    machine = machine_info()
    machine["started"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = [n for n in RUN_ORDER if not only or n in only]
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    for i, name in enumerate(names, 1):
        say(f"[{i}/{len(names)}] {name} ...")
        t0 = time.perf_counter()
        results[name] = run_child(name, "main", opts, timeout=SCENARIO_TIMEOUT)
        timings[name] = time.perf_counter() - t0
        status = "failed: " + results[name]["error"] if "error" in results[name] else "done"
        say(f"[{i}/{len(names)}] {name} {status} ({timings[name]:.1f} s)")
    wall = time.perf_counter() - t_all
    try:
        import os

        machine["load_end"] = list(os.getloadavg())
    except OSError:
        pass
    sections = [_render(name, results[name], out_dir) for name in SCENARIOS if name in results]
    timing_md = md_table(["scenario", "wall time"], [[n, f"{timings[n]:.1f} s"] for n in names])
    sections.append(
        Section("Run", f"Wall time per scenario (each in its own process):\n\n{timing_md}")
    )
    report = write_report(
        out_dir,
        sections,
        machine,
        command=command,
        wall_s=wall,
        quick=opts.quick,
        side_versions=_side_versions(results),
    )
    (out_dir / "results.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "options": json.loads(opts.to_json()),
                "timings": timings,
                "results": results,
            },
            indent=1,
        )
    )
    say(f"report: {report} ({wall:.0f} s)")
    return 1 if any("error" in r for r in results.values()) else 0


def child_main(argv: Sequence[str]) -> None:
    """``python -m tracemux.bench.runner SCENARIO PART OPTIONS_JSON RESULT_PATH``."""
    scenario, part, opts_json, result_path = argv
    if scenario not in SCENARIOS:
        write_result(result_path, {"error": f"unknown scenario {scenario!r}"})
    opts = Options.from_json(opts_json)
    try:
        module = importlib.import_module(f"tracemux.bench.{scenario}")
        result = module.run(part, opts)
        result.setdefault("python", platform.python_version())
    except Exception:
        result = {"error": "exception in the scenario", "stderr": traceback.format_exc()}
    write_result(result_path, result)


if __name__ == "__main__":
    child_main(sys.argv[1:])
