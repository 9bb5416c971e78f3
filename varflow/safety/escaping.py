"""One escaping function per sink a name reaches: the terminal, a log record, Markdown, HTML.

File names, folder names, prompts and error texts are data typed by whoever fills an inbox or
calls the Prefect API. Each sink has its own rule, applied where the text enters it:

- ``for_terminal``: control characters (ESC and the other C0/C1 codes, DEL) and the Unicode
  marks that reorder text are shown escaped (``\\x1b``), so a name never moves the cursor,
  retitles the window or clears the screen. ``keep_newlines`` for a text made of lines.
- ``for_log``: the same, newlines included, so one record is one line and a name cannot forge
  a separate log line.
- ``for_markdown``: one table cell or one line of a Prefect Markdown artifact: the terminal's
  escapes, then every Markdown punctuation character backslash-escaped, so a name never adds a
  heading, a link, a table column or HTML.
- ``for_html``: ``html.escape`` (quotes included), as the gallery always did.
"""

from __future__ import annotations

import html
import logging
import re

from varflow.safety.redaction import redact

# C0 controls, DEL, C1 controls (CSI is \x9b), and bidirectional overrides/isolates (they make a
# terminal show text in another order than it is stored).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROLS_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters that start markup anywhere in a line (a column, a code span, emphasis, a link, HTML,
# an entity, strikethrough, a heading inside a list item), and what starts a block at a line's
# start (a list item, a numbered one, a quote).
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]<&|~#])")
_MARKDOWN_LINE_START = re.compile(r"^(\s*(?:\d+(?=[.)](?:\s|$)))?)([.)]|[-+](?=\s|$)|>)")


def _shown(match: re.Match) -> str:
    ch = match.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` safe to print: no control character reaches the terminal raw."""
    pattern = _CONTROLS_BUT_NEWLINE if keep_newlines else _CONTROLS
    return pattern.sub(_shown, str(text))


def for_log(text: object) -> str:
    """``text`` as one log line: every control character shown escaped (newlines too)."""
    return _CONTROLS.sub(_shown, str(text))


def for_markdown(text: object) -> str:
    """``text`` as literal Markdown inline text (a table cell, a list item): one line, no markup."""
    escaped = _MARKDOWN_INLINE.sub(r"\\\1", for_log(text))
    return _MARKDOWN_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)


def for_html(text: object) -> str:
    """``text`` as HTML text or an attribute value (quotes escaped)."""
    return html.escape(str(text), quote=True)


class OneLineRecords(logging.Filter):
    """A handler filter: the message of every record from varflow's loggers and Prefect's run
    loggers goes out as one line with its control characters escaped (``for_log``). The
    traceback of an exception stays as Python prints it."""

    PREFIXES = ("varflow", "prefect.flow_runs", "prefect.task_runs")  # varflow.flows, varflow.storage, ... too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(self.PREFIXES):
            message = record.getMessage()
            escaped = for_log(redact(message))  # and no fragment of a known key (varflow/safety/redaction.py)
            if escaped != message or record.args:
                record.msg, record.args = escaped, ()
        return True


def escape_log_records(*loggers: str) -> None:
    """Put ``OneLineRecords`` on every handler of the root logger, Prefect's loggers and
    ``loggers`` (idempotent): a record reaches its sinks through them."""
    names = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", *loggers)
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, OneLineRecords) for f in handler.filters):
                handler.addFilter(OneLineRecords())
