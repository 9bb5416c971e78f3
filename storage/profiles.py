"""The data directory's calibrated profiles (``varflow calibrate --apply``): versioned JSON files.

    profiles/calibrated-v<N>.json   one per applied proposal, never overwritten (created exclusively)
    profiles/in-force.json          which one runs of this data directory use ({"file": ...})

A run reads the one in force when it starts (flows/resources.py ``run_settings``); without the
pointer it uses the defaults, as before any review. Removing the pointer goes back to them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from varflow.errors import ConfigurationError
from varflow.safety.escaping import for_log
from varflow.settings import CalibratedProfile

PROFILES_DIR = "profiles"
IN_FORCE = "in-force.json"
_NAME = re.compile(r"^calibrated-v([1-9][0-9]{0,8})\.json$")


def profiles_dir(home: str | Path) -> Path:
    return Path(home) / PROFILES_DIR


def profile_versions(home: str | Path) -> list[int]:
    """The versions saved in this data directory, oldest first."""
    folder = profiles_dir(home)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name)))


def save_profile(home: str | Path, document: dict) -> tuple[int, Path]:
    """Save ``document`` (a profile's JSON form without its version, plus figures) as the next version and
    put it in force. The file is created exclusively: a version is never overwritten, even by two
    ``--apply`` at once (the later takes the next number)."""
    folder = profiles_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    version = (profile_versions(home) or [0])[-1] + 1
    while True:
        path = folder / f"calibrated-v{version}.json"
        doc = {**document, "version": version}
        CalibratedProfile.from_document(doc)  # only a document a run can load is saved
        try:
            with open(path, "x", encoding="utf-8") as f:
                json.dump(doc, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
        except FileExistsError:
            version += 1
            continue
        break
    pointer = folder / IN_FORCE
    tmp = folder / f".{IN_FORCE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"file": path.name, "version": version}) + "\n", encoding="utf-8")
    os.replace(tmp, pointer)
    return version, path


def load_profile(home: str | Path) -> CalibratedProfile | None:
    """The profile in force, or None (no ``--apply`` yet). A damaged pointer or profile is a
    ``ConfigurationError`` naming the file and what to do: a run never silently uses the defaults."""
    pointer = profiles_dir(home) / IN_FORCE
    if not pointer.is_file():
        return None
    what = "fix it, or remove it to run with the default thresholds"
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["file"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{name!r} is not a calibrated-v<N>.json name")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"the calibrated profile pointer {for_log(pointer)} is unreadable "
                                 f"({for_log(exc)}): {what}") from None
    path = pointer.parent / name
    try:
        return CalibratedProfile.from_document(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, ConfigurationError) as exc:
        raise ConfigurationError(f"the calibrated profile {for_log(path)} (in force by {pointer.name}) is unusable "
                                 f"({for_log(exc)}): {what}") from None
