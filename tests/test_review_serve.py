"""``varflow review serve``: a real server (the CLI in a child process, on a free port) over the records of
a real run, driven by headless Chromium (Keep, Reject, a key, the "not yet reviewed" filter), and the
cross-site refusals asked of it over plain HTTP (http.client, the client under urllib)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TRICKY_NAME, make_photo_folder, run_flow_child
from varflow.flows.gallery import build_gallery
from varflow.flows.review import apply_review
from varflow.storage import Store

ROOT = Path(__file__).resolve().parents[1]
OPEN_GATE = dict(similarity_min=0, similarity_max=1, diversity_min=0, aesthetic_min=0,
                 object_integrity_min=0, overall_min=0)
REVIEWER = 'Ana <b onmouseover=alert(1)>"R"</b>'  # the reviewer's name is shown on the page: escaped too


@pytest.fixture(scope="module")
def run_store(prefect_api, tmp_path_factory) -> dict:
    """Two small photos (one named with HTML), count 2, the gate open but for overall quality: accepted and
    rejected variations; the rejected files deleted, so a keep takes its file from the generation cache."""
    base = tmp_path_factory.mktemp("review-serve")
    photos = make_photo_folder(base / "photos", 2, size=96)
    photos[0].rename(photos[0].with_name(TRICKY_NAME))
    home, out = base / "home", base / "out"
    run_flow_child({**prefect_api, "VARFLOW_HOME": str(home)}, input_dir=str(base / "photos"), output_dir=str(out),
                   home=str(home), count=2, seed=3, level="low", images_in_flight=1, profile="seed",
                   thresholds={**OPEN_GATE, "overall_min": 0.54})
    rows = Store(home).query("SELECT * FROM variations ORDER BY variation_id")
    assert 2 <= sum(r["accepted"] for r in rows) < len(rows)  # both verdicts, to decide against each
    return {"home": home, "out": out, "rows": rows}


class Server:
    """``varflow review serve`` in a child process; ``url`` as it printed, ``lines`` what else it printed."""

    def __init__(self, home: Path, *args: str):
        env = {k: v for k, v in os.environ.items() if k != "VARFLOW_REVIEWER"}
        self.proc = subprocess.Popen([sys.executable, "-m", "varflow.flows.cli", "review", "serve", "--port", "0",
                                      "--home", str(home), "--reviewer", REVIEWER, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        self.lines = [self.proc.stdout.readline() for _ in range(3 if "--host" in args else 2)]
        found = re.search(r" at (http://\S+)", self.lines[0])
        assert found, "".join(self.lines) + self.proc.stderr.read() if self.proc.poll() is not None else self.lines
        self.url = found.group(1)
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    def request(self, method: str, path: str, *, body: bytes | None = None, **headers) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = conn.getresponse()
        response.body = response.read()
        conn.close()
        return response

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(run_store):
    s = Server(run_store["home"])
    yield s
    s.stop()


def _token(page: str) -> str:
    return re.search(r'<meta name="varflow-token" content="([^"]+)">', page).group(1)


def test_it_refuses_cross_site_requests_and_serves_only_what_its_pages_show(server, run_store):
    page = server.request("GET", "/")
    assert page.status == 200 and "default-src 'none'" in page.getheader("Content-Security-Policy")
    token = _token(page.body.decode())
    picked = next(r for r in run_store["rows"] if r["accepted"])
    vid, card = picked["variation_id"], f'{picked["variation_id"]}-{picked["run_id"]}'
    decision = json.dumps({"card": card, "verdict": "reject"}).encode()
    json_type = {"Content_Type": "application/json"}
    own = f"127.0.0.1:{server.port}"

    refusals = {
        "no token": server.request("POST", "/api/review", body=decision, **json_type),
        "a wrong token": server.request("POST", "/api/review", body=decision, X_Varflow_Token="x" * 43, **json_type),
        "another Host": server.request("POST", "/api/review", body=decision, X_Varflow_Token=token,
                                       Host=f"evil.example:{server.port}", **json_type),
        "another Origin": server.request("POST", "/api/review", body=decision, X_Varflow_Token=token,
                                         Origin="http://evil.example", **json_type),
        "a rebound name (GET)": server.request("GET", "/", Host=f"rebound.evil.example:{server.port}"),
        "another port in Host": server.request("GET", "/", Host="127.0.0.1:1"),
        "a cross-site fetch": server.request("POST", "/api/review", body=decision, X_Varflow_Token=token,
                                             Sec_Fetch_Site="cross-site", **json_type),
    }
    for why, response in refusals.items():
        assert response.status == 403, why
        assert response.body.startswith(b"refused: ") and response.body.count(b"\n") == 1, why
    assert Store(run_store["home"]).query("SELECT count(*) AS n FROM reviews")[0]["n"] == 0  # none got through
    assert Path(next(r["output_path"] for r in run_store["rows"] if r["variation_id"] == vid)).is_file()

    # its own address by name, and a same-origin Origin, pass; so do the pictures the page links
    assert server.request("GET", "/", Host=f"localhost:{server.port}").status == 200
    assert server.request("GET", "/", Origin=f"http://{own}").status == 200
    assert server.request("GET", f"/pic/v/{card}").getheader("Content-Type") == "image/jpeg"
    # nothing else: a path, an id no page showed, a form post, a body too big
    for path in ("/pic/v/../../etc/passwd", "/pic/s/%2e%2e%2fetc", f"/pic/v/{'0' * 64}", "/etc/passwd", "/run/zz"):
        assert server.request("GET", path).status == 404, path
    assert server.request("POST", "/api/review", body=b"variation_id=x", X_Varflow_Token=token,
                          Content_Type="application/x-www-form-urlencoded").status == 415
    unknown = server.request("POST", "/api/review", body=json.dumps({"card": "0" * 64, "verdict": "keep"})
                             .encode(), X_Varflow_Token=token, **json_type)
    assert unknown.status == 400 and "reload" in json.loads(unknown.body)["error"]
    big = server.request("POST", "/api/review", body=b" " * 20_000, X_Varflow_Token=token, **json_type)
    assert big.status == 413


def test_served_beyond_the_loopback_every_request_needs_the_printed_token(run_store):
    s = Server(run_store["home"], "--host", "0.0.0.0")
    try:
        printed = re.search(r"\?token=(\S+)", "".join(s.lines))
        assert printed, s.lines
        token = printed.group(1)
        assert s.request("GET", "/").status == 403  # no token
        assert s.request("GET", "/?token=wrong").status == 403
        first = s.request("GET", f"/?token={token}")
        assert first.status == 303 and first.getheader("Location") == "/"  # off the address bar, into a cookie
        cookie = first.getheader("Set-Cookie")
        assert f"={token}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        for elsewhere in ("/\\evil.example/", "/%2F%2Fevil.example"):  # never sent on to another site
            assert s.request("GET", f"{elsewhere}?token={token}").getheader("Location") == "/"
        again = s.request("GET", "/", Cookie=cookie.split(";")[0])
        assert again.status == 200 and _token(again.body.decode()) == token
        row = run_store["rows"][0]
        assert s.request("GET", f'/pic/v/{row["variation_id"]}-{row["run_id"]}').status == 403  # pictures too
    finally:
        s.stop()


def test_in_chromium_keep_reject_and_a_key_decide_and_the_files_follow(browser, server, run_store, tmp_path_factory):
    from playwright.sync_api import expect

    home, out = run_store["home"], run_store["out"]
    rows = {r["variation_id"]: r for r in run_store["rows"]}
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server.url)
    cards = page.locator(".card[data-vid]")
    assert cards.count() == len(rows)
    # the pictures load lazily, as they come into view: bring each there and wait for it
    loaded = page.evaluate("""async () => {
        const ok = [];
        for (const i of document.images) {
            i.scrollIntoView();
            try { await i.decode(); ok.push(i.naturalWidth > 0); } catch (e) { ok.push(false); }
        }
        window.scrollTo(0, 0);
        return ok;
    }""")
    assert len(loaded) == len(rows) + 2 and all(loaded)  # two originals, every variation (or its kept thumbnail)
    assert page.evaluate("document.querySelectorAll('img[src=x], b[onmouseover]').length") == 0
    assert REVIEWER in page.locator(".reviewbar b").inner_text()  # escaped, shown as text
    shots = tmp_path_factory.mktemp("review-screenshots")
    page.screenshot(path=str(shots / "review.png"), full_page=True)

    # Reject, by its button, a variation the gate accepted: its file goes to _rejected/
    accepted = next(v for v, r in rows.items() if r["accepted"])
    card = page.locator(f"#v-{accepted}")
    card.locator("button.act.reject").click()
    expect(card).to_have_attribute("data-review", "reject")  # updated in place, no reload
    assert card.locator(".decision .what").inner_text().startswith("✗ rejected by Ana")
    assert card.locator(".decision .vs").is_visible()  # against the gate
    assert "in _rejected/" in card.locator(".place").inner_text()
    # Keep, by its button, one the gate rejected (its file deleted): it comes back from the cache
    rejected = next(v for v, r in rows.items() if not r["accepted"])
    page.locator(f"#v-{rejected} button.act.keep").click()
    expect(page.locator(f"#v-{rejected}")).to_have_attribute("data-review", "keep")
    assert page.locator(f"#v-{rejected} .place").inner_text().startswith("in the output folder: ")
    assert page.locator(f"#v-{rejected} .pic img").evaluate("async i => (await i.decode(), i.naturalWidth > 0)")
    page.screenshot(path=str(shots / "review-decided.png"))

    # "not yet reviewed" hides the two decided; a key decides the first of the rest (j: to it, x: reject)
    page.click("button.seg[data-review=todo]")
    todo = page.locator(".card[data-vid]:not([hidden])")
    expect(todo).to_have_count(len(rows) - 2)
    shown = todo.evaluate_all("cards => cards.map(c => c.dataset.vid)")
    current = page.locator(".card.current")
    now = current.get_attribute("data-vid") if current.count() else None  # focus moved on after the last decision
    first = shown[min(shown.index(now) + 1, len(shown) - 1)] if now in shown else shown[0]  # j: the next, or stay
    page.keyboard.press("j")
    assert page.locator(".card.current").get_attribute("data-vid") == first
    page.keyboard.press("x")
    expect(todo).to_have_count(len(rows) - 3)
    assert page.locator(".count[data-count=todo]").inner_text() == str(len(rows) - 3)
    page.screenshot(path=str(shots / "review-todo.png"))

    store = Store(home)
    decided = {r["variation_id"]: r for r in store.query("SELECT * FROM variation_status WHERE verdict IS NOT NULL")}
    assert {v: r["verdict"] for v, r in decided.items()} == {accepted: "reject", rejected: "keep", first: "reject"}
    assert {r["reviewer"] for r in decided.values()} == {REVIEWER}
    assert Path(decided[accepted]["final_path"]).parent == out / "_rejected"
    assert not Path(rows[accepted]["output_path"]).exists() and Path(decided[accepted]["final_path"]).is_file()
    kept = Path(decided[rejected]["final_path"])
    assert kept.parent == out and kept.is_file() and decided[rejected]["final_accepted"] is True
    assert Path(decided[first]["final_path"] or "").parent == out / "_rejected" or (
        not rows[first]["accepted"] and decided[first]["final_path"] is None)  # a deleted one stays deleted

    page.reload()  # the decisions are the store's, not the page's
    assert page.locator(f"#v-{accepted}").get_attribute("data-review") == "reject"
    assert page.locator(".count[data-count=reviewed]").inner_text() == "3"
    saved = os.environ.get("VARFLOW_SCREENSHOTS")
    if saved:
        Path(saved).mkdir(parents=True, exist_ok=True)
        for f in shots.glob("*.png"):
            shutil.copy(f, Path(saved) / f.name)
    page.close()


def test_the_written_gallery_shows_the_latest_decision_read_only(run_store):
    home = run_store["home"]
    row = next(r for r in run_store["rows"] if not r["accepted"])
    apply_review(Store(home), row["variation_id"], "reject", reviewer="ben <i>", note="a <b>copy</b>")
    page, _ = build_gallery(home)
    card = page[page.index(f'id="v-{row["variation_id"]}"'):]
    card = card[:card.index("</article>")]
    assert 'data-review="reject"' in card and "✗ rejected by ben &lt;i&gt; · " in card
    assert "a &lt;b&gt;copy&lt;/b&gt;" in card and "<b>copy" not in page
    assert 'class="act' not in page and "varflow-token" not in page  # no buttons, no token: read-only
    assert "varflow review serve" in page


def test_a_card_shows_the_decision_in_force_against_the_gate_and_where_the_file_is():
    from datetime import UTC, datetime

    from varflow.reports.gallery import Card, Served, Source, render_gallery

    run = dict(run_id="r1", status="completed", input_dir="/in", output_dir="/out")
    image = dict(image_id="img", path="/in/a.png", status="ok", requested=1, attempts=2)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    base = dict(image_id="img", variation_type="style_change", reject_reason=None, prompt="p")
    cards = [Card({**base, "variation_id": "v0", "attempt": 0, "accepted": False, "reject_reason": "aesthetic_low",
                   "verdict": "keep", "reviewer": "ana", "reviewed_at": when, "agrees": False,
                   "final_accepted": True, "final_path": "/out/a-x-v02.png"}, None, "the accepted file"),
             Card({**base, "variation_id": "v1", "attempt": 1, "accepted": True, "verdict": "reject",
                   "reviewer": "ben", "reviewed_at": when, "agrees": False, "final_accepted": False,
                   "final_path": "/out/_rejected/a-x-v01.png", "review_note": "blurry"}, None, "kept under _rejected/"),
             Card({**base, "variation_id": "v2", "attempt": 2, "accepted": False, "reject_reason": "duplicate",
                   "final_path": None}, None, "file not kept")]
    page = render_gallery(run=run, parameters={}, sources=[Source(image, None, cards)], not_processed=[])
    v0, v1, v2 = (page[page.index(f'id="v-v{i}"'):].split("</article>")[0] for i in range(3))
    assert 'data-review="keep" data-agrees="0"' in v0 and 'class="decision keep override"' in v0
    assert "✓ kept by ana · 2026-01-02 03:04:05 UTC" in v0 and "in the output folder: a-x-v02.png" in v0
    assert "✗ rejected by ben" in v1 and "in _rejected/: a-x-v01.png" in v1 and ">blurry<" in v1
    assert 'data-review=""' in v2 and "not yet reviewed" in v2 and "file deleted by the run" in v2
    assert '<b>2</b><span>reviewed</span>' in page and '<b>2</b><span>against the gate</span>' in page
    assert '<span class="count" data-count="todo">1</span>' in page
    assert '<span class="count" data-count="disagree">2</span>' in page and 'class="act' not in page
    served = render_gallery(run=run, parameters={}, sources=[Source(image, None, cards)], not_processed=[],
                            served=Served(token="t0k", reviewer="ana", nonce="n0"))
    assert served.count('class="act keep"') == 3 and '<script nonce="n0">' in served
    assert '<meta name="varflow-token" content="t0k">' in served and "Read-only page" not in served


def test_without_a_run_or_with_a_taken_port_it_says_so_in_one_line(run_store, tmp_path):
    serve = [sys.executable, "-m", "varflow.flows.cli", "review", "serve", "--reviewer", "ana"]
    empty = subprocess.run([*serve, "--home", str(tmp_path / "nothing")], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1 and "no runs yet" in empty.stderr
    assert not (tmp_path / "nothing").exists()  # nothing made where no store was
    s = Server(run_store["home"])
    try:
        taken = subprocess.run([*serve, "--home", str(run_store["home"]), "--port", str(s.port)],
                               capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{s.port}" in taken.stderr
    finally:
        s.stop()
