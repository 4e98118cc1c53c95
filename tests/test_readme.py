"""The README cannot drift from params.yaml: its parameter reference names every key with its default.

The reference section (``## Parameter reference``) holds Markdown table rows ``| `key.path` | default |
meaning |``. Every leaf key of the shipped ``params.yaml`` (``churn.tuning.trials``,
``tiers.actions.A.low``, …) must have exactly one row whose default is the file's value, and every row
must name a key that exists, so adding, renaming, removing or changing the default of a parameter
without updating the README fails here.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PARAMS = ROOT / "params.yaml"
REFERENCE_HEADING = "## Parameter reference"
ROW = re.compile(r"^\|\s*`(?P<key>[^`]+)`\s*\|(?P<default>[^|]*)\|(?P<meaning>[^|]*)\|\s*$")


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Leaf key paths of a nested mapping; an empty mapping is a leaf (``data.tables.customers.columns``)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flatten(value, path + ".")
        else:
            out[path] = value
    return out


def render(value: object) -> str:
    """A YAML value as the reference writes it (``null``, ``true``, ``[30, 90, 365]``, ``2026-10-31``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def reference_section(text: str) -> str:
    start = text.find(f"\n{REFERENCE_HEADING}\n")
    assert start >= 0, f"README.md has no '{REFERENCE_HEADING}' section"
    body = text[start + len(REFERENCE_HEADING) + 2 :]
    end = re.search(r"^## ", body, flags=re.MULTILINE)
    return body[: end.start()] if end else body


def reference_rows(section: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in section.splitlines():
        match = ROW.match(line.strip())
        if match:
            default = match["default"].strip()
            if default.startswith("`") and default.endswith("`") and len(default) >= 2:
                default = default[1:-1]
            rows.append((match["key"], default, match["meaning"].strip()))
    return rows


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return flatten(yaml.safe_load(PARAMS.read_text()))


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, str, str]]:
    return reference_rows(reference_section(README.read_text()))


def test_every_params_key_is_in_the_reference_once(keys, rows):
    assert len(keys) > 100  # the flattening reached the nested keys (churn.tuning.trials, tiers.actions.A.low)
    named = [key for key, _, _ in rows]
    missing = [key for key in keys if key not in named]
    assert not missing, f"params.yaml keys missing from the README's reference: {missing}"
    repeated = sorted({key for key in named if named.count(key) > 1})
    assert not repeated, f"keys listed more than once: {repeated}"


def test_reference_names_no_key_that_params_lacks(keys, rows):
    stale = [key for key, _, _ in rows if key not in keys]
    assert not stale, f"the README's reference lists keys that params.yaml does not have: {stale}"


def test_reference_defaults_match_params(keys, rows):
    wrong = {
        key: (default, render(keys[key])) for key, default, _ in rows if key in keys and default != render(keys[key])
    }
    assert not wrong, f"README default vs params.yaml: {wrong}"


def test_every_key_has_a_meaning(rows):
    assert all(meaning for _, _, meaning in rows), [key for key, _, meaning in rows if not meaning]


def test_flatten_and_render_follow_the_reference_conventions():
    tree = {"a": {"b": {"c": 1}, "empty": {}}, "d": [30, 90], "e": None, "f": True, "g": dt.date(2026, 1, 31)}
    assert flatten(tree) == {"a.b.c": 1, "a.empty": {}, "d": [30, 90], "e": None, "f": True, "g": dt.date(2026, 1, 31)}
    assert [render(v) for v in flatten(tree).values()] == ["1", "{}", "[30, 90]", "null", "true", "2026-01-31"]
    section = reference_section(
        "# t\n\n## Parameter reference\n\n| `a.b.c` | `1` | one |\n\n## Next\n| `x` | 2 | no |\n"
    )
    assert reference_rows(section) == [("a.b.c", "1", "one")]


def test_quickstart_shows_make_demo_and_make_test_first():
    text = README.read_text()
    first_block = re.search(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
