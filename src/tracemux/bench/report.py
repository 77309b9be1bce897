"""The benchmark report: Markdown tables, PNG charts (matplotlib, Agg), the machine.

Each scenario module renders its own :class:`Section` (text, charts, summary rows) from the
JSON its child process returned; :func:`write_report` puts them together under a header that
describes the machine and the versions of everything compared, with the main table (one
:class:`SummaryRow` per target) first.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: distributions whose versions the report lists (langfuse 2's comes from its side venv)
PACKAGES: tuple[str, ...] = (
    "tracemux",
    "opentelemetry-sdk",
    "langfuse",
    "langsmith",
    "httpx",
    "orjson",
    "matplotlib",
)


@dataclass
class SummaryRow:
    """One line of the main table: a measured figure against its anchor and target."""

    metric: str
    tracemux: str
    anchor: str
    ratio: str
    target: str
    met: str


@dataclass
class Section:
    """What one scenario contributes to the report."""

    title: str
    markdown: str
    charts: list[str | None] = field(default_factory=list)
    summary: list[SummaryRow] = field(default_factory=list)


# -- formatting ------------------------------------------------------------------------------


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_range(s: dict[str, Any] | None, spec: str = "{:.2f}", scale: float = 1.0) -> str:
    """``median (min-max)`` of a :func:`~tracemux.bench.common.summarize` result."""
    if not s or s.get("median") is None:
        return "-"
    med, lo, hi = (spec.format(s[k] * scale) for k in ("median", "min", "max"))
    return med if s["n"] == 1 else f"{med} ({lo}-{hi})"


def fmt_ratio(s: dict[str, Any] | None) -> str:
    """A ratio summary as ``0.123x (0.100-0.150)``."""
    if not s or s.get("median") is None:
        return "-"
    spec = "{:.3f}" if s["median"] < 10 else "{:,.0f}"
    med = spec.format(s["median"]) + "x"
    if s["n"] == 1:
        return med
    return f"{med} ({spec.format(s['min'])}-{spec.format(s['max'])})"


def fmt_int(s: dict[str, Any] | None) -> str:
    return fmt_range(s, "{:,.0f}")


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "yes" if ok else "**no**"


# -- charts --------------------------------------------------------------------------------------


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig: Any, plt: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _short_number(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def bar_chart(
    path: Path,
    labels: Sequence[str],
    stats: Sequence[dict[str, Any]],
    *,
    title: str,
    xlabel: str,
    log: bool = False,
    highlight: Sequence[bool] | None = None,
    scale: float = 1.0,
) -> str | None:
    """Horizontal bars at the medians with min-max whiskers. Returns the file name."""
    plt = _plt()
    if plt is None or not labels:
        return None
    med = [s["median"] * scale for s in stats]
    lo = [max(0.0, (s["median"] - s["min"]) * scale) for s in stats]
    hi = [max(0.0, (s["max"] - s["median"]) * scale) for s in stats]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(labels) + 1.4))
    colors = ["#d62728" if (highlight and highlight[i]) else "#7f7f7f" for i in range(len(labels))]
    y = list(range(len(labels)))
    ax.barh(y, med, xerr=[lo, hi], color=colors, capsize=3)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    for yi, m, h in zip(y, med, hi):
        ax.annotate(
            _short_number(m),
            (m + h, yi),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    return _save(fig, plt, path)


def line_chart(
    path: Path,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    logy: bool = False,
    hlines: Sequence[tuple[float, str]] = (),
) -> str | None:
    """One line per series (x values, y values); optional labelled horizontal lines."""
    plt = _plt()
    if plt is None or not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors: dict[str, Any] = {}
    for label, (xs, ys) in series.items():
        base = label.removesuffix(", extrapolated")
        if base != label:  # a dashed continuation of the series it extends
            ax.plot(xs, ys, linestyle="--", linewidth=1.0, color=colors.get(base), label=label)
            continue
        (line,) = ax.plot(
            xs,
            ys,
            marker="o",
            markersize=3,
            label=label,
            linewidth=2.2 if label.startswith("tracemux") else 1.2,
        )
        colors[label] = line.get_color()
    for value, label in hlines:
        ax.axhline(value, linestyle="--", color="#555555", linewidth=1)
        ax.annotate(
            label,
            (0.01, value),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=8,
            color="#555555",
        )
    if logx:
        ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:,.0f}")
    ax.xaxis.set_major_formatter(plain)
    if logy:
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(plain)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


# -- the machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Cores, CPU, memory, OS, Python, load, and the versions of the packages compared."""
    from tracemux.bench.common import dist_version

    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_bytes": mem,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "load": load,
        "versions": {name: dist_version(name) for name in PACKAGES},
    }


def _machine_md(machine: dict[str, Any], side_versions: dict[str, str]) -> str:
    load = machine.get("load")
    load_end = machine.get("load_end")
    mem = machine.get("memory_bytes")
    rows = [
        ["cores", machine["cores"]],
        ["CPU", machine["cpu"]],
        ["memory", f"{mem / 2**30:.1f} GiB" if mem else "?"],
        ["OS", machine["os"]],
        ["Python", machine["python"]],
        [
            "load average (1, 5, 15 min) at start / end",
            " / ".join(", ".join(f"{v:.2f}" for v in x) for x in (load, load_end) if x is not None)
            or "?",
        ],
    ]
    for name, version in machine["versions"].items():
        rows.append([name, version or NOT_INSTALLED_MD])
    for name, version in side_versions.items():
        rows.append([name, version])
    return md_table(["", ""], rows)


NOT_INSTALLED_MD = "not installed"


def write_report(
    out_dir: Path,
    sections: Sequence[Section],
    machine: dict[str, Any],
    *,
    command: str,
    wall_s: float,
    quick: bool,
    side_versions: dict[str, str],
) -> Path:
    """Write ``report.md`` in ``out_dir`` and return its path."""
    summary = [row for s in sections for row in s.summary]
    parts = [
        "# tracemux benchmark report",
        "",
        f"`{command}` — {'quick' if quick else 'full'} run, {wall_s:.0f} s wall time,"
        f" {machine.get('started', '')}.",
        "",
        "Every figure is a median over repeats with (min-max). Anchors are measured in the"
        " same run as tracemux, interleaved where they share a process; on a shared, noisy"
        " machine absolute times drift, so read the ratios. A quick run uses fewer repeats,"
        " spans and runs than a full one: its figures are indicative only.",
        "",
        "## Main results",
        "",
        md_table(
            ["metric", "tracemux", "anchor", "ratio (tracemux / anchor)", "target", "met"],
            [[r.metric, r.tracemux, r.anchor, r.ratio, r.target, r.met] for r in summary],
        ),
        "",
        "## Machine",
        "",
        _machine_md(machine, side_versions),
        "",
    ]
    for section in sections:
        parts += [f"## {section.title}", "", section.markdown, ""]
        for chart in section.charts:
            if chart:
                parts += [f"![{section.title}]({chart})", ""]
        if any(c is None for c in section.charts):
            parts += ["(chart not drawn: matplotlib is not installed)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(parts).rstrip() + "\n")
    return path
