"""Secrets out of every kept text: any fragment of a known key, in any case.

An API echoes a key back altered (a character dropped, upper-cased, cut in an error message), so
removing only the exact key leaves most of it on record. Here every run of ``MIN_FRAGMENT`` or
more characters that appears, in any case, inside a secret is replaced: a key with one character
dropped loses both of its halves (each is a fragment), a shorter leftover is too short to use.

The secrets of this process are remembered where they are read (the backend's key, a Prefect
Secret block), so every sink can redact without being handed the key: the store's rows
(``varflow.storage.Store``), log records (``varflow.safety.escaping.OneLineRecords``) and the backends' errors.
"""

from __future__ import annotations

import string
import threading
from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_FRAGMENT = 8  # characters of a secret that are redacted wherever they appear
MIN_SECRET = 4  # shorter "secrets" are not secrets (and would redact common words)

_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # keeps every index in place
_known: set[str] = set()
_lock = threading.Lock()


def remember_secret(secret: str | None) -> None:
    """Redact ``secret`` (and its fragments) from everything this process keeps from now on."""
    if secret and len(secret.strip()) >= MIN_SECRET:
        with _lock:
            _known.add(secret.strip())


def known_secrets() -> tuple[str, ...]:
    with _lock:
        return tuple(_known)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without ``secrets`` or this process's remembered ones: a short secret exactly, a
    longer one as any fragment of ``MIN_FRAGMENT``+ characters, in any case."""
    every = {s.strip() for s in (*secrets, *known_secrets()) if s and len(s.strip()) >= MIN_SECRET}
    if not every or not text:
        return text
    for short in (s for s in every if len(s) < MIN_FRAGMENT):
        text = text.replace(short, REDACTED)
    grams = {s.translate(_LOWER)[i:i + MIN_FRAGMENT] for s in every if len(s) >= MIN_FRAGMENT
             for i in range(len(s) - MIN_FRAGMENT + 1)}
    if not grams:
        return text
    low = text.translate(_LOWER)
    hidden = bytearray(len(text))
    for i in range(len(text) - MIN_FRAGMENT + 1):
        if low[i:i + MIN_FRAGMENT] in grams:
            hidden[i:i + MIN_FRAGMENT] = b"\x01" * MIN_FRAGMENT
    if not any(hidden):
        return text
    out, i = [], 0
    while i < len(text):
        if hidden[i]:
            while i < len(text) and hidden[i]:
                i += 1
            out.append(REDACTED)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


ERROR_COLUMNS = ("error", "message")  # where a row keeps what an API or an exception said


def redact_row(row: dict) -> dict:
    """A record's row with its error texts redacted (nothing to do while no secret is known).
    Only those: a key's fragment can match a word of a test key in the other columns (the backend's
    name in a run's parameters), and a run must read back what it recorded."""
    if not known_secrets():
        return row
    return {k: redact(v) if k in ERROR_COLUMNS and isinstance(v, str) else v for k, v in row.items()}
