"""The run gallery: one self-contained HTML page of a run's originals and their variations.

Pure rendering from plain rows (the store's columns, storage/SCHEMA.md) and thumbnails already
encoded as data URIs, so the page needs nothing but itself: it works opened from disk, offline,
mailed or attached to a ticket. Every text from the store is escaped (file names, prompts and
error messages are user data). A small inline script filters cards by verdict, reason and review.

Each card shows the latest decision a person made on it (``variation_status``: verdict, reviewer,
when) and where its file is now. Written to disk the page is read-only; ``varflow review serve``
renders it with ``served`` (flows/review_server.py): Keep / Reject on each card, keys to go through a
run, pictures linked from the server instead of embedded, and a token its decisions must carry.
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


@dataclass(frozen=True)
class Served:
    """What the page served by ``varflow review serve`` adds: who decides, the token every decision
    carries (the server refuses a POST without it), the script's CSP nonce, and the runs to switch to."""

    token: str
    reviewer: str
    nonce: str
    runs: list[dict] = field(default_factory=list)  # recent runs: run_id, started_at, accepted, rejected
    run_href: str = "/run/"  # a run's page is run_href + run_id


@dataclass(frozen=True)
class _Ctx:
    input_dir: str | None
    output_dir: str | None
    attempt_of: dict
    served: Served | None


KEYS = (("j", "next"), ("k", "previous"), ("a", "keep"), ("x", "reject"))  # the served page's shortcuts


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


def review_facts(row: dict, output_dir: str | None) -> dict:
    """A card's latest decision and its file's place, as the page shows them: the server's answer to a
    decision carries the same texts, so a card updated in place reads as a reloaded one."""
    verdict = row.get("verdict")
    if verdict in ("keep", "reject"):
        text = f'{"✓ kept" if verdict == "keep" else "✗ rejected"} by {row.get("reviewer") or "?"}'
        when = _when(row.get("reviewed_at"))
        text += f" · {when}" if when else ""
    else:
        verdict, text = "", "not yet reviewed"
    agrees = row.get("agrees")
    place, title = _place(row, output_dir)
    return {"review": verdict, "agrees": "" if agrees is None or not verdict else ("1" if agrees else "0"),
            "decision": text, "note": row.get("review_note") or "", "place": place, "place_title": title,
            "final_accepted": bool(row.get("final_accepted", row.get("accepted")))}


def _place(row: dict, output_dir: str | None) -> tuple[str, str]:
    """Where the variation's file is now (``final_path``), short, and in full for the tooltip."""
    path = row.get("final_path", row.get("output_path"))
    if not path:
        return ("file gone" if row.get("verdict") == "keep" else "file deleted by the run"), ""
    p = Path(path)
    try:
        short = p.relative_to(output_dir).as_posix() if output_dir else p.name
    except ValueError:
        short = p.name
    where = "in _rejected/" if short.split("/", 1)[0] == "_rejected" or p.parent.name == "_rejected" \
        else "in the output folder"
    return f"{where}: {Path(short).name}", str(path)


def render_gallery(*, run: dict, parameters: dict, sources: list[Source], not_processed: list[dict],
                   hidden_sources: int = 0, more_hint: str = "", served: Served | None = None) -> str:
    """The page. ``sources``: images with variations to show; ``not_processed``: image rows that
    were skipped or failed without variations (listed, not shown); ``hidden_sources``: images left
    off because the page is full, with ``more_hint`` saying how to see them; ``served``: the
    review server's page (buttons, keys, token), else the read-only page written to disk."""
    cards = [c for s in sources for c in s.cards]
    accepted = [c for c in cards if c.row.get("accepted")]
    rejected = [c for c in cards if not c.row.get("accepted")]
    reasons = Counter(r for c in rejected for r in _reasons(c.row))
    attempt_of = {c.row["variation_id"]: (s, c) for s in sources for c in s.cards}
    title = f"{'review ' if served else ''}varflow run {run.get('run_id', '')}"
    ctx = _Ctx(run.get("input_dir"), run.get("output_dir"), attempt_of, served)
    body = [
        _header(run, parameters, sources, accepted, rejected, not_processed, hidden_sources, _review_bar(run, served)),
        _filters(len(cards), len(accepted), len(rejected), reasons, [c.row for c in cards]),
    ]
    if hidden_sources:
        body.append(f'<p class="note">Showing {len(sources)} of {len(sources) + hidden_sources} images with '
                    f'variations. {esc(more_hint)}</p>')
    if not cards and not sources:
        body.append('<p class="empty">This run judged no variations.</p>')
    body += [_source(s, ctx) for s in sources]
    body.append('<p class="empty" id="nomatch" hidden>No variation matches these filters.</p>')
    if not_processed:
        body.append(_not_processed(not_processed, run.get("input_dir")))
    if served:
        body.append('<div id="status" role="status" aria-live="polite" hidden></div>')
    script = _SCRIPT + (_REVIEW_SCRIPT if served else "")
    head = (f'<meta name="varflow-token" content="{esc(served.token)}">' if served else "")
    return _PAGE.format(title=esc(title), css=_CSS, script=script, body="\n".join(body), head=head,
                        nonce=f' nonce="{esc(served.nonce)}"' if served else "",
                        served=' data-served="1"' if served else "")


def _header(run, parameters, sources, accepted, rejected, not_processed, hidden_sources, extra: str = "") -> str:
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
    cards = [c.row for s in sources for c in s.cards]
    reviewed = sum(1 for r in cards if r.get("verdict"))
    against = sum(1 for r in cards if r.get("verdict") and r.get("agrees") is False)
    tiles = "".join(f'<div class="tile {cls}"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v, cls in stats)
    tiles += (f'<div class="tile people" data-count="reviewed"><b>{reviewed}</b><span>reviewed</span></div>'
              f'<div class="tile people" data-count="disagree"><b>{against}</b><span>against the gate</span></div>')
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    mean_line = ""
    if means:
        mean_line = ('<p class="means">Mean scores of accepted variations: '
                     + ", ".join(f"{esc(k)} <b>{v:.3f}</b>" for k, v in means.items()) + "</p>")
    message = f'<p class="note">{esc(run["message"])}</p>' if run.get("message") else ""
    return (f'<header><h1>varflow run <code>{esc(run.get("run_id"))}</code></h1>'
            f'<div class="tiles">{tiles}</div><dl>{dl}</dl>{mean_line}{message}{extra}</header>')


def _filters(total: int, n_accepted: int, n_rejected: int, reasons: Counter, rows: list[dict]) -> str:
    verdicts = [("all", "All", total), ("accepted", "Accepted", n_accepted), ("rejected", "Rejected", n_rejected)]
    buttons = "".join(
        f'<button type="button" class="seg{" on" if v == "all" else ""}" data-verdict="{v}">'
        f'{esc(label)} <span class="count">{n}</span></button>' for v, label, n in verdicts)
    reviewed = sum(1 for r in rows if r.get("verdict"))
    against = sum(1 for r in rows if r.get("verdict") and r.get("agrees") is False)
    people = [("all", "All", ""), ("todo", "Not yet reviewed", total - reviewed), ("reviewed", "Reviewed", reviewed),
              ("disagree", "Against the gate", against)]
    review = "".join(
        f'<button type="button" class="seg{" on" if v == "all" else ""}" data-review="{v}">{esc(label)}'
        + (f' <span class="count" data-count="{v}">{n}</span>' if v != "all" else "") + "</button>"
        for v, label, n in people)
    chips = "".join(
        f'<button type="button" class="chip reason" data-reason="{esc(r)}">{esc(r)} <span class="count">{n}</span>'
        f'</button>' for r, n in reasons.most_common())
    return (f'<nav class="filters" aria-label="filters"><div class="group"><span class="label">gate</span>{buttons}'
            f'</div><div class="group"><span class="label">people</span>{review}</div>'
            + (f'<div class="group"><span class="label">reasons</span>{chips}</div>' if chips else "")
            + '<span class="shown" id="shown"></span></nav>')


def _review_bar(run: dict, served: Served | None) -> str:
    """Who decides and the keys (served), or how to decide (the read-only page written to disk)."""
    if served is None:
        return (f'<p class="readonly">Read-only page: <code>varflow review serve {esc(run.get("run_id"))}</code> '
                'serves it with Keep and Reject on each card (the files follow the decisions).</p>')
    keys = " ".join(f"<kbd>{esc(k)}</kbd> {esc(what)}" for k, what in KEYS)
    links = "".join(
        f'<a class="run{" on" if r.get("run_id") == run.get("run_id") else ""}" '
        f'href="{esc(served.run_href + str(r.get("run_id")))}" title="{esc(_when(r.get("started_at")))}">'
        f'<code>{esc(str(r.get("run_id"))[:8])}</code> {esc(r.get("accepted"))}✓ {esc(r.get("rejected"))}✗</a>'
        for r in served.runs)
    return (f'<div class="reviewbar"><p>Reviewing as <b>{esc(served.reviewer)}</b>: Keep brings a file into the '
            f'output folder, Reject moves it to <code>_rejected/</code>. Keys: {keys}.</p>'
            + (f'<nav class="runs" aria-label="runs"><span class="label">runs</span>{links}</nav>' if links else "")
            + "</div>")


def _source(s: Source, ctx: _Ctx) -> str:
    r = s.row
    name = _display_name(r.get("path"), ctx.input_dir)
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
    lazy = ' loading="lazy" decoding="async"' if ctx.served else ""
    thumb = (f'<img src="{esc(s.thumbnail)}"{lazy} alt="original {esc(name)}">' if s.thumbnail
             else '<div class="missing">original not found</div>')
    original = (f'<article class="card original"><div class="pic">{thumb}</div><div class="body">'
                f'<p class="verdict"><span class="badge original">original</span><span '
                f'class="meta">{esc(size)}</span></p>'
                f'</div></article>')
    cards = "".join(_card(c, ctx) for c in s.cards)
    return (f'<section class="source" data-image="{esc(r.get("image_id"))}">'
            f'<div class="head"><h2 title="{esc(r.get("path"))}">{esc(name)}</h2>'
            f'<span class="facts">{esc(" · ".join(f for f in facts if f))}</span>'
            + (f'<span class="facts">calls without an image: {failed}</span>' if failed else "")
            + f'</div>{error}<div class="grid">{original}{cards}</div></section>')


def _card(c: Card, ctx: _Ctx) -> str:
    r, attempt_of = c.row, ctx.attempt_of
    ok = bool(r.get("accepted"))
    reasons = _reasons(r)
    marked = {REASON_METRIC[x] for x in reasons if x in REASON_METRIC}
    verdict = "accepted" if ok else "rejected"
    lazy = ' loading="lazy" decoding="async"' if ctx.served else ""
    thumb = (f'<img src="{esc(c.thumbnail)}"{lazy} alt="attempt {esc(r.get("attempt"))}, {verdict}" '
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
    facts = review_facts(r, ctx.output_dir)
    return (f'<article class="card {verdict}" id="v-{esc(r.get("variation_id"))}" data-verdict="{verdict}" '
            f'data-reasons="{esc(" ".join(reasons))}" data-vid="{esc(r.get("variation_id"))}" '
            f'data-card="{esc(str(r.get("variation_id")) + "-" + str(r.get("run_id")))}" '
            f'data-review="{esc(facts["review"])}" data-agrees="{esc(facts["agrees"])}">'
            f'<div class="pic">{thumb}</div><div class="body">'
            f'<p class="verdict"><span class="badge {verdict}">{"✓ accepted" if ok else "✗ rejected"}</span>'
            f'<span class="meta">{esc(meta)}</span></p>{scores}'
            + (f'<div class="chips">{chips}</div>' if chips else "")
            + (f'<p class="prompt" title="{esc(r.get("prompt"))}">{esc(r.get("prompt"))}</p>'
               if r.get("prompt") else "")
            + _review_block(facts, ctx.served) + '</div></article>')


def _review_block(facts: dict, served: Served | None) -> str:
    """The latest decision, the file's place, and (served) the buttons; the served page's script fills
    the same elements from the server's answer (``review_facts``)."""
    state = facts["review"] or "none"
    override = " override" if facts["agrees"] == "0" else ""
    buttons = ('<div class="actions"><button type="button" class="act keep" data-act="keep" '
               'title="keep: into the output folder (key a)">Keep <kbd>a</kbd></button>'
               '<button type="button" class="act reject" data-act="reject" '
               'title="reject: to _rejected/ (key x)">Reject <kbd>x</kbd></button></div>') if served else ""
    return (f'<div class="review"><p class="decision {state}{override}"><span class="what">'
            f'{esc(facts["decision"])}</span><span class="vs">against the gate</span></p>'
            f'<p class="rnote"{"" if facts["note"] else " hidden"}>{esc(facts["note"])}</p>'
            f'<p class="place" title="{esc(facts["place_title"])}">{esc(facts["place"])}</p>{buttons}</div>')


def _not_processed(rows: Iterable[dict], input_dir: str | None) -> str:
    items = "".join(
        f'<li><b>{esc(_display_name(r.get("path"), input_dir))}</b> <span class="chip '
        f'{"fail" if r.get("status") == "error" else ""}">'
        f'{esc(r.get("status"))}</span> {esc(r.get("error") or "")}</li>' for r in rows)
    return f'<section class="others"><h2>Images without variations in this run</h2><ul>{items}</ul></section>'


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>{head}
<style>{css}</style></head>
<body{served}>
{body}
<script{nonce}>{script}</script>
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
.tile.people b { color: #8250df; }
.readonly { margin: 10px 0 0; color: var(--muted); }
.reviewbar { margin-top: 12px; padding-top: 10px; border-top: 1px solid var(--line); }
.reviewbar p { margin: 0 0 6px; }
kbd { font: 11px ui-monospace, SFMono-Regular, Menlo, monospace; padding: 0 5px; border: 1px solid var(--line);
      border-bottom-width: 2px; border-radius: 4px; background: var(--bg); color: #1f2328; }
.runs { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.runs a { text-decoration: none; color: inherit; border: 1px solid var(--line); border-radius: 6px; padding: 1px 8px;
          font-size: 12px; background: var(--card); }
.runs a.on { border-color: #0969da; box-shadow: 0 0 0 1px #0969da inset; }
.review { border-top: 1px dashed var(--line); padding-top: 6px; display: flex; flex-direction: column; gap: 4px; }
.decision { margin: 0; font-size: 12px; display: flex; flex-wrap: wrap; gap: 4px 6px; align-items: center; }
.decision .what { font-weight: 600; }
.decision.none .what { color: var(--muted); font-weight: 400; font-style: italic; }
.decision.keep .what { color: var(--ok); } .decision.reject .what { color: var(--bad); }
.decision .vs { display: none; font-size: 11px; padding: 0 7px; border-radius: 999px; background: #fbefff;
                color: #8250df; border: 1px solid #d8b9ff; }
.decision.override .vs { display: inline-block; }
.rnote { margin: 0; font-size: 12px; font-style: italic; word-break: break-word; }
.place { margin: 0; font-size: 11px; color: var(--muted); white-space: nowrap; overflow: hidden;
         text-overflow: ellipsis; }
.actions { display: grid; grid-template-columns: 1fr 1fr; gap: 6px; margin-top: 2px; }
.act { border: 1px solid var(--line); border-radius: 6px; padding: 4px 6px; background: var(--card); font-weight: 600; }
.act kbd { margin-left: 4px; }
.act.keep { color: var(--ok); } .act.keep:hover, .card[data-review=keep] .act.keep {
  background: var(--ok); border-color: var(--ok); color: #fff; }
.act.reject { color: var(--bad); } .act.reject:hover, .card[data-review=reject] .act.reject {
  background: var(--bad); border-color: var(--bad); color: #fff; }
.act:disabled { opacity: .6; cursor: progress; }
.card.current { outline: 3px solid #0969da; outline-offset: 2px; }
.card[data-review=keep] { box-shadow: 0 -4px 0 var(--ok) inset; }
.card[data-review=reject] { box-shadow: 0 -4px 0 var(--bad) inset; }
.card[data-review=reject] .pic img { opacity: .55; }
#status { position: fixed; left: 50%; bottom: 18px; transform: translateX(-50%); max-width: min(90vw, 760px);
          background: #1f2328; color: #fff; padding: 8px 14px; border-radius: 8px; font-size: 13px; z-index: 5;
          box-shadow: 0 4px 14px rgba(0,0,0,.25); word-break: break-word; }
#status.error { background: var(--bad); }
[hidden] { display: none !important; }
@media (max-width: 800px) {
  body { padding: 12px; } dl { grid-template-columns: max-content minmax(0, 1fr); }
  .tile { min-width: 90px; } .tile b { font-size: 18px; }
}
"""

_SCRIPT = """
(function () {
  var verdict = 'all', review = 'all', reasons = new Set();
  var cards = Array.prototype.slice.call(document.querySelectorAll('.card[data-verdict]'));
  var sources = Array.prototype.slice.call(document.querySelectorAll('.source'));
  function reviewed(c) {
    if (review === 'todo') return !c.dataset.review;
    if (review === 'reviewed') return !!c.dataset.review;
    if (review === 'disagree') return c.dataset.agrees === '0';
    return true;
  }
  function recount() {
    var n = {todo: 0, reviewed: 0, disagree: 0};
    cards.forEach(function (c) {
      if (c.dataset.review) n.reviewed++; else n.todo++;
      if (c.dataset.agrees === '0') n.disagree++;
    });
    document.querySelectorAll('[data-count]').forEach(function (el) {
      (el.querySelector('b') || el).textContent = n[el.dataset.count];
    });
  }
  function apply() {
    var shown = 0;
    cards.forEach(function (c) {
      var mine = c.dataset.reasons ? c.dataset.reasons.split(' ') : [];
      var ok = (verdict === 'all' || c.dataset.verdict === verdict) && reviewed(c) &&
               (reasons.size === 0 || mine.some(function (r) { return reasons.has(r); }));
      c.hidden = !ok; if (ok) shown++;
    });
    sources.forEach(function (s) {
      var mine = s.querySelectorAll('.card[data-verdict]');
      s.hidden = mine.length > 0 && !s.querySelector('.card[data-verdict]:not([hidden])');
    });
    document.getElementById('shown').textContent = 'showing ' + shown + ' of ' + cards.length + ' variations';
    document.getElementById('nomatch').hidden = shown > 0 || cards.length === 0;
    recount();
  }
  function segments(attr, set) {
    var all = document.querySelectorAll('.seg[data-' + attr + ']');
    all.forEach(function (b) {
      b.addEventListener('click', function () {
        set(b.dataset[attr]);
        all.forEach(function (x) { x.classList.toggle('on', x === b); });
        apply();
      });
    });
  }
  segments('verdict', function (v) { verdict = v; });
  segments('review', function (v) { review = v; });
  document.querySelectorAll('.chip.reason').forEach(function (b) {
    b.addEventListener('click', function () {
      var r = b.dataset.reason;
      if (reasons.has(r)) reasons.delete(r); else reasons.add(r);
      b.classList.toggle('on', reasons.has(r));
      if (reasons.size && verdict === 'accepted') {
        verdict = 'all';
        document.querySelectorAll('.seg[data-verdict]').forEach(function (x) {
          x.classList.toggle('on', x.dataset.verdict === 'all');
        });
      }
      apply();
    });
  });
  window.varflowGallery = {apply: apply, cards: cards};
  apply();
})();
"""

# Only on the served page: Keep / Reject (buttons and keys) POST to the server, with the page's token in a
# header; the card is updated in place from the answer (textContent only: the answer's texts are data).
_REVIEW_SCRIPT = r"""
(function () {
  var token = document.querySelector('meta[name=varflow-token]').content;
  var status = document.getElementById('status'), current = null, timer = null;
  function visible() { return window.varflowGallery.cards.filter(function (c) { return !c.hidden; }); }
  function say(text, error) {
    status.textContent = text; status.hidden = false; status.classList.toggle('error', !!error);
    clearTimeout(timer); timer = setTimeout(function () { status.hidden = true; }, error ? 8000 : 3500);
  }
  function focus(card) {
    if (current) current.classList.remove('current');
    current = card || null;
    if (current) { current.classList.add('current'); current.scrollIntoView({block: 'nearest'}); }
  }
  function step(delta) {
    var shown = visible(); if (!shown.length) return focus(null);
    var i = shown.indexOf(current);
    focus(shown[i < 0 ? (delta > 0 ? 0 : shown.length - 1) : Math.max(0, Math.min(shown.length - 1, i + delta))]);
  }
  function update(card, r) {
    card.dataset.review = r.review; card.dataset.agrees = r.agrees;
    var d = card.querySelector('.decision');
    d.className = 'decision ' + (r.review || 'none') + (r.agrees === '0' ? ' override' : '');
    d.querySelector('.what').textContent = r.decision;
    var note = card.querySelector('.rnote'); note.textContent = r.note; note.hidden = !r.note;
    var place = card.querySelector('.place'); place.textContent = r.place; place.title = r.place_title;
    var missing = card.querySelector('.pic .missing');
    if (r.picture && missing) {
      var img = document.createElement('img');
      img.src = r.picture; img.alt = 'variation'; missing.replaceWith(img);
    }
  }
  function decide(card, verdict) {
    if (!card || card.dataset.busy) return;
    var next = visible()[visible().indexOf(card) + 1] || null;
    card.dataset.busy = '1';
    card.querySelectorAll('.act').forEach(function (b) { b.disabled = true; });
    fetch('/api/review', {method: 'POST', credentials: 'same-origin',
                          headers: {'Content-Type': 'application/json', 'X-Varflow-Token': token},
                          body: JSON.stringify({card: card.dataset.card, verdict: verdict})})
      .then(function (res) {
        return res.text().then(function (t) {
          var body; try { body = JSON.parse(t); } catch (e) { body = {error: t || res.statusText}; }
          if (!res.ok) throw new Error(body.error || res.statusText);
          return body;
        });
      })
      .then(function (r) {
        update(card, r); say(r.message, false);
        window.varflowGallery.apply();
        if (current === card) focus(card.hidden ? next : (next || card));
      })
      .catch(function (e) { say(String(e.message || e), true); })
      .finally(function () {
        delete card.dataset.busy;
        card.querySelectorAll('.act').forEach(function (b) { b.disabled = false; });
      });
  }
  document.querySelectorAll('.card[data-vid] .act').forEach(function (b) {
    b.addEventListener('click', function (ev) {
      var card = b.closest('.card'); focus(card); decide(card, b.dataset.act); ev.stopPropagation();
    });
  });
  document.querySelectorAll('.card[data-vid]').forEach(function (c) {
    c.addEventListener('click', function () { focus(c); });
  });
  document.addEventListener('keydown', function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || /^(INPUT|TEXTAREA|SELECT)$/.test(ev.target.tagName)) return;
    var k = ev.key.toLowerCase();
    if (k === 'j') step(1);
    else if (k === 'k') step(-1);
    else if (k === 'a' && current) decide(current, 'keep');
    else if (k === 'x' && current) decide(current, 'reject');
    else return;
    ev.preventDefault();
  });
})();
"""
