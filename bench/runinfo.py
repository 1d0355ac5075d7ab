"""What a benchmark records about its run (when, on what machine, at which commit) and its figures as JSON.

Each bench that bench/results.py gathers writes bench/<name>-results.json beside its Markdown:
`{"bench": ..., "command": ..., "run": run_info(), "figures": {...}}`. results.py reads the figures from
there (no parsing of Markdown tables) and checks `run` against the `make bench` run it is summing up.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> tuple[str, bool]:
    """(short commit of HEAD, whether the working tree has uncommitted changes)."""

    def git(*argv: str) -> str:
        out = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return git("rev-parse", "--short", "HEAD"), bool(git("status", "--porcelain"))


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS and kernel, from /proc and /etc/os-release where they exist."""

    def first(path: str, key: str, sep: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                name, _, value = line.partition(sep)
                if name.strip() == key:
                    return value.strip().strip('"')
        except OSError:
            pass
        return ""

    mem_kb = first("/proc/meminfo", "MemTotal", ":").split(" ")[0]
    return {
        "cpu": first("/proc/cpuinfo", "model name", ":") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb) / 1024 / 1024, 1) if mem_kb.isdigit() else None,
        "os": first("/etc/os-release", "PRETTY_NAME", "=") or platform.system(),
        "kernel": f"{platform.system()} {platform.release()} ({platform.machine()})",
    }


def run_info() -> dict[str, Any]:
    commit, dirty = git_commit()
    now = time.time()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now)),
        "epoch": now,
        "commit": commit,
        "dirty": dirty,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": machine(),
        "load_1min": os.getloadavg()[0],
    }


def command_line() -> str:
    return " ".join([".venv/bin/python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def write_figures(markdown: Path, bench: str, figures: dict[str, Any]) -> Path:
    """bench/<name>-results.json beside the Markdown results file `markdown`."""
    path = markdown.with_suffix(".json")
    document = {"bench": bench, "command": command_line(), "run": run_info(), "figures": figures}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


def publish(markdown: Path, bench: str, figures: dict[str, Any], lines: list[str]) -> None:
    """Write a bench's Markdown (`lines`) and its JSON figures beside it, and print the Markdown."""
    text = "\n".join(lines)
    markdown.write_text(text)
    write_figures(markdown, bench, figures)
    print(text)


def heading(title: str, command: str) -> list[str]:
    """The first lines of a results file: title, when, at which commit, on what machine, and the command."""
    info = run_info()
    machine = info["machine"]
    return [
        f"# {title}",
        "",
        f"{info['date']} · commit {info['commit']} · {machine['cpu']} ({machine['cores']} cores)",
        f"Command: `{command}`",
        "",
    ]
