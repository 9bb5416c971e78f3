"""``varflow review serve``: the run gallery with Keep / Reject on each card, served by the standard
library's ``ThreadingHTTPServer`` (no framework: a few routes and a form-less JSON POST).

Every decision goes through ``apply_review`` (flows/review.py), as ``varflow review mark`` does: the
``reviews`` row first, then the file follows. The page is the gallery (flows/gallery.py rows,
varflow/reports/gallery.py rendering) with its pictures linked from this server, made on demand and
kept in memory a bounded number, so a page of hundreds of cards loads as it scrolls.

A page on the loopback can still be reached by any site the reviewer's browser visits, so a request is
refused (403, one line) unless: its ``Host`` names this server's own address and port (a DNS-rebound
name does not), its ``Origin``, when sent, is this server's, and a POST carries the page's token (a
random one per server start) in the ``X-Varflow-Token`` header. Served beyond the loopback (``--host``),
every request needs the token: the URL printed at start carries it once, and it is then kept in a
cookie (HttpOnly, SameSite=Strict). Files are looked up by variation or image id among the cards the
pages showed, never by a path from a request: only the runs' recorded files and the data directory's
kept thumbnails are ever read.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import socket
import sys
import threading
import traceback
from functools import lru_cache
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from varflow.flows.gallery import gallery_rows, picture_of
from varflow.flows.review import apply_review
from varflow.storage import Store
from varflow.storage.analysis import recent_runs, resolve_run

from varflow.errors import InputError, VarflowError
from varflow.images.locations import exists, is_url, local_copy
from varflow.images.thumbnails import thumbnail_jpeg
from varflow.reports.gallery import Card, Served, Source, render_gallery, review_facts
from varflow.safety.escaping import for_log
from varflow.settings import GALLERY, REVIEW_SERVER

TOKEN_HEADER = "X-Varflow-Token"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
WILDCARD = frozenset({"0.0.0.0", "::", ""})
_ID = re.compile(r"[0-9a-f-]{6,120}")  # image ids, card keys (``card_key``): hex and a run's UUID


def card_key(row: dict) -> str:
    """A card's name on this server: its variation and run (a later run over the same photos with another
    ``--out`` makes the same variation id, with a file of its own)."""
    return f"{row['variation_id']}-{row['run_id']}"
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                     "X-Frame-Options": "DENY", "Cross-Origin-Resource-Policy": "same-origin"}


class Refused(Exception):
    """A request this server will not answer: the status and the one line said."""

    def __init__(self, status: int, line: str):
        super().__init__(line)
        self.status, self.line = status, line


@lru_cache(maxsize=REVIEW_SERVER.thumbnails_cached)
def _thumbnail(path: str, mtime_ns: int, size: int) -> bytes | None:
    """A file's JPEG thumbnail, cached per version of the file (its time and size are in the key)."""
    try:
        return thumbnail_jpeg(path)
    except Exception:  # unreadable now (moved, truncated, replaced): the picture is missing
        return None


def _read_picture(path: str | Path, stored: bool) -> bytes | None:
    """A picture's thumbnail bytes: the kept thumbnail as it is, a file's made (and cached by its size and
    time), an object's fetched from its bucket."""
    try:
        if stored:
            return Path(path).read_bytes()
        if is_url(path):
            with local_copy(path) as local:
                return thumbnail_jpeg(local)
        st = Path(path).stat()
        return _thumbnail(str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return None


class ReviewApp:
    """The server's state: the store, the token, who decides, and what the pages served so far showed
    (the only variations a decision or a picture request may name)."""

    def __init__(self, home: str | Path, *, run_id: str | None, reviewer: str, host: str = REVIEW_SERVER.host,
                 port: int = REVIEW_SERVER.port, max_images: int = GALLERY.max_images):
        self.home = Path(home)
        self.default_run = resolve_run(self.home, run_id)["run_id"]  # LookupError: no such run (nothing made)
        self.store = Store(self.home).initialize()
        self.reviewer, self.max_images = reviewer, max_images
        self.token = secrets.token_urlsafe(32)
        self.host = host
        self.remote = host not in LOOPBACK
        self._lock = threading.Lock()
        self._variations: dict[str, dict] = {}  # card_key -> its variation_status row (as decided since)
        self._originals: dict[str, str] = {}  # image_id -> the source's path
        self.httpd = _Server(self, (host, port))
        self.port = self.httpd.server_address[1]
        self.cookie = f"varflow_review_{self.port}"  # cookies ignore ports: one per server

    # -- addresses ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        name = socket.gethostname() if self.host in WILDCARD else self.host
        return f"http://{f'[{name}]' if ':' in name else name}:{self.port}/"

    def host_ok(self, host_header: str | None) -> bool:
        """The ``Host`` header names this server: its address (or ``localhost`` on the loopback) and port;
        bound to every address, any name with this port (every request then needs the token)."""
        host = (host_header or "").strip().lower()
        if self.host in WILDCARD:
            name, _, port = host.rpartition(":")
            return bool(name) and port == str(self.port)
        names = {self.host.lower()} | ({"localhost"} if self.host in LOOPBACK else set())
        names = {f"[{n}]" if ":" in n else n for n in names}
        return host in {f"{n}:{self.port}" for n in names} | (names if self.port == 80 else set())

    def token_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    # -- pages and pictures ---------------------------------------------------------------------------
    def page(self, run_id: str | None) -> tuple[str, str]:
        """The gallery of ``run_id`` (default: the one named at start) with Keep / Reject; and its nonce."""
        g = gallery_rows(self.home, run_id or self.default_run, max_images=self.max_images)
        sources = []
        with self._lock:
            for img, variations in g.shown:
                self._originals[img["image_id"]] = img["path"]
                original = f"/pic/s/{img['image_id']}" if exists(img.get("path")) else None
                src = Source(img, original, failed_calls=g.failed.get(img["image_id"], {}))
                for v in variations:
                    self._variations[card_key(v)] = v
                    path, _, note = picture_of(self.home, v["run_id"], v)
                    src.cards.append(Card(v, f"/pic/v/{card_key(v)}" if path else None, note))
                sources.append(src)
        runs, seen = [], set()
        for r in recent_runs(self.home, limit=REVIEW_SERVER.runs_listed).records():
            if r["run_id"] not in seen:  # a retried run has a row per execution: list it once
                seen.add(r["run_id"])
                runs.append(r)
        nonce = secrets.token_urlsafe(16)
        served = Served(token=self.token, reviewer=self.reviewer, nonce=nonce, runs=runs)
        total = len(g.shown) + g.hidden
        more = f"`varflow review serve {g.run['run_id']} --max-images {total}` shows them all." if g.hidden else ""
        page = render_gallery(run=g.rows.run, parameters=g.rows.parameters, sources=sources,
                              not_processed=g.not_processed, hidden_sources=g.hidden, more_hint=more, served=served)
        return page, nonce

    def picture(self, kind: str, ident: str) -> bytes | None:
        """A thumbnail by id: ``v`` a variation on a served page (where its file is now), ``s`` a source."""
        with self._lock:
            row = self._variations.get(ident) if kind == "v" else None
            original = self._originals.get(ident) if kind == "s" else None
        if row is not None:
            path, stored, _ = picture_of(self.home, row["run_id"], row)
            return None if path is None else _read_picture(path, stored)
        return _read_picture(original, False) if original else None

    # -- decisions ------------------------------------------------------------------------------------
    def decide(self, body: object) -> dict:
        """Apply one decision from the page; the answer carries the card's new texts (``review_facts``)."""
        if not isinstance(body, dict):
            raise InputError("send a JSON object: {\"card\": ..., \"verdict\": \"keep\" | \"reject\"}")
        key, verdict, note = body.get("card"), body.get("verdict"), body.get("note")
        with self._lock:
            row = self._variations.get(key) if isinstance(key, str) else None
        if row is None:
            raise InputError("this page does not show that variation: reload it")
        if not isinstance(verdict, str) or (note is not None and not isinstance(note, str)):
            raise InputError("verdict must be 'keep' or 'reject', and a note text")
        vid = row["variation_id"]
        outcome = apply_review(self.store, vid, verdict, reviewer=self.reviewer, note=note, run_id=row["run_id"])
        fresh = self.store.query(
            "SELECT verdict, reviewer, reviewed_at, review_note, final_accepted, final_path, agrees "
            "FROM variation_status WHERE variation_id = ? AND run_id = ? AND coalesce(execution, 1) = ? LIMIT 1",
            [vid, row["run_id"], row.get("execution") or 1])
        row = {**row, **(fresh[0] if fresh else {})}
        with self._lock:
            self._variations[key] = row
        print(f"{for_log(self.reviewer)}: {for_log(outcome.message)}", flush=True)
        output_dir = self.store.query("SELECT any_value(output_dir) AS o FROM runs WHERE run_id = ?",
                                      [row["run_id"]])[0]["o"]
        path, _, _ = picture_of(self.home, row["run_id"], row)
        return {**review_facts(row, output_dir), "variation_id": vid, "card": key, "message": outcome.message,
                "picture": f"/pic/v/{key}?t={secrets.token_hex(4)}" if path else ""}

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: ReviewApp, address: tuple[str, int]):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server_version = "varflow-review"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive: a page's pictures come over a few connections

    @property
    def app(self) -> ReviewApp:
        return self.server.app

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: each decision is printed by the app; a refusal is answered, not logged

    # -- checks ---------------------------------------------------------------------------------------
    def _check_origin(self) -> None:
        if not self.app.host_ok(self.headers.get("Host")):
            raise Refused(HTTPStatus.FORBIDDEN, "refused: the Host header does not name this server")
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{self.headers['Host'].strip().lower()}":
            raise Refused(HTTPStatus.FORBIDDEN, "refused: a request from another site (Origin)")

    def _cookie_token(self) -> str | None:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie") or "")
        except Exception:  # a malformed cookie header is no token
            return None
        morsel = cookie.get(self.app.cookie)
        return morsel.value if morsel else None

    # -- methods --------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        try:
            self._check_origin()
            url = urlsplit(self.path)
            if self.app.remote:
                given = parse_qs(url.query).get("token", [None])[0]
                if self.app.token_ok(given):  # first visit: into a cookie, and off the address bar
                    return self._redirect_with_cookie(url.path)
                if not self.app.token_ok(self._cookie_token()):
                    raise Refused(HTTPStatus.FORBIDDEN, "refused: open the address with ?token= that "
                                                        "`varflow review serve` printed at start")
            self._route_get(url.path)
        except Refused as exc:
            self.close_connection = True  # a refused request's body, if any, must not be read as the next one
            self._send(exc.status, (exc.line + "\n").encode(), "text/plain; charset=utf-8")

    def _route_get(self, path: str) -> None:
        parts = path.strip("/").split("/")
        if path == "/" or (len(parts) == 2 and parts[0] == "run" and _ID.fullmatch(parts[1])):
            try:
                page, nonce = self.app.page(parts[1] if len(parts) == 2 else None)
            except LookupError as exc:
                raise Refused(HTTPStatus.NOT_FOUND, for_log(exc)) from None
            csp = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                   f"script-src 'nonce-{nonce}'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                   "frame-ancestors 'none'")
            return self._send(200, page.encode(), "text/html; charset=utf-8", {"Content-Security-Policy": csp})
        if len(parts) == 3 and parts[0] == "pic" and parts[1] in ("v", "s") and _ID.fullmatch(parts[2]):
            data = self.app.picture(parts[1], parts[2])
            if data is None:
                raise Refused(HTTPStatus.NOT_FOUND, "no picture: the file is gone, or no page showed it")
            return self._send(200, data, "image/jpeg", {"Cache-Control": "private, max-age=60"})
        raise Refused(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        try:
            self._check_origin()
            if self.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
                raise Refused(HTTPStatus.FORBIDDEN, "refused: a request from another site (Sec-Fetch-Site)")
            if not self.app.token_ok(self.headers.get(TOKEN_HEADER)):
                raise Refused(HTTPStatus.FORBIDDEN, f"refused: no valid {TOKEN_HEADER} (reload the page)")
            if urlsplit(self.path).path != "/api/review":
                raise Refused(HTTPStatus.NOT_FOUND, "not found")
            body = self._json_body()
            try:
                answer = self.app.decide(body)
            except VarflowError as exc:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except Exception:  # a bug: its traceback on the server's terminal, one line to the page
                traceback.print_exc(file=sys.stderr)
                return self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                                  {"error": "the server failed; its terminal shows why"})
            self._json(HTTPStatus.OK, answer)
        except Refused as exc:
            self.close_connection = True  # a body left unread must not be read as the next request
            self._send(exc.status, (exc.line + "\n").encode(), "text/plain; charset=utf-8")

    def _json_body(self) -> object:
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length") from None
        if not 0 < length <= REVIEW_SERVER.max_body_bytes:
            self.close_connection = True  # the unread body must not be taken for the next request
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "a decision is a small JSON object")
        try:
            return json.loads(self.rfile.read(length))
        except ValueError:
            raise Refused(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None

    # -- answers --------------------------------------------------------------------------------------
    def _redirect_with_cookie(self, path: str) -> None:
        """Keep the token in a cookie and go to the page asked for: one of this server's own pages only
        (``/\\evil.example`` would be another site to a browser)."""
        target = path if re.fullmatch(r"/(run/[0-9a-f]{6,64})?", path) else "/"
        cookie = f"{self.app.cookie}={self.app.token}; HttpOnly; SameSite=Strict; Path=/"
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": target, "Set-Cookie": cookie})

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload, default=str).encode(), "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        headers = {"Cache-Control": "no-store", **_SECURITY_HEADERS, **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
