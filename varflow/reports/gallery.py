"""The run gallery: one self-contained HTML page of a run's originals and their variations.

Pure rendering from plain rows (the store's columns, storage/SCHEMA.md) and thumbnails already
encoded as data URIs, so the page needs nothing but itself: it works opened from disk, offline,
mailed or attached to a ticket. Every text from the store is escaped (file names, prompts and
error messages are user data). A small inline script filters cards by verdict and reason.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import fmean
from typing import Any

# Which score a reject reason is about: its value is marked on the card.
REASON_METRIC = {
    "similarity_low": "similarity", "similarity_high": "similarity", "diversity_low": "diversity",
    "aesthetic_low": "aesthetic", "object_integrity_low": "object_integrity",
    "overall_low": "overall_quality", "below_level_threshold": "overall_quality",
}
CARD_SCORES = (("similarity", "similarity"), ("diversity", "diversity"), ("aesthetic", "aesthetic"),
               ("object_integrity", "integrity"), ("overall_quality", "overall"))
AESTHETIC_PARTS = (("color_variance", "colour variance"), ("contrast", "contrast"),
                   ("brightness_balance", "brightness balance"), ("sharpness", "sharpness"))


@dataclass
class Card:
    """One judged variation: its row, its thumbnail (data URI) and where the picture came from."""

    row: dict
    thumbnail: str | None
    picture: str  # e.g. "the accepted file", "thumbnail kept by the run", "file not kept"


@dataclass
class Source:
    """One source image with the variations judged for it in the run."""

    row: dict
    thumbnail: str | None
    cards: list[Card] = field(default_factory=list)
    failed_calls: dict[str, int] = field(default_factory=dict)  # outcome -> calls that gave no image


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _reasons(row: dict) -> list[str]:
    return [r for r in (row.get("reject_reason") or "").split(";") if r]


def _display_name(path: str | None, input_dir: str | None) -> str:
    if not path:
        return "(unknown file)"
    try:
        return Path(path).relative_to(input_dir).as_posix() if input_dir else Path(path).name
    except ValueError:
        return Path(path).name


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return "" if value is None else str(value)


def render_gallery(*, run: dict, parameters: dict, sources: list[Source], not_processed: list[dict],
                   hidden_sources: int = 0, more_hint: str = "") -> str:
    """The page. ``sources``: images with variations to show; ``not_processed``: image rows that
    were skipped or failed without variations (listed, not shown); ``hidden_sources``: images left
    off because the page is full, with ``more_hint`` saying how to see them."""
    cards = [c for s in sources for c in s.cards]
    accepted = [c for c in cards if c.row.get("accepted")]
    rejected = [c for c in cards if not c.row.get("accepted")]
    reasons = Counter(r for c in rejected for r in _reasons(c.row))
    attempt_of = {c.row["variation_id"]: (s, c) for s in sources for c in s.cards}
    title = f"varflow run {run.get('run_id', '')}"
    body = [
        _header(run, parameters, sources, accepted, rejected, not_processed, hidden_sources),
        _filters(len(cards), len(accepted), len(rejected), reasons),
    ]
    if hidden_sources:
        body.append(f'<p class="note">Showing {len(sources)} of {len(sources) + hidden_sources} images with '
                    f'variations. {esc(more_hint)}</p>')
    if not cards and not sources:
        body.append('<p class="empty">This run judged no variations.</p>')
    body += [_source(s, run.get("input_dir"), attempt_of) for s in sources]
    body.append('<p class="empty" id="nomatch" hidden>No variation matches these filters.</p>')
    if not_processed:
        body.append(_not_processed(not_processed, run.get("input_dir")))
    return _PAGE.format(title=esc(title), css=_CSS, script=_SCRIPT, body="\n".join(body))


def _header(run, parameters, sources, accepted, rejected, not_processed, hidden_sources) -> str:
    attempts = sum(int(s.row.get("attempts") or 0) for s in sources) + sum(
        int(r.get("attempts") or 0) for r in not_processed)
    rate = f"{len(accepted) / attempts:.0%}" if attempts else "n/a"
    duplicates = sum(1 for c in rejected if "duplicate" in _reasons(c.row))
    statuses = Counter(r.get("status") for r in [*(s.row for s in sources), *not_processed])
    means = {label: fmean(vals) for key, label in CARD_SCORES
             if (vals := [c.row[key] for c in accepted if c.row.get(key) is not None])}
    facts = [
        ("status", run.get("status")),
        ("backend / model", f"{run.get('backend')} / {run.get('model')}"),
        ("started", _when(run.get("started_at"))),
        ("wall time", f"{run['wall_seconds']:.1f} s" if run.get("wall_seconds") is not None else "running"),
        ("images", f"{statuses.get('ok', 0)} ok, {statuses.get('error', 0)} error, "
                   f"{statuses.get('skipped', 0)} skipped"
                   + (f" ({hidden_sources} not shown)" if hidden_sources else "")),
        ("prompt", parameters.get("prompt") or "(none)"),
        ("type / count / seed", f"{parameters.get('variation_type', '?')} / {parameters.get('count', '?')} / "
                                f"{parameters.get('seed', '?')}"),
        ("output", run.get("output_dir")),
    ]
    stats = [("accepted", len(accepted), "ok"), ("rejected", len(rejected), "bad"),
             ("duplicates", duplicates, ""), ("attempts", attempts, ""), ("acceptance", rate, "")]
    no_image = attempts - len(accepted) - len(rejected)  # generation failed: nothing to judge or show
    if no_image > 0:
        stats.insert(3, ("gave no image", no_image, ""))
    tiles = "".join(f'<div class="tile {cls}"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v, cls in stats)
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    mean_line = ""
    if means:
        mean_line = ('<p class="means">Mean scores of accepted variations: '
                     + ", ".join(f"{esc(k)} <b>{v:.3f}</b>" for k, v in means.items()) + "</p>")
    message = f'<p class="note">{esc(run["message"])}</p>' if run.get("message") else ""
    return (f'<header><h1>varflow run <code>{esc(run.get("run_id"))}</code></h1>'
            f'<div class="tiles">{tiles}</div><dl>{dl}</dl>{mean_line}{message}</header>')


def _filters(total: int, n_accepted: int, n_rejected: int, reasons: Counter) -> str:
    verdicts = [("all", "All", total), ("accepted", "Accepted", n_accepted), ("rejected", "Rejected", n_rejected)]
    buttons = "".join(
        f'<button type="button" class="seg{" on" if v == "all" else ""}" data-verdict="{v}">'
        f'{esc(label)} <span class="count">{n}</span></button>' for v, label, n in verdicts)
    chips = "".join(
        f'<button type="button" class="chip reason" data-reason="{esc(r)}">{esc(r)} <span class="count">{n}</span>'
        f'</button>' for r, n in reasons.most_common())
    return (f'<nav class="filters" aria-label="filters"><div class="group">{buttons}</div>'
            + (f'<div class="group"><span class="label">reasons</span>{chips}</div>' if chips else "")
            + '<span class="shown" id="shown"></span></nav>')


def _source(s: Source, input_dir: str | None, attempt_of: dict) -> str:
    r = s.row
    name = _display_name(r.get("path"), input_dir)
    size = f"{r['width']}×{r['height']}" if r.get("width") else ""
    if r.get("optimized_width") and (r.get("optimized_width"),
                                     r.get("optimized_height")) != (r.get("width"), r.get("height")):
        size += f" → {r['optimized_width']}×{r['optimized_height']}"
    n_acc = sum(1 for c in s.cards if c.row.get("accepted"))
    facts = [f"level {r.get('quality_level')}" if r.get("quality_level") else "",
             f"{n_acc} of {r.get('requested')} accepted in {r.get('attempts')} attempts" if r.get("requested") else "",
             f"{r['total_ms'] / 1000:.1f} s" if r.get("total_ms") else ""]
    failed = "".join(f'<span class="chip fail">{esc(o)} ×{n}</span>' for o, n in s.failed_calls.items())
    error = f'<p class="error">{esc(r["error"])}</p>' if r.get("error") else ""
    thumb = (f'<img src="{esc(s.thumbnail)}" alt="original {esc(name)}">' if s.thumbnail
             else '<div class="missing">original not found</div>')
    original = (f'<article class="card original"><div class="pic">{thumb}</div><div class="body">'
                f'<p class="verdict"><span class="badge original">original</span><span '
                f'class="meta">{esc(size)}</span></p>'
                f'</div></article>')
    cards = "".join(_card(c, attempt_of) for c in s.cards)
    return (f'<section class="source" data-image="{esc(r.get("image_id"))}">'
            f'<div class="head"><h2 title="{esc(r.get("path"))}">{esc(name)}</h2>'
            f'<span class="facts">{esc(" · ".join(f for f in facts if f))}</span>'
            + (f'<span class="facts">calls without an image: {failed}</span>' if failed else "")
            + f'</div>{error}<div class="grid">{original}{cards}</div></section>')


def _card(c: Card, attempt_of: dict) -> str:
    r = c.row
    ok = bool(r.get("accepted"))
    reasons = _reasons(r)
    marked = {REASON_METRIC[x] for x in reasons if x in REASON_METRIC}
    verdict = "accepted" if ok else "rejected"
    thumb = (f'<img src="{esc(c.thumbnail)}" alt="attempt {esc(r.get("attempt"))}, {verdict}" '
             f'title="{esc(c.picture)}">' if c.thumbnail
             else f'<div class="missing">{esc(c.picture)}</div>')
    if "duplicate" in reasons:
        dup = attempt_of.get(r.get("duplicate_of"))
        target = (f'attempt {dup[1].row.get("attempt")}' if dup else "an earlier accepted variation")
        href = f'#v-{esc(r.get("duplicate_of"))}' if dup else None
        scores = ('<p class="dup">duplicate of ' + (f'<a href="{href}">{esc(target)}</a>' if href else esc(target))
                  + " (not scored)</p>")
    else:
        rows = []
        for key, label in CARD_SCORES:
            v = r.get(key)
            bad = " bad" if key in marked else ""
            width = 0 if v is None else max(0.0, min(1.0, v)) * 100
            rows.append(f'<div class="score{bad}"><span>{esc(label)}</span>'
                        f'<i><em style="width:{width:.0f}%"></em></i><b>{_num(v)}</b></div>')
        parts = ", ".join(f"{label} {_num(r.get(key))}" for key, label in AESTHETIC_PARTS)
        scores = f'<div class="scores" title="aesthetic parts: {esc(parts)}">{"".join(rows)}</div>'
    chips = "".join(f'<span class="chip bad">{esc(x)}</span>' for x in reasons)
    meta = f'attempt {r.get("attempt")} · {r.get("variation_type")}'
    if r.get("profile"):
        meta += f' · {r["profile"]}'
    return (f'<article class="card {verdict}" id="v-{esc(r.get("variation_id"))}" data-verdict="{verdict}" '
            f'data-reasons="{esc(" ".join(reasons))}">'
            f'<div class="pic">{thumb}</div><div class="body">'
            f'<p class="verdict"><span class="badge {verdict}">{"✓ accepted" if ok else "✗ rejected"}</span>'
            f'<span class="meta">{esc(meta)}</span></p>{scores}'
            + (f'<div class="chips">{chips}</div>' if chips else "")
            + (f'<p class="prompt" title="{esc(r.get("prompt"))}">{esc(r.get("prompt"))}</p>'
               if r.get("prompt") else "")
            + '</div></article>')


def _not_processed(rows: Iterable[dict], input_dir: str | None) -> str:
    items = "".join(
        f'<li><b>{esc(_display_name(r.get("path"), input_dir))}</b> <span class="chip '
        f'{"fail" if r.get("status") == "error" else ""}">'
        f'{esc(r.get("status"))}</span> {esc(r.get("error") or "")}</li>' for r in rows)
    return f'<section class="others"><h2>Images without variations in this run</h2><ul>{items}</ul></section>'


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body>
{body}
<script>{script}</script>
</body></html>
"""

_CSS = """
:root { --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; --muted: #57606a;
        --line: #d0d7de; --bg: #f6f8fa; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, "DejaVu Sans", sans-serif; color: #1f2328; background: var(--bg); }
h1 { font-size: 20px; margin: 0 0 12px; } h1 code { font-size: 16px; color: var(--muted); }
h2 { font-size: 16px; margin: 0 0 4px; word-break: break-all; }
header { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 20px; }
.tiles { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 12px; }
.tile { min-width: 110px; padding: 8px 14px; border-radius: 8px; background: var(--bg); border: 1px solid var(--line); }
.tile b { display: block; font-size: 22px; } .tile span { color: var(--muted); }
.tile.ok b { color: var(--ok); } .tile.bad b { color: var(--bad); }
dl { display: grid; grid-template-columns: max-content minmax(0, 1fr) max-content minmax(0, 1fr);
     gap: 2px 16px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; word-break: break-all; }
.means { margin: 10px 0 0; } .note { color: #9a6700; }
.filters { position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; gap: 10px 18px; align-items: center;
           margin: 16px 0; padding: 10px 14px; background: rgba(246,248,250,.95);
           border-bottom: 1px solid var(--line); }
.group { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.label { color: var(--muted); margin-right: 2px; }
button { font: inherit; cursor: pointer; }
.seg { border: 1px solid var(--line); background: var(--card); padding: 4px 12px; border-radius: 6px; }
.seg.on { background: #0969da; border-color: #0969da; color: #fff; }
.count { opacity: .7; font-size: 12px; }
.chip { display: inline-block; border: 1px solid var(--line); border-radius: 999px; padding: 1px 9px; font-size: 12px;
        background: var(--card); }
.chip.bad { background: var(--bad-bg); border-color: #ffcecb; color: var(--bad); }
.chip.fail { background: #fff8c5; border-color: #eac54f; color: #7d4e00; }
.chip.reason.on { background: var(--bad); border-color: var(--bad); color: #fff; }
.shown { margin-left: auto; color: var(--muted); }
.source { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px;
          margin: 0 0 16px; }
.head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 14px; margin-bottom: 10px; }
.facts { color: var(--muted); } .error { color: var(--bad); margin: 0 0 10px; word-break: break-word; }
.card.original { align-self: start; border-color: #0969da; box-shadow: 0 0 0 1px #0969da inset; }
.badge.original { background: #ddf4ff; color: #0969da; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; overflow: hidden; background: var(--card);
        display: flex; flex-direction: column; }
.card.accepted { border-color: #4ac26b; box-shadow: 0 0 0 1px #4ac26b inset; }
.pic { aspect-ratio: 4 / 3; background: var(--bg); display: flex; align-items: center; justify-content: center; }
.pic img { width: 100%; height: 100%; object-fit: contain; display: block; }
.card.rejected .pic img { opacity: .85; }
.missing { color: var(--muted); font-size: 12px; display: flex; align-items: center; justify-content: center;
           text-align: center; padding: 8px; }
.body { padding: 8px 10px 10px; display: flex; flex-direction: column; gap: 6px; }
.verdict { display: flex; justify-content: space-between; align-items: center; gap: 6px; margin: 0; }
.badge { font-weight: 600; font-size: 12px; padding: 1px 8px; border-radius: 999px; white-space: nowrap; }
.badge.accepted { background: var(--ok-bg); color: var(--ok); }
.badge.rejected { background: var(--bad-bg); color: var(--bad); }
.meta { color: var(--muted); font-size: 12px; text-align: right; }
.scores { display: grid; gap: 2px; font-size: 12px; font-variant-numeric: tabular-nums; }
.score { display: grid; grid-template-columns: 66px 1fr 42px; gap: 6px; align-items: center; }
.score span { color: var(--muted); } .score b { font-weight: 500; text-align: right; }
.score i { height: 6px; background: #eaeef2; border-radius: 3px; overflow: hidden; }
.score em { display: block; height: 100%; background: #8c959f; }
.card.accepted .score em { background: #4ac26b; }
.score.bad span, .score.bad b { color: var(--bad); font-weight: 600; } .score.bad em { background: var(--bad); }
.chips { display: flex; flex-wrap: wrap; gap: 4px; }
.prompt { margin: 0; font-size: 11px; color: var(--muted); overflow: hidden; display: -webkit-box;
          -webkit-line-clamp: 2; -webkit-box-orient: vertical; word-break: break-word; }
.dup { margin: 0; font-size: 12px; } .empty { color: var(--muted); text-align: center; padding: 24px; }
.others { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px; }
.others li { margin: 4px 0; word-break: break-word; }
[hidden] { display: none !important; }
@media (max-width: 800px) {
  body { padding: 12px; } dl { grid-template-columns: max-content minmax(0, 1fr); }
  .tile { min-width: 90px; } .tile b { font-size: 18px; }
}
"""

_SCRIPT = """
(function () {
  var verdict = 'all', reasons = new Set();
  var cards = Array.prototype.slice.call(document.querySelectorAll('.card[data-verdict]'));
  var sources = Array.prototype.slice.call(document.querySelectorAll('.source'));
  function apply() {
    var shown = 0;
    cards.forEach(function (c) {
      var mine = c.dataset.reasons ? c.dataset.reasons.split(' ') : [];
      var ok = (verdict === 'all' || c.dataset.verdict === verdict) &&
               (reasons.size === 0 || mine.some(function (r) { return reasons.has(r); }));
      c.hidden = !ok; if (ok) shown++;
    });
    sources.forEach(function (s) {
      var mine = s.querySelectorAll('.card[data-verdict]');
      s.hidden = mine.length > 0 && !s.querySelector('.card[data-verdict]:not([hidden])');
    });
    document.getElementById('shown').textContent = 'showing ' + shown + ' of ' + cards.length + ' variations';
    document.getElementById('nomatch').hidden = shown > 0 || cards.length === 0;
  }
  document.querySelectorAll('.seg').forEach(function (b) {
    b.addEventListener('click', function () {
      verdict = b.dataset.verdict;
      document.querySelectorAll('.seg').forEach(function (x) { x.classList.toggle('on', x === b); });
      apply();
    });
  });
  document.querySelectorAll('.chip.reason').forEach(function (b) {
    b.addEventListener('click', function () {
      var r = b.dataset.reason;
      if (reasons.has(r)) reasons.delete(r); else reasons.add(r);
      b.classList.toggle('on', reasons.has(r));
      if (reasons.size && verdict === 'accepted') {
        verdict = 'all';
        document.querySelectorAll('.seg').forEach(function (x) {
          x.classList.toggle('on', x.dataset.verdict === 'all');
        });
      }
      apply();
    });
  });
  apply();
})();
"""
