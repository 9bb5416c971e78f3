"""Output names: one per source, never shared, the same every night.

A source's variations are written as ``OUT/<stem>-<tag>-vNN.png``, the stem being its path
relative to the input folder without the suffix. Two sources may not share a stem, whatever
the case (``x.png`` and ``x.PNG``; a case-insensitive file system, a macOS or SMB share, would
merge ``X`` and ``x`` too) or the extension. The rules, in order:

1. a source keeps the stem its accepted variations already hold in the output folder (the
   store knows: ``held``), so adding a file next to it never renames its outputs;
2. a stem no other present source and no other source's accepted variations hold is the plain
   relative path (``trips/beach``), as it always was;
3. the others take ``<stem>-<ext>`` (``a.jpg`` and ``a.png`` -> ``a-jpg``, ``a-png``, as before),
   or, when that is taken too, ``<stem>-<ext>-<6 hex digits of the relative path>``: unique,
   and stable for that file.

Stems are compared case-folded (and NFC-normalized). ``held`` maps a case-folded stem to the source paths whose
accepted variations use it (``held_stems`` reads it from the store's rows).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from varflow.images.locations import is_url, relative
from varflow.runtime.records import stable_id

# What accepted_path writes (varflow/processing/pipeline.py): <stem>-<8 hex tag>-v<NN>.png
_ACCEPTED_NAME = re.compile(r"^(?P<stem>.+)-[0-9a-f]{8}-v\d{2,}\.png$")


_KEPT_NUMBER = re.compile(r"-v(?P<n>\d{2,})\.png$")
_REJECTED_NAME = re.compile(r"^(?P<prefix>.+)-a\d{2,}-[a-z_]+\.png$")  # pipeline's rejected_path


def next_accepted_number(prefix: str, taken: Iterable[str]) -> int:
    """One above the highest ``NN`` of the ``<prefix>-vNN.png`` names in ``taken`` (file names)."""
    numbers = [int(m.group("n")) for name in taken if name.startswith(prefix + "-v")
               and (m := _KEPT_NUMBER.search(name)) and name == f"{prefix}-v{m.group('n')}.png"]
    return max(numbers, default=0) + 1


def next_accepted_name(prefix: str, taken: Iterable[str]) -> str:
    """``<prefix>-vNN.png`` with NN one above the highest number ``taken`` (file names) holds for that prefix:
    a variation a person keeps, or a run tops up, joins its source's accepted files without replacing one."""
    return f"{prefix}-v{next_accepted_number(prefix, taken):02d}.png"


def names_on_disk(out: str | Path, prefix: str) -> set[str]:
    """The file names (relative to ``out``) beside ``out/<prefix>`` that start with its last part: names a
    new file of that prefix must not take, whoever put them there."""
    folder = (Path(out) / prefix).parent
    stem = Path(prefix).name
    try:
        names = os.listdir(folder)
    except OSError:
        return set()
    rel = folder.relative_to(out)
    return {(rel / n).as_posix() if str(rel) != "." else n for n in names if n.startswith(stem)}


def prefix_of(name: str) -> str | None:
    """The ``<stem>-<tag>`` of an accepted (``-vNN.png``) or kept-rejected (``-aNN-<reason>.png``) file name."""
    m = _ACCEPTED_NAME.match(name)
    if m:
        return name[: name.rindex("-v")]
    m = _REJECTED_NAME.match(name)
    return m.group("prefix") if m else None


def stem_key(stem: str) -> str:
    """How a file system that ignores case (and normalizes Unicode, as macOS does) sees a stem."""
    return unicodedata.normalize("NFC", stem).casefold()


def held_stems(rows: Iterable[Mapping], output_dir: str | Path) -> dict[str, set[str]]:
    """Case-folded stem -> source paths, from accepted rows (``source_path``, ``output_path``)."""
    base = Path(output_dir) if not is_url(output_dir) else None
    prefix = str(output_dir).rstrip("/") + "/"
    held: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        out = row.get("output_path")
        try:
            if base is None:
                rel = out[len(prefix):] if out and out.startswith(prefix) else None
            else:
                rel = Path(out).relative_to(base).as_posix() if out else None
        except ValueError:
            continue
        m = _ACCEPTED_NAME.match(rel or "")
        if m:
            held[stem_key(m.group("stem"))].add(str(row["source_path"]))
    return dict(held)


def output_stems(paths: list[Path], input_dir: Path, held: Mapping[str, set[str]] | None = None) -> list[str]:
    """Each path's stem (the module's rules); distinct, also case-folded."""
    held = held or {}
    rel = [relative(p, input_dir) for p in paths]
    base = [r.with_suffix("").as_posix() for r in rel]
    sources = [str(p) for p in paths]
    taken: dict[str, str] = {}  # case-folded stem -> the source given it
    stems: list[str | None] = [None] * len(paths)

    def free(stem: str, source: str) -> bool:
        key = stem_key(stem)
        return key not in taken and not (held.get(key, set()) - {source})

    def give(i: int, stem: str) -> None:
        stems[i], taken[stem_key(stem)] = stem, sources[i]

    # 1. the stem a source's accepted variations hold (its plain one first); the first path in
    # sorted order wins a stem several sources hold (an old clash: later ones are renamed)
    own = {i: sorted((k for k, srcs in held.items() if sources[i] in srcs), key=lambda k: k != stem_key(base[i]))
           for i in range(len(paths))}
    for i in sorted(range(len(paths)), key=lambda i: sources[i]):
        for key in own[i]:
            if key not in taken:
                give(i, base[i] if key == stem_key(base[i]) else _spelled(key, base[i], rel[i]))
                break
    # 2. the plain stem, for a source alone with it
    counts: dict[str, int] = defaultdict(int)
    for b in base:
        counts[stem_key(b)] += 1
    for i in range(len(paths)):
        if stems[i] is None and counts[stem_key(base[i])] == 1 and free(base[i], sources[i]):
            give(i, base[i])
    # 3. the suffix, then a digest of the relative path
    for i in sorted(range(len(paths)), key=lambda i: sources[i]):
        if stems[i] is not None:
            continue
        ext = rel[i].suffix.lstrip(".").lower()
        with_ext = f"{base[i]}-{ext}" if ext else base[i]
        candidates = [with_ext] + [f"{with_ext}-{stable_id(rel[i].as_posix(), n)[:6]}" for n in range(100)]
        give(i, next(c for c in candidates if free(c, sources[i])))
    return stems


def _spelled(key: str, base: str, rel: Path) -> str:
    """The held stem ``key`` as this source spells it (keys are case-folded)."""
    ext = rel.suffix.lstrip(".").lower()
    for candidate in (f"{base}-{ext}", base):
        if stem_key(candidate) == key:
            return candidate
    for n in range(100):
        candidate = f"{base}-{ext}-{stable_id(rel.as_posix(), n)[:6]}"
        if stem_key(candidate) == key:
            return candidate
    return key


def holders_of(prefix: str, source: str, rows: Iterable[Mapping]) -> set[str]:
    """The other sources whose accepted variations hold ``<prefix>NN.png`` (the guard before a job
    writes; compared case-folded)."""
    key = stem_key(prefix)
    out = set()
    for r in rows:
        path = stem_key(str(r.get("output_path") or ""))
        if path.startswith(key) and re.fullmatch(r"\d{2,}\.png", path[len(key):]) and str(r["source_path"]) != source:
            out.add(str(r["source_path"]))
    return out
