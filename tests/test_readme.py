"""Every command in the README runs as typed, so a README that drifts from the code fails here.

The commands are the lines of the README's shell code blocks (fenced ``sh``, ``bash``, ``shell``
or ``console``, and indented blocks), a trailing ``\\`` joining lines. They run in order, each in
``bash`` from a scratch working directory that looks like the project's root to them: ``.venv``
(a link to this environment), ``./photos`` (two of the sample photos) and nothing else; ``HOME``
is a scratch folder too, and the data directory is its default place
(``VARFLOW_HOME=$HOME/.local/share/varflow``), so the README's ``~/.local/share/varflow`` paths
name the same store. ``varflow`` runs use the session's Prefect server (no temporary server per
command) and the Gemini backends the fake Gemini server (tests/fake_gemini.py), through the
variables the SDK reads, as a user's key would.

Conventions the README follows (its text reads the same to a person):

* ``[...]`` after a space is optional syntax: the command runs without every bracket, then with
  all of them (one run per alternative of a ``[a | b]``); a bracket holding a bare upper-case
  name, ``[RUN_ID]``, stands for the shell variable of that name.
* ``NAME=$(...)`` or ``export NAME=...`` sets a variable for the commands after it (one terminal).
* ``# not run: why`` on a command's line, or on a comment line just above it, leaves the command
  out (a server that serves until stopped, a placeholder for your own key or files); the test
  reports how many and why, and fails if it runs fewer than ``MIN_RUN`` commands.

A command passes when it exits 0 without a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import skimage_photo
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"#\s*not run:\s*(?P<why>.+)$")
ASSIGNMENT = re.compile(r"^(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=")
MIN_RUN = 15  # the README has ~20 runnable commands: fewer means the extraction broke
PHOTOS = ("astronaut.png", "coffee.png")  # two of the sample photos keep the runs short
COMMAND_TIMEOUT_S = 300
FAKE_KEY = "AIza" "SyREADME-test-key-0123456789abcdefXYZ"


@dataclass
class Command:
    text: str  # as in the README, continuation lines joined
    line: int  # where it starts in README.md (1-based)
    skip: str | None = None  # why it is not run (the marker's text)


def readme_commands(text: str) -> list[Command]:
    """The commands of every shell block of ``text``, in order."""
    commands: list[Command] = []
    for token in MarkdownIt("commonmark").parse(text):
        lang = (token.info or "").split()[0] if token.type == "fence" and token.info else ""
        if not (token.type == "code_block" or (token.type == "fence" and lang in SHELL_LANGUAGES)):
            continue
        first = token.map[0] + (1 if token.type == "fence" else 0) + 1
        commands += block_commands(token.content, first, console=lang == "console")
    return commands


def block_commands(content: str, first_line: int, *, console: bool = False) -> list[Command]:
    out: list[Command] = []
    pending_skip, current, start = None, "", 0
    for n, raw in enumerate(content.splitlines()):
        line = raw.strip()
        if console:
            if not (line.startswith("$ ") or current):
                continue  # output, not a command
            line = line[2:] if line.startswith("$ ") else line
        if not current:
            if not line:
                continue
            if line.startswith("#"):
                marker = MARKER.search(line)
                pending_skip = marker.group("why") if marker else pending_skip
                continue
            start = first_line + n
        current = f"{current} {line[:-1].strip()}" if line.endswith("\\") else f"{current} {line}"
        if line.endswith("\\"):
            continue
        marker = MARKER.search(current)
        out.append(Command(current.strip(), start, marker.group("why") if marker else pending_skip))
        pending_skip, current = None, ""
    return out


def split_comment(command: str) -> tuple[str, str]:
    """(the command, its trailing comment): a ``#`` after a space outside quotes starts it."""
    quote = None
    for i, ch in enumerate(command):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip(), command[i:]
    return command, ""


def optional_groups(command: str) -> list[tuple[int, int, list[str]]]:
    """The ``[...]`` groups of optional syntax outside quotes: (start, end, alternatives)."""
    groups, quote, i = [], None, 0
    while i < len(command):
        ch = command[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "[" and i > 0 and command[i - 1] == " ":
            end = command.index("]", i)
            groups.append((i, end + 1, [alt.strip() for alt in command[i + 1:end].split("|")]))
            i = end
        i += 1
    return groups


def variants(command: str) -> list[str]:
    """The command without its optional groups, then with all of them (per alternative)."""
    body, _ = split_comment(command)
    groups = optional_groups(body)
    if not groups:
        return [body]
    widest = max(len(alts) for _, _, alts in groups)

    def build(pick: int | None) -> str:
        parts, at = [], 0
        for start, end, alts in groups:
            parts.append(body[at:start])
            if pick is not None:
                alt = alts[min(pick, len(alts) - 1)]
                parts.append(f'"${alt}"' if re.fullmatch(r"[A-Z][A-Z0-9_]*", alt) else alt)
            at = end
        parts.append(body[at:])
        return re.sub(r"\s+", " ", "".join(parts)).strip()

    return [build(None)] + [build(k) for k in range(widest)]


# ---------------------------------------------------------------------------------------------
# The extraction itself (no command runs)
# ---------------------------------------------------------------------------------------------


def test_extraction_reads_blocks_markers_continuations_and_optional_syntax():
    text = "\n".join([
        "intro", "", "```sh", "a --x 1   # a comment", "# not run: serves until stopped", "b serve \\",
        "    --every 3  ", "c [--limit 20] [--csv | --json]   # c's comment [not syntax]", "```", "",
        "```python", "print('not shell')", "```", "", "1. step", "", "       d ~/photos  # not run: placeholder", "",
        "```console", "$ e stats [RUN_ID]", "output line", "```",
    ])
    commands = readme_commands(text)
    assert [(c.text, c.line, c.skip) for c in commands] == [
        ("a --x 1   # a comment", 4, None),
        ("b serve --every 3", 6, "serves until stopped"),
        ("c [--limit 20] [--csv | --json]   # c's comment [not syntax]", 8, None),
        ("d ~/photos  # not run: placeholder", 17, "placeholder"),
        ("e stats [RUN_ID]", 20, None),
    ]
    assert variants(commands[2].text) == ["c", "c --limit 20 --csv", "c --limit 20 --json"]
    assert variants(commands[4].text) == ["e stats", 'e stats "$RUN_ID"']
    assert variants('q "SELECT [1] AS x" [--json]') == ['q "SELECT [1] AS x"', 'q "SELECT [1] AS x" --json']


# ---------------------------------------------------------------------------------------------
# Every README command, run
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A scratch project root: ``.venv`` links to this environment, ``./photos`` holds photos."""
    work = tmp_path / "work"
    (work / "photos").mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy(skimage_photo(name), work / "photos" / name)
    venv = Path(sys.prefix)
    assert (venv / "bin" / "varflow").exists(), f"varflow is not installed in {venv}: run make install"
    (work / ".venv").symlink_to(venv)
    return work


def run_env(tmp_path: Path, prefect_api: dict, fake_url: str) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in prefect_api.items() if k not in ("GOOGLE_API_KEY", "XDG_DATA_HOME", "VARFLOW_HOME")}
    env.update(HOME=str(home), VARFLOW_HOME=str(home / ".local" / "share" / "varflow"),
               PATH=f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               GEMINI_API_KEY=FAKE_KEY, GOOGLE_GEMINI_BASE_URL=fake_url, NO_PROXY="127.0.0.1,localhost",
               PYTHONUNBUFFERED="1")
    return env


def run_command(command: str, workdir: Path, env: dict, assigned: dict[str, str]) -> subprocess.CompletedProcess:
    """One command in bash, after the variables earlier commands set; an assignment prints its value."""
    prelude = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in assigned.items())
    script = f"set -o pipefail\n{prelude}{command}\n"
    name = ASSIGNMENT.match(command)
    if name:
        script += f'rc=$?; printf "\\n__VALUE__%s" "${{{name.group("name")}}}"; exit $rc\n'
    return subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)


def test_every_readme_command_runs_as_typed(workdir, tmp_path, prefect_api):
    from fake_gemini import FakeGemini

    commands = readme_commands((ROOT / "README.md").read_text())
    marked = [c for c in commands if c.skip]
    ran, failures, assigned = [], [], {}
    log = tmp_path / "readme-commands.log"  # every command's output, for a look after a failure
    with FakeGemini(api_key=FAKE_KEY) as fake, open(log, "w") as record:
        env = run_env(tmp_path, prefect_api, fake.base_url)
        for command in (c for c in commands if not c.skip):
            for variant in variants(command.text):
                t0 = time.perf_counter()
                out = run_command(variant, workdir, env, assigned)
                ran.append(variant)
                record.write(f"=== README.md:{command.line} ({time.perf_counter() - t0:.1f} s, exit {out.returncode}): "
                             f"{variant}\n{out.stdout}\n--- stderr\n{out.stderr}\n")
                stdout, _, value = out.stdout.partition("__VALUE__")
                if ASSIGNMENT.match(variant) and out.returncode == 0:
                    assigned[ASSIGNMENT.match(variant).group("name")] = value
                if out.returncode != 0 or "Traceback (most recent call last)" in out.stderr:
                    failures.append(f"README.md:{command.line}: `{variant}` exited {out.returncode}\n"
                                    f"{stdout[-1500:]}{out.stderr[-2500:]}")
    print(f"README: {len(ran)} command runs from {len(commands) - len(marked)} commands; {len(marked)} marked "
          f"not run (outputs in {log}):")
    for c in marked:
        print(f"  README.md:{c.line}: {c.text[:70]} ({c.skip})")
    assert len(ran) >= MIN_RUN, f"only {len(ran)} README commands ran: did the extraction break?"
    assert not failures, f"{len(failures)} of {len(ran)} README commands failed:\n\n" + "\n\n".join(failures)
