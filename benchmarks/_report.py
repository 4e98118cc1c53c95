"""Shared by the benchmarks: write one named ``## section`` of a Markdown report, keeping the others.

Several benchmarks report into one file (``churn.md`` holds a Telco and a Synthetic section), and each
run must replace only its own section, so a quick rerun of one benchmark never erases another's result.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
from pathlib import Path

__all__ = ["machine", "peak_rss_gb", "write_section", "finish"]


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def finish(path: Path, lines: list[str], summary: dict) -> None:
    """Write a whole-file report (its lines, then the JSON summary) and print the summary as the last line."""
    body = [*lines, "", "```json", json.dumps(summary), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(body), encoding="utf-8")
    print(f"report written to {path}")
    print(json.dumps(summary))


def machine() -> str:
    """One line describing where the benchmark ran (architecture, cores, Python)."""
    return f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}."


def write_section(path: Path, section: str, body: str, title: str) -> None:
    """Write ``body`` under the heading ``## {section}`` of ``path``, replacing that section if present.

    A section runs from its heading to the next ``## `` heading (or the end of the file). A missing
    file is created with ``# {title}`` on top; sections keep the order they were first written in.
    """
    block = f"## {section}\n\n{body.strip()}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else f"# {title}\n"
    pattern = re.compile(rf"^## {re.escape(section)}[ \t]*\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
