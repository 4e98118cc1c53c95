"""A fresh clone works without the public data: the README's quickstart resolves, and the tests that read
``../shared/data`` pass there, skipping with a reason where they need the data.

The committed HEAD is cloned into a temporary folder with no ``../shared`` next to it (uncommitted changes
are not part of the check: it tests what a user's clone gets). The clone's tests run with this interpreter
against the clone's own ``src/`` (``PYTHONPATH``; the editable install would otherwise import this
checkout), from the clone's folder, with ``$CRMSCORE_DATA_DIR`` unset.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crmscore.data import public

ROOT = Path(__file__).resolve().parents[1]
# A test file reads the public data when it asks crmscore.data.public for the folder or a table, or is
# marked public_data.
READS_PUBLIC_DATA = re.compile(r"\bpublic\.(?:data_dir|load_\w+)\(|\bpytest\.mark\.public_data\b")
# The fast tests of those files, and notebook 03, whose CDNOW section draws a plot only with the data.
SELECTION = "not slow or test_03_clv"
SKIP_LINE = re.compile(r"^SKIPPED \[\d+\] (?P<where>\S+?:\d+): (?P<reason>.*)$", re.MULTILINE)


def _git(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # safe.directory: a checkout owned by another user (a CI container) may still be cloned.
    command = ["git", "-c", f"safe.directory={ROOT}", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def _clean_env(clone: Path) -> dict[str, str]:
    """This environment, less the data folder, pytest's and make's settings; imports from the clone's src/."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name != public.DATA_DIR_ENV and not name.startswith(("PYTEST_", "MAKE", "MFLAGS"))
    }
    env["PYTHONPATH"] = str(clone / "src")
    return env


def _tail(result: subprocess.CompletedProcess, chars: int = 6000) -> str:
    return (result.stdout + result.stderr)[-chars:]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git not found: the fresh-clone check needs it")
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout (no .git): nothing to clone")
    if _git("rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
        pytest.skip(f"{ROOT} has no commit yet: nothing to clone")
    dest = tmp_path_factory.mktemp("fresh-clone") / "crmscore"
    result = _git("clone", "--quiet", str(ROOT), str(dest))
    assert result.returncode == 0, _tail(result)
    assert not (dest.parent / "shared").exists()
    return dest


def quickstart_commands(readme: str) -> list[str]:
    """The commands of the first code block under the README's ``## Quickstart`` heading, comments dropped."""
    section = re.search(r"^## Quickstart.*?$(?P<body>.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Quickstart' section"
    block = re.search(r"^```[a-z]*\n(?P<code>.*?)^```", section["body"], re.MULTILINE | re.DOTALL)
    assert block, "the Quickstart section has no code block"
    lines = (line.split("#", 1)[0].strip() for line in block["code"].splitlines())
    return [line for line in lines if line]


def test_quickstart_reader_finds_the_commands():
    readme = "# x\n\n## Quickstart\n\ntext\n\n```bash\nmake demo  # runs\n\nmake test\n```\n\n## Next\n```\nno\n```\n"
    assert quickstart_commands(readme) == ["make demo", "make test"]


def test_readme_quickstart_starts_with_make_demo_and_make_test_and_both_resolve(clone):
    commands = quickstart_commands((clone / "README.md").read_text(encoding="utf-8"))
    assert commands[:2] == ["make demo", "make test"], commands
    if shutil.which("make") is None:
        pytest.skip("make not found: the quickstart's targets cannot be resolved")
    for target, runs in {"demo": "crmscore run", "test": "pytest"}.items():
        dry = subprocess.run(
            ["make", "-n", target], cwd=clone, env=_clean_env(clone), capture_output=True, text=True, timeout=60
        )
        assert dry.returncode == 0, _tail(dry)
        assert runs in dry.stdout, f"make -n {target} does not run {runs!r}:\n{dry.stdout}"


def data_test_files(clone: Path) -> list[str]:
    """The clone's test files that read the public data (this file, which only names them, left out)."""
    return [
        path.relative_to(clone).as_posix()
        for path in sorted((clone / "tests").glob("test_*.py"))
        if path.name != Path(__file__).name and READS_PUBLIC_DATA.search(path.read_text(encoding="utf-8"))
    ]


def test_the_data_test_files_are_found():
    files = data_test_files(ROOT)
    assert "tests/test_public.py" in files and "tests/test_fresh_clone.py" not in files
    assert "tests/test_notebooks.py" in files  # through public.data_dir(), for notebook 03


@pytest.mark.slow
def test_data_tests_pass_on_a_fresh_clone_without_the_data(clone, tmp_path):
    env = _clean_env(clone)
    where = subprocess.run(
        [sys.executable, "-c", "import crmscore; print(crmscore.__file__)"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, _tail(where)
    assert Path(where.stdout.strip()).resolve().is_relative_to(clone.resolve() / "src"), where.stdout

    files = data_test_files(clone)
    assert files, "no test file of the clone reads the public data"
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'run'}"]
    result = subprocess.run(
        [*command, "-k", SELECTION, *files], cwd=clone, env=env, capture_output=True, text=True, timeout=600
    )
    report = _tail(result)
    assert result.returncode == 0, f"pytest on the fresh clone failed:\n{report}"
    assert re.search(r"\b\d+ passed\b", result.stdout), report
    skips = SKIP_LINE.findall(result.stdout)
    assert skips, f"nothing was skipped without the data:\n{report}"
    vague = [f"{where}: {reason}" for where, reason in skips if public.DATA_DIR_ENV not in reason]
    assert not vague, "skips that do not name the data folder ($CRMSCORE_DATA_DIR):\n" + "\n".join(vague)
