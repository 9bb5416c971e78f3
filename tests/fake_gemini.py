"""A fake Gemini REST server for tests and benches.

A real HTTP server (stdlib ``ThreadingHTTPServer`` on 127.0.0.1, an ephemeral port, a background
thread) speaking the Gemini Developer API's JSON, so the real ``google-genai`` SDK can talk to it:

* ``POST /{v1,v1beta,v1alpha}/models/{model}:generateContent`` answers with an image derived from
  the request's image (a colour-channel swap + a seed-dependent crop, same size, returned as PNG
  or, with ``image_format="JPEG"``, JPEG; standard base64 under
  ``candidates[0].content.parts[].inlineData{mimeType,data}``), ``finishReason`` and
  ``usageMetadata``.
* ``GET /{v1,v1beta}/models`` (``models.list``, with ``pageSize``/``pageToken``/``nextPageToken``)
  and ``GET /{v}/models/{model}`` (``models.get``).

The ``x-goog-api-key`` header (or ``?key=``) is checked against the configured key: a wrong key
answers 400 INVALID_ARGUMENT with an ``ErrorInfo`` whose reason is ``API_KEY_INVALID``; no key at
all answers 403 PERMISSION_DENIED. Unknown models answer 404 NOT_FOUND; a non-image model asked
for images, and ``candidateCount > 1``, answer 400 INVALID_ARGUMENT, as the real service does.

Faults are scripted per server::

    with FakeGemini(api_key="k") as fake:
        fake.script(["rate_limit_minute", "ok"])              # a queue, consumed in order
        fake.script(lambda model, index, prompt: "slow" if index == 0 else None)  # or a function
        ...                                                   # None / empty queue -> "ok"
        assert fake.count() == 2

A script item is a fault name (see ``FAULTS``), a :class:`Reply` (any status/body you like), or
``None`` (the normal answer). The request log (:attr:`FakeGemini.requests`) records model, prompt
text, whether an image was attached, whether an API key header was present (never the key), the
fault applied, the status sent and timestamps; it is safe to read from any thread.

``latency_s`` delays every generateContent answer (for throughput benches); ``rpm_limit`` makes the
server answer 429 per-minute by itself once more than that many requests arrived in the trailing
60 s; ``max_in_flight`` reports the highest concurrency seen.

Benches: the fake's image work shares the GIL with the client when run in-process (1024 px PNG
answers cost it ~130 ms each). Use ``image_format="JPEG"`` and/or run it as its own process:
``python tests/fake_gemini.py --key K --latency 0.5`` prints its base URL and serves until killed.
Measured on 2 cores, 128 calls at 1024 px, 32 threads, 0.5 s latency, fake in a subprocess:
19 s with PNG answers, 8 s with JPEG.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from PIL import Image, ImageOps

# ---------------------------------------------------------------------------------------------
# Fault names
# ---------------------------------------------------------------------------------------------

OK = "ok"  # 200 with an image (and a short text part before it)
OK_WITH_THOUGHTS = "ok_with_thoughts"  # 200: thought text + thought image first, then the image
OK_JPEG = "ok_jpeg"  # 200 with a JPEG image (image/jpeg)
RATE_LIMIT_MINUTE = "rate_limit_minute"  # 429, QuotaFailure ...PerMinute..., RetryInfo "2s"
RATE_LIMIT_DAY = "rate_limit_day"  # 429, QuotaFailure ...PerDay..., RetryInfo present too
RATE_LIMIT_BARE = "rate_limit_bare"  # 429 RESOURCE_EXHAUSTED without details
SERVER_500 = "server_500"  # 500 INTERNAL
BAD_GATEWAY_HTML = "bad_gateway_html"  # 502 with an HTML body
OVERLOADED_503 = "overloaded_503"  # 503 UNAVAILABLE "The model is overloaded..."
GATEWAY_TIMEOUT_504 = "gateway_timeout_504"  # 504 DEADLINE_EXCEEDED
NOT_FOUND = "not_found"  # 404 NOT_FOUND for the requested model
PERMISSION_DENIED = "permission_denied"  # 403 PERMISSION_DENIED
UNAUTHENTICATED = "unauthenticated"  # 401 UNAUTHENTICATED
BAD_KEY = "bad_key"  # 400 API_KEY_INVALID whatever key was sent
BAD_KEY_ECHO = "bad_key_echo"  # 400 API_KEY_INVALID whose message quotes the key it received
INVALID_ARGUMENT = "invalid_argument"  # 400 INVALID_ARGUMENT (not a key problem)
SLOW = "slow"  # waits ``slow_s`` before answering normally (to trigger a client timeout)
DROP = "drop"  # closes the connection without answering
SAFETY_BLOCK = "safety_block"  # 200, finishReason IMAGE_SAFETY, no parts
PROHIBITED = "prohibited"  # 200, finishReason IMAGE_PROHIBITED_CONTENT, no parts
PROMPT_BLOCKED = "prompt_blocked"  # 200, promptFeedback.blockReason, no candidates
TEXT_ONLY = "text_only"  # 200, finishReason STOP, only a text part
NO_IMAGE = "no_image"  # 200, finishReason NO_IMAGE, no parts
EMPTY = "empty"  # 200, a candidate with STOP and no content at all
GARBAGE_IMAGE = "garbage_image"  # 200, inlineData image/png whose bytes are not an image
MALFORMED_JSON = "malformed_json"  # 200 with a body that is not JSON

FAULTS = (
    OK, OK_WITH_THOUGHTS, OK_JPEG, RATE_LIMIT_MINUTE, RATE_LIMIT_DAY, RATE_LIMIT_BARE, SERVER_500,
    BAD_GATEWAY_HTML, OVERLOADED_503, GATEWAY_TIMEOUT_504, NOT_FOUND, PERMISSION_DENIED,
    UNAUTHENTICATED, BAD_KEY, BAD_KEY_ECHO, INVALID_ARGUMENT, SLOW, DROP, SAFETY_BLOCK, PROHIBITED,
    PROMPT_BLOCKED, TEXT_ONLY, NO_IMAGE, EMPTY, GARBAGE_IMAGE, MALFORMED_JSON,
)

DEFAULT_MODELS: tuple[dict[str, Any], ...] = (
    {"name": "models/gemini-2.5-flash-image", "displayName": "Nano Banana",
     "description": "Gemini 2.5 Flash Image", "supportedGenerationMethods":
     ["generateContent", "countTokens", "batchGenerateContent"]},
    {"name": "models/gemini-3-pro-image", "displayName": "Nano Banana Pro",
     "description": "Gemini 3 Pro Image", "supportedGenerationMethods":
     ["generateContent", "countTokens", "batchGenerateContent"]},
    {"name": "models/gemini-3.1-flash-image", "displayName": "Nano Banana 2",
     "description": "Gemini 3.1 Flash Image", "supportedGenerationMethods":
     ["generateContent", "countTokens"]},
    {"name": "models/gemini-nano-banana-2.1", "displayName": "Nano Banana 2.1",
     "description": "Image generation and editing", "supportedGenerationMethods":
     ["generateContent", "countTokens"]},
    {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
     "description": "Text model", "supportedGenerationMethods":
     ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]},
    {"name": "models/gemini-2.5-pro", "displayName": "Gemini 2.5 Pro",
     "description": "Text model", "supportedGenerationMethods": ["generateContent", "countTokens"]},
    {"name": "models/gemini-embedding-001", "displayName": "Gemini Embedding 001",
     "description": "Embeddings", "supportedGenerationMethods": ["embedContent"]},
    {"name": "models/imagen-4.0-generate-001", "displayName": "Imagen 4",
     "description": "Imagen (predict only)", "supportedGenerationMethods": ["predict"]},
)

_GENERATE_RE = re.compile(r"^/(v1|v1beta|v1alpha)/models/([^/:]+):generateContent$")
_LIST_RE = re.compile(r"^/(v1|v1beta|v1alpha)/models/?$")
_GET_RE = re.compile(r"^/(v1|v1beta|v1alpha)/models/([^/:]+)$")


# ---------------------------------------------------------------------------------------------
# Public data types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An explicit answer: any status and body (a dict is sent as JSON)."""

    status: int = 200
    body: bytes | str | dict | None = None
    content_type: str = "application/json; charset=UTF-8"
    delay_s: float = 0.0
    drop: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    endpoint: str  # "generateContent", "models.list", "models.get", "unknown"
    method: str
    path: str  # without the query string (the key may travel there)
    api_version: str | None
    model: str | None
    prompt: str  # the text parts of the request, joined by newlines
    has_image: bool
    image_mime: str | None
    api_key_present: bool
    api_key_valid: bool
    seed: int | None
    response_modalities: tuple[str, ...]
    candidate_count: int | None
    index: int | None  # the generateContent request index (0-based), None for other endpoints
    fault: str  # the fault name applied ("ok", ..., "reply" for a Reply, "auth" for key checks)
    status: int | None  # the HTTP status sent; None when the connection was dropped
    timestamp: float  # time.time() at arrival
    monotonic: float  # time.monotonic() at arrival


Script = Callable[[str, int, str], "str | Reply | None"]


# ---------------------------------------------------------------------------------------------
# Image helpers
# ---------------------------------------------------------------------------------------------


def _b64decode_any(text: str) -> bytes:
    """The SDK sends URL-safe base64; other clients send standard base64. Accept both."""
    text = text.strip()
    pad = "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(text + pad)
    return base64.b64decode(text + pad)


_PERMUTATIONS = ((1, 2, 0), (2, 0, 1), (2, 1, 0), (0, 2, 1), (1, 0, 2))


def vary_image(data: bytes | None, seed: int, prompt: str, fmt: str = "PNG") -> bytes:
    """A visible, deterministic change of ``data``: a colour-channel swap plus a small crop.

    The output has the input's size. The same (image, seed, prompt) gives the same bytes; another
    seed gives another result. With no input image a seed-coloured gradient is drawn
    (text-to-image). Cheap on purpose (~20 ms + encoding at 1024 px): benches measure the client.
    """
    k = int.from_bytes(hashlib.sha256(f"{seed}:{prompt}".encode()).digest()[:8], "big")
    if data:
        img = Image.open(io.BytesIO(data))
        img = ImageOps.exif_transpose(img).convert("RGB")
    else:
        y, x = np.mgrid[0:256, 0:256]
        arr = np.stack([x, y, np.full_like(x, k % 256)], axis=-1).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
    w, h = img.size
    bands = img.split()
    order = _PERMUTATIONS[k % len(_PERMUTATIONS)]
    shifted = Image.merge("RGB", [bands[i] for i in order])
    margin = 0.04 + ((k >> 8) % 7) / 100.0  # 4-10 %
    dx, dy = int(w * margin), int(h * margin)
    ox = (k >> 16) % (dx + 1) if dx else 0
    oy = (k >> 24) % (dy + 1) if dy else 0
    if w - dx > 0 and h - dy > 0:
        shifted = shifted.crop((ox, oy, ox + w - dx, oy + h - dy)).resize(
            (w, h), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    if fmt.upper() == "PNG":
        shifted.save(buf, format="PNG", compress_level=1)
    else:
        shifted.save(buf, format=fmt, quality=90)
    return buf.getvalue()


def image_reply(data: bytes, mime: str = "image/png", model: str = "gemini-2.5-flash-image") -> Reply:
    """A normal answer carrying ``data`` as its image (a model that returns this picture)."""
    return Reply(200, FakeGemini._image_body(data, mime, 300, {"modelVersion": model}))


def _tiny_png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Canned bodies (real shapes)
# ---------------------------------------------------------------------------------------------


def _error(code: int, status: str, message: str, details: list | None = None) -> dict:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return {"error": err}


def _quota_error(model: str, quota_id: str, metric: str, limit: str, retry: str | None) -> dict:
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": metric,
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": limit,
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Learn more about Gemini API quotas",
                       "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}],
        },
    ]
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
        f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}"
    )
    if retry is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry})
        message += f"\nPlease retry in {retry[:-1]}s."
    return _error(429, "RESOURCE_EXHAUSTED", message, details)


def _bad_key(echo: str | None = None) -> dict:
    message = "API key not valid. Please pass a valid API key."
    if echo is not None:  # some proxies and gateways quote what they received
        message = f"API key not valid: {echo!r}. Please pass a valid API key."
    return _error(400, "INVALID_ARGUMENT", message, [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
         "domain": "googleapis.com",
         "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
         "message": "API key not valid. Please pass a valid API key."},
    ])


def _not_found(model: str, version: str) -> dict:
    return _error(
        404, "NOT_FOUND",
        f"models/{model} is not found for API version {version}, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    )


def _usage(prompt_tokens: int, output_tokens: int) -> dict:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
        "promptTokensDetails": [{"modality": "IMAGE", "tokenCount": 258},
                                {"modality": "TEXT", "tokenCount": max(prompt_tokens - 258, 0)}],
    }


_HTML_502 = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 502 (Server Error)!!1"
    "</title>\n  <p><b>502.</b> <ins>That's an error.</ins>\n  <p>The server encountered a "
    "temporary error and could not complete your request.<p>Please try again in 30 seconds.  "
    "<ins>That's all we know.</ins>\n</html>\n"
)


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # benches open many connections at once (the default is 5)
    fake: FakeGemini


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux), a cost no real server adds
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.server.fake._handle(self, "POST")

    def do_GET(self) -> None:  # noqa: N802
        self.server.fake._handle(self, "GET")


class FakeGemini:
    """A fake Gemini API server. Use as a context manager; ``base_url`` is its address."""

    def __init__(
        self,
        api_key: str | None = "fake-gemini-key",
        *,
        models: Sequence[str | dict] | None = None,
        latency_s: float = 0.0,
        slow_s: float = 30.0,
        list_page_size: int = 50,
        rpm_limit: int | None = None,
        retry_delay: str = "2s",
        image_format: str = "PNG",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.api_key = api_key  # None accepts any key (but a key must still be present)
        self.latency_s = latency_s
        self.slow_s = slow_s
        self.list_page_size = list_page_size
        self.rpm_limit = rpm_limit
        self.retry_delay = retry_delay
        if image_format.upper() not in ("PNG", "JPEG"):
            raise ValueError("image_format must be PNG or JPEG")
        self.image_format = image_format.upper()  # of normal answers; JPEG is ~5x cheaper
        self._host, self._port = host, port
        self._models: list[dict[str, Any]] = []
        for m in (DEFAULT_MODELS if models is None else models):
            if isinstance(m, str):
                name = m if m.startswith("models/") else f"models/{m}"
                m = {"name": name, "displayName": name[7:], "description": "",
                     "supportedGenerationMethods": ["generateContent", "countTokens"]}
            self._models.append(dict(m))
        self._lock = threading.Lock()
        self._queue: deque[Any] = deque()
        self._fn: Script | None = None
        self._log: list[RecordedRequest] = []
        self._gen_index = 0
        self._window: deque[float] = deque()
        self._in_flight = 0
        self.max_in_flight = 0
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.batches = FakeBatches(self)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeGemini:
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Server((self._host, self._port), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-gemini", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes slow answers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeGemini is not running; use it as a context manager or start()")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # -- scripting -------------------------------------------------------------------------

    def script(self, items: Iterable[str | Reply | None] | Script) -> FakeGemini:
        """Queue answers for the next generateContent requests, or install a function.

        A function is called as ``fn(model, request_index, prompt)`` for every generateContent
        request (after the queue is empty) and returns a fault name, a :class:`Reply` or None.
        """
        with self._lock:
            if callable(items):
                self._fn = items
            else:
                for item in items:
                    if isinstance(item, str) and item not in FAULTS:
                        raise ValueError(f"unknown fault {item!r}; choose one of {FAULTS}")
                    self._queue.append(item)
        return self

    def reset(self) -> None:
        """Forget the script, the function, the log and the counters."""
        with self._lock:
            self._queue.clear()
            self._fn = None
            self._log.clear()
            self._gen_index = 0
            self._window.clear()
            self.max_in_flight = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def count(self, model: str | None = None, endpoint: str = "generateContent") -> int:
        with self._lock:
            return sum(1 for r in self._log if r.endpoint == endpoint
                       and (model is None or r.model == model))

    def model_names(self) -> list[str]:
        return [m["name"][len("models/"):] for m in self._models]

    # -- request handling ------------------------------------------------------------------

    def _find_model(self, model: str) -> dict | None:
        for m in self._models:
            if m["name"] == f"models/{model}":
                return m
        return None

    @staticmethod
    def _is_image_model(m: dict) -> bool:
        name = m["name"].lower()
        return ("image" in name or "nano-banana" in name) and \
            "generateContent" in m.get("supportedGenerationMethods", [])

    def _handle(self, h: _Handler, method: str) -> None:
        arrived, arrived_mono = time.time(), time.monotonic()
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            self._handle_inner(h, method, arrived, arrived_mono)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            h.close_connection = True  # the client went away (e.g. its timeout fired)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _handle_inner(self, h: _Handler, method: str, arrived: float, mono: float) -> None:
        split = urlsplit(h.path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        header_key = h.headers.get("x-goog-api-key")
        key = header_key or (query.get("key") or [None])[0]
        key_present = bool(header_key)
        key_valid = bool(key) and (self.api_key is None or key == self.api_key)

        endpoint, version, model = "unknown", None, None
        if self.batches.route(method, path) is not None:
            self._handle_batch(h, method, path, query, raw, key, key_present, key_valid, arrived, mono)
            return
        if method == "POST" and (m := _GENERATE_RE.match(path)):
            endpoint, version, model = "generateContent", m.group(1), m.group(2)
        elif method == "GET" and (m := _LIST_RE.match(path)):
            endpoint, version = "models.list", m.group(1)
        elif method == "GET" and (m := _GET_RE.match(path)):
            endpoint, version, model = "models.get", m.group(1), m.group(2)

        body: dict[str, Any] = {}
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
        prompt, image, image_mime = _parse_contents(body)
        gen_cfg = body.get("generationConfig") or {}
        seed = gen_cfg.get("seed")
        modalities = tuple(str(x).upper() for x in gen_cfg.get("responseModalities") or ())
        cand = gen_cfg.get("candidateCount")

        index: int | None = None
        action: Any = None
        fault = "ok"
        with self._lock:
            if endpoint == "generateContent":
                index = self._gen_index
                self._gen_index += 1
            if not key:
                fault, action = "auth", Reply(403, _error(
                    403, "PERMISSION_DENIED",
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity to call "
                    "this API."))
            elif not key_valid:
                fault, action = "auth", Reply(400, _bad_key())
            elif endpoint == "generateContent":
                action = self._next_action(model or "", index or 0, prompt)
                fault = action if isinstance(action, str) else (
                    "reply" if isinstance(action, Reply) else "ok")
                if (action is None or action == OK) and self.rpm_limit is not None:
                    now = time.monotonic()
                    while self._window and now - self._window[0] > 60.0:
                        self._window.popleft()
                    if len(self._window) >= self.rpm_limit:
                        action = fault = RATE_LIMIT_MINUTE
                    else:
                        self._window.append(now)

        if endpoint == "generateContent" and fault not in ("auth",):
            reply = self._generate_reply(action, model or "", version or "v1", prompt, image,
                                         seed if isinstance(seed, int) else index or 0,
                                         modalities, cand, key or "")
        elif endpoint == "models.list" and fault != "auth":
            reply = self._list_reply(query)
        elif endpoint == "models.get" and fault != "auth":
            found = self._find_model(model or "")
            reply = Reply(200, found) if found else Reply(404, _not_found(model or "", version
                                                                          or "v1"))
        elif fault == "auth":
            reply = action
        else:
            reply = Reply(404, _error(404, "NOT_FOUND", f"Unknown path {method} {path}."))

        status = None if reply.drop else reply.status
        record = RecordedRequest(
            endpoint=endpoint, method=method, path=path, api_version=version, model=model,
            prompt=prompt, has_image=image is not None, image_mime=image_mime,
            api_key_present=key_present, api_key_valid=key_valid,
            seed=seed if isinstance(seed, int) else None, response_modalities=modalities,
            candidate_count=cand if isinstance(cand, int) else None, index=index, fault=fault,
            status=status, timestamp=arrived, monotonic=mono,
        )
        with self._lock:
            self._log.append(record)

        delay = reply.delay_s
        if endpoint == "generateContent":
            # latency is from the request's arrival, as a client sees a real server's: the fake's
            # own parsing and image work happen inside it, not on top of it
            delay += max(0.0, self.latency_s - (time.monotonic() - mono))
        if delay > 0 and self._stop.wait(delay):
            reply = Reply(drop=True)  # shutting down
        self._send(h, reply)

    def _handle_batch(self, h: _Handler, method: str, path: str, query: dict, raw: bytes, key: str | None,
                      key_present: bool, key_valid: bool, arrived: float, mono: float) -> None:
        """Batch jobs and files (``FakeBatches``): the same key checks as every endpoint."""
        endpoint = self.batches.route(method, path)
        if endpoint == "files.upload":  # the upload URL is the credential, as the real one's upload_id is
            key_valid = True
            reply = self.batches.handle(endpoint, method, path, query, raw, h.headers)
        elif not key:
            reply = Reply(403, _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."))
        elif not key_valid:
            reply = Reply(400, _bad_key())
        else:
            reply = self.batches.handle(endpoint, method, path, query, raw, h.headers)
        record = RecordedRequest(
            endpoint=endpoint, method=method, path=path, api_version=None, model=None, prompt="",
            has_image=False, image_mime=None, api_key_present=key_present, api_key_valid=key_valid,
            seed=None, response_modalities=(), candidate_count=None, index=None,
            fault="auth" if not key_valid else "ok", status=reply.status, timestamp=arrived, monotonic=mono,
        )
        with self._lock:
            self._log.append(record)
        self._send(h, reply)

    def _answer_request(self, request: dict) -> Reply:
        """One request of a batch job, answered as generateContent would answer it (the same
        script queue and function, so a test scripts a job's per-request faults the same way)."""
        model = str(request.get("model") or "").removeprefix("models/") or self.batches.current_model
        prompt, image, _ = _parse_contents(request)
        gen_cfg = request.get("generationConfig") or {}
        with self._lock:
            index = self._gen_index
            self._gen_index += 1
            action = self._next_action(model, index, prompt)
        seed = gen_cfg.get("seed")
        modalities = tuple(str(x).upper() for x in gen_cfg.get("responseModalities") or ())
        return self._generate_reply(action, model, "v1beta", prompt, image,
                                    seed if isinstance(seed, int) else index, modalities,
                                    gen_cfg.get("candidateCount"), "")

    def _next_action(self, model: str, index: int, prompt: str) -> Any:
        if self._queue:
            return self._queue.popleft()
        if self._fn is not None:
            return self._fn(model, index, prompt)
        return None

    def _generate_reply(self, action: Any, model: str, version: str, prompt: str,
                        image: bytes | None, seed: int, modalities: tuple[str, ...],
                        cand: Any, key: str) -> Reply:
        if isinstance(action, Reply):
            return action
        fault = action or OK
        if isinstance(fault, str) and fault not in FAULTS:
            raise ValueError(f"script returned unknown fault {fault!r}")

        # Faults that don't depend on the model being valid.
        if fault == RATE_LIMIT_MINUTE:
            return Reply(429, _quota_error(
                model, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                "generativelanguage.googleapis.com/generate_content_free_tier_requests", "10",
                self.retry_delay))
        if fault == RATE_LIMIT_DAY:
            return Reply(429, _quota_error(
                model, "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                "generativelanguage.googleapis.com/generate_content_free_tier_requests", "100",
                "37s"))
        if fault == RATE_LIMIT_BARE:
            return Reply(429, _error(429, "RESOURCE_EXHAUSTED",
                                     "Resource has been exhausted (e.g. check quota)."))
        if fault == SERVER_500:
            return Reply(500, _error(500, "INTERNAL", "An internal error has occurred. Please "
                                     "retry or report in https://developers.generativeai.google/"
                                     "guide/troubleshooting"))
        if fault == BAD_GATEWAY_HTML:
            return Reply(502, _HTML_502, content_type="text/html; charset=UTF-8")
        if fault == OVERLOADED_503:
            return Reply(503, _error(503, "UNAVAILABLE",
                                     "The model is overloaded. Please try again later."))
        if fault == GATEWAY_TIMEOUT_504:
            return Reply(504, _error(504, "DEADLINE_EXCEEDED",
                                     "Deadline expired before operation could complete."))
        if fault == NOT_FOUND:
            return Reply(404, _not_found(model, version))
        if fault == PERMISSION_DENIED:
            return Reply(403, _error(403, "PERMISSION_DENIED",
                                     "Your API key was reported as leaked. Please use another "
                                     "API key."))
        if fault == UNAUTHENTICATED:
            return Reply(401, _error(401, "UNAUTHENTICATED",
                                     "Request had invalid authentication credentials."))
        if fault == BAD_KEY:
            return Reply(400, _bad_key())
        if fault == BAD_KEY_ECHO:
            return Reply(400, _bad_key(echo=key))
        if fault == INVALID_ARGUMENT:
            return Reply(400, _error(400, "INVALID_ARGUMENT",
                                     "Request contains an invalid argument."))
        if fault == DROP:
            return Reply(drop=True)
        if fault == MALFORMED_JSON:
            return Reply(200, b"{\"candidates\": [", content_type="application/json")

        # The model must exist and be able to answer.
        spec = self._find_model(model)
        if spec is None or "generateContent" not in spec.get("supportedGenerationMethods", []):
            return Reply(404, _not_found(model, version))
        if "IMAGE" in modalities and not self._is_image_model(spec):
            return Reply(400, _error(400, "INVALID_ARGUMENT",
                                     "Model does not support the requested response modalities: "
                                     "image"))
        if isinstance(cand, int) and cand > 1:
            return Reply(400, _error(400, "INVALID_ARGUMENT",
                                     f"Multiple candidates is not enabled for models/{model}"))

        prompt_tokens = 258 + max(1, len(prompt) // 4)
        common = {"modelVersion": model,
                  "responseId": hashlib.sha1(f"{model}:{seed}:{prompt}".encode()).hexdigest()[:22]}
        if fault in (SAFETY_BLOCK, PROHIBITED):
            reason = "IMAGE_SAFETY" if fault == SAFETY_BLOCK else "IMAGE_PROHIBITED_CONTENT"
            return Reply(200, {"candidates": [{"finishReason": reason, "index": 0,
                                               "finishMessage": "Unable to show the generated "
                                               "image: it may violate our policies."}],
                               "usageMetadata": _usage(prompt_tokens, 0), **common})
        if fault == PROMPT_BLOCKED:
            return Reply(200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                               "usageMetadata": _usage(prompt_tokens, 0), **common})
        if fault == TEXT_ONLY:
            return Reply(200, {"candidates": [{"content": {"role": "model", "parts": [
                {"text": "I can describe the changes, but here is a description instead of an "
                         "image: the objects would be moved to the left."}]},
                "finishReason": "STOP", "index": 0}],
                "usageMetadata": _usage(prompt_tokens, 31), **common})
        if fault == NO_IMAGE:
            return Reply(200, {"candidates": [{"finishReason": "NO_IMAGE", "index": 0}],
                               "usageMetadata": _usage(prompt_tokens, 0), **common})
        if fault == EMPTY:
            return Reply(200, {"candidates": [{"finishReason": "STOP", "index": 0}],
                               "usageMetadata": _usage(prompt_tokens, 0), **common})
        if fault == GARBAGE_IMAGE:
            junk = b"\x89PNG-but-not-really" + hashlib.sha256(prompt.encode()).digest() * 8
            return Reply(200, self._image_body(junk, "image/png", prompt_tokens, common))

        fmt = "JPEG" if fault == OK_JPEG else self.image_format
        mime = "image/jpeg" if fmt == "JPEG" else "image/png"
        try:
            out = vary_image(image, seed, prompt, fmt)
        except Exception as exc:  # noqa: BLE001 - the real API answers 400 for unreadable images
            return Reply(400, _error(400, "INVALID_ARGUMENT",
                                     f"Unable to process input image. ({type(exc).__name__})"))
        body = self._image_body(out, mime, prompt_tokens, common,
                                thoughts=(fault == OK_WITH_THOUGHTS))
        reply = Reply(200, body)
        if fault == SLOW:
            reply = Reply(200, body, delay_s=self.slow_s)
        return reply

    @staticmethod
    def _image_body(data: bytes, mime: str, prompt_tokens: int, common: dict,
                    thoughts: bool = False) -> dict:
        parts: list[dict[str, Any]] = []
        if thoughts:
            parts.append({"text": "**Planning the edit** I will shift the colours.",
                          "thought": True})
            parts.append({"inlineData": {"mimeType": "image/png",
                                         "data": base64.b64encode(_tiny_png()).decode()},
                          "thought": True})
        parts.append({"text": "Here is the edited image."})
        parts.append({"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}})
        return {"candidates": [{"content": {"role": "model", "parts": parts},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": _usage(prompt_tokens, 1290), **common}

    def _list_reply(self, query: dict[str, list[str]]) -> Reply:
        try:
            size = int((query.get("pageSize") or [self.list_page_size])[0])
        except ValueError:
            size = self.list_page_size
        size = max(1, min(size, 1000))
        try:
            start = int((query.get("pageToken") or ["0"])[0] or 0)
        except ValueError:
            return Reply(400, _error(400, "INVALID_ARGUMENT", "Invalid page token."))
        page = self._models[start:start + size]
        body: dict[str, Any] = {"models": page}
        if start + size < len(self._models):
            body["nextPageToken"] = str(start + size)
        return Reply(200, body)

    @staticmethod
    def _send(h: _Handler, reply: Reply) -> None:
        if reply.drop:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        body = reply.body
        if body is None:
            data = b""
        elif isinstance(body, dict):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        h.send_response(reply.status)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in reply.headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()


# ---------------------------------------------------------------------------------------------
# The Batch API and the Files API
# ---------------------------------------------------------------------------------------------

_BATCH_CREATE_RE = re.compile(r"^/(v1|v1beta|v1alpha)/models/([^/:]+):batchGenerateContent$")
_BATCH_GET_RE = re.compile(r"^/(v1|v1beta|v1alpha)/batches/([^/:]+)$")
_BATCH_CANCEL_RE = re.compile(r"^/(v1|v1beta|v1alpha)/batches/([^/:]+):cancel$")
_BATCH_LIST_RE = re.compile(r"^/(v1|v1beta|v1alpha)/batches/?$")
_UPLOAD_START_RE = re.compile(r"^/upload/(v1|v1beta|v1alpha)/files$")
_UPLOAD_RE = re.compile(r"^/fake-upload/([^/]+)$")
_DOWNLOAD_RE = re.compile(r"^/(?:download/)?(v1|v1beta|v1alpha)/files/([^/:]+):download$")

#: the API's batch states, in the order a job moves through them
BATCH_PENDING, BATCH_RUNNING = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"
BATCH_SUCCEEDED, BATCH_FAILED = "BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED"
BATCH_CANCELLED, BATCH_EXPIRED = "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"
BATCH_DONE = (BATCH_SUCCEEDED, BATCH_FAILED, BATCH_CANCELLED, BATCH_EXPIRED)


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z"


class FakeBatches:
    """The Batch API (``batchGenerateContent``, ``batches`` get/list/cancel) and the Files API
    (resumable upload through an absolute upload URL, download) of a :class:`FakeGemini`.

    A job is ``BATCH_STATE_PENDING`` when created, ``RUNNING`` at its first ``get``, and ends
    at a later ``get`` (``polls_to_finish`` gets after creation) in the state ``end_states``
    gives it: a queue of states consumed one per job, then ``BATCH_STATE_SUCCEEDED``. A
    succeeded job answers every request as generateContent would (the fake's script applies, one
    item per request, so one job can mix images, blocks and errors); the answers are inlined
    for an inline job and a JSONL file (``{"key", "response"|"error"}`` per line) for a file
    job. ``get`` returns the Operation the real API returns: ``name``, ``metadata`` (the
    ``GenerateContentBatch``: ``state``, ``model``, ``displayName``, ``batchStats``, ``output``
    once done), and ``done``/``response`` at the end.
    """

    def __init__(self, fake: FakeGemini):
        self.fake = fake
        self.polls_to_finish = 2
        self.end_states: deque[str] = deque()
        self.jobs: dict[str, dict] = {}  # id -> {"op": operation, "requests": [...], "gets": n}
        self.files: dict[str, dict] = {}  # id -> {"meta": File, "data": bytes}
        self._uploads: dict[str, dict] = {}
        self.current_model = ""
        self._ids = 0

    def route(self, method: str, path: str) -> str | None:
        if method == "POST" and _BATCH_CREATE_RE.match(path):
            return "batches.create"
        if method == "POST" and _BATCH_CANCEL_RE.match(path):
            return "batches.cancel"
        if method == "GET" and _BATCH_GET_RE.match(path):
            return "batches.get"
        if method == "GET" and _BATCH_LIST_RE.match(path):
            return "batches.list"
        if method == "POST" and _UPLOAD_START_RE.match(path):
            return "files.create"
        if method == "POST" and _UPLOAD_RE.match(path):
            return "files.upload"
        if method == "GET" and _DOWNLOAD_RE.match(path):
            return "files.download"
        return None

    def _new_id(self, prefix: str) -> str:
        with self.fake._lock:
            self._ids += 1
            return f"{prefix}{self._ids:04d}" + hashlib.sha1(f"{time.time()}:{self._ids}".encode()).hexdigest()[:8]

    def handle(self, endpoint: str, method: str, path: str, query: dict, raw: bytes, headers) -> Reply:
        body = {}
        if raw and endpoint != "files.upload":
            try:
                body = json.loads(raw)
            except ValueError:
                return Reply(400, _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
        if endpoint == "batches.create":
            return self._create(_BATCH_CREATE_RE.match(path).group(2), body)
        if endpoint == "batches.get":
            return self._get(_BATCH_GET_RE.match(path).group(2))
        if endpoint == "batches.cancel":
            return self._cancel(_BATCH_CANCEL_RE.match(path).group(2))
        if endpoint == "batches.list":
            with self.fake._lock:
                ops = [job["op"] for job in self.jobs.values()]
            return Reply(200, {"operations": ops})
        if endpoint == "files.create":
            return self._upload_start(body, headers)
        if endpoint == "files.upload":
            return self._upload_chunk(_UPLOAD_RE.match(path).group(1), raw, headers)
        return self._download(_DOWNLOAD_RE.match(path).group(2))

    def _create(self, model: str, body: dict) -> Reply:
        batch = body.get("batch") or {}
        config = batch.get("inputConfig") or {}
        if self.fake._find_model(model) is None:
            return Reply(404, _not_found(model, "v1beta"))
        if "fileName" in config:
            file_id = str(config["fileName"]).removeprefix("files/")
            if file_id not in self.files:
                return Reply(400, _error(400, "INVALID_ARGUMENT", f"File {config['fileName']} not found."))
            lines = [json.loads(x) for x in self.files[file_id]["data"].decode().splitlines() if x.strip()]
            requests = [{"key": x.get("key"), "request": x.get("request") or {}} for x in lines]
            source = "file"
        else:
            items = ((config.get("requests") or {}).get("requests")) or []
            if not items:
                return Reply(400, _error(400, "INVALID_ARGUMENT", "Batch input is empty."))
            requests = [{"metadata": x.get("metadata"), "request": x.get("request") or {}} for x in items]
            source = "inline"
        job_id = self._new_id("job")
        now = _now_rfc3339()
        op = {"name": f"batches/{job_id}", "metadata": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{model}", "displayName": batch.get("displayName") or job_id,
            "createTime": now, "updateTime": now, "state": BATCH_PENDING, "name": f"batches/{job_id}",
            "batchStats": {"requestCount": str(len(requests)), "pendingRequestCount": str(len(requests))},
        }}
        with self.fake._lock:
            self.jobs[job_id] = {"op": op, "requests": requests, "gets": 0, "source": source, "model": model}
        return Reply(200, op)

    def _get(self, job_id: str) -> Reply:
        with self.fake._lock:
            job = self.jobs.get(job_id)
        if job is None:
            return Reply(404, _error(404, "NOT_FOUND", f"Batch batches/{job_id} not found."))
        meta = job["op"]["metadata"]
        if meta["state"] not in BATCH_DONE:
            job["gets"] += 1
            if job["gets"] >= self.polls_to_finish:
                with self.fake._lock:
                    end = self.end_states.popleft() if self.end_states else BATCH_SUCCEEDED
                self._finish(job, end)
            else:
                meta["state"] = BATCH_RUNNING
                meta["updateTime"] = _now_rfc3339()
        return Reply(200, job["op"])

    def _cancel(self, job_id: str) -> Reply:
        with self.fake._lock:
            job = self.jobs.get(job_id)
        if job is None:
            return Reply(404, _error(404, "NOT_FOUND", f"Batch batches/{job_id} not found."))
        if job["op"]["metadata"]["state"] not in BATCH_DONE:
            self._finish(job, BATCH_CANCELLED)
        return Reply(200, {})

    def _finish(self, job: dict, state: str) -> None:
        meta = job["op"]["metadata"]
        meta["state"], meta["updateTime"] = state, _now_rfc3339()
        meta["endTime"] = meta["updateTime"]
        job["op"]["done"] = True
        if state != BATCH_SUCCEEDED:  # failed, cancelled and expired jobs deliver nothing
            if state == BATCH_FAILED:
                job["op"]["error"] = {"code": 13, "message": "Batch failed: internal error."}
            return
        self.current_model = job["model"]
        answers, ok = [], 0
        for item in job["requests"]:
            reply = self.fake._answer_request(item["request"])
            answer: dict[str, Any] = {}
            if reply.status == 200 and isinstance(reply.body, dict):
                answer["response"] = reply.body
                ok += 1
            else:
                err = reply.body.get("error") if isinstance(reply.body, dict) else None
                answer["error"] = err or {"code": 13, "message": f"HTTP {reply.status}"}
            if job["source"] == "file":
                answer = {"key": item["key"], **answer}
            elif item.get("metadata") is not None:
                answer["metadata"] = item["metadata"]
            answers.append(answer)
        meta["batchStats"] = {"requestCount": str(len(answers)), "successfulRequestCount": str(ok),
                              "failedRequestCount": str(len(answers) - ok)}
        if job["source"] == "file":
            file_id = self._new_id("batch-results-")
            data = "\n".join(json.dumps(a) for a in answers).encode() + b"\n"
            with self.fake._lock:
                self.files[file_id] = {"meta": self._file_meta(file_id, len(data), "application/jsonl",
                                                               source="GENERATED"), "data": data}
            meta["output"] = {"responsesFile": f"files/{file_id}"}
        else:
            meta["output"] = {"inlinedResponses": {"inlinedResponses": answers}}
        job["op"]["response"] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
            **meta["output"]}

    def _file_meta(self, file_id: str, size: int, mime: str, source: str = "UPLOADED") -> dict:
        now = _now_rfc3339()
        meta = {"name": f"files/{file_id}", "displayName": file_id, "mimeType": mime, "sizeBytes": str(size),
                "createTime": now, "updateTime": now, "state": "ACTIVE", "source": source,
                "uri": f"{self.fake.base_url}/v1beta/files/{file_id}"}
        if source == "GENERATED":
            meta["downloadUri"] = f"{self.fake.base_url}/v1beta/files/{file_id}:download?alt=media"
        return meta

    def _upload_start(self, body: dict, headers) -> Reply:
        if (headers.get("X-Goog-Upload-Protocol") or "").lower() != "resumable" or \
                (headers.get("X-Goog-Upload-Command") or "").lower() != "start":
            return Reply(400, _error(400, "INVALID_ARGUMENT", "Expected a resumable upload start."))
        upload_id = self._new_id("up")
        file = body.get("file") or {}
        size = int(headers.get("X-Goog-Upload-Header-Content-Length") or file.get("sizeBytes") or 0)
        mime = headers.get("X-Goog-Upload-Header-Content-Type") or file.get("mimeType") or "application/octet-stream"
        with self.fake._lock:
            self._uploads[upload_id] = {"size": size, "mime": mime, "data": bytearray()}
        # an absolute URL, as the real API gives (the SDK re-points it at its own base URL)
        return Reply(200, {}, headers={"x-goog-upload-url": f"{self.fake.base_url}/fake-upload/{upload_id}",
                                       "x-goog-upload-status": "active"})

    def _upload_chunk(self, upload_id: str, raw: bytes, headers) -> Reply:
        with self.fake._lock:
            up = self._uploads.get(upload_id)
        if up is None:
            return Reply(404, _error(404, "NOT_FOUND", "Unknown upload."))
        if int(headers.get("X-Goog-Upload-Offset") or 0) != len(up["data"]):
            return Reply(400, _error(400, "INVALID_ARGUMENT", "Upload offset mismatch."))
        up["data"] += raw
        if "finalize" not in (headers.get("X-Goog-Upload-Command") or ""):
            return Reply(200, {}, headers={"x-goog-upload-status": "active"})
        file_id = self._new_id("file")
        meta = self._file_meta(file_id, len(up["data"]), up["mime"])
        with self.fake._lock:
            self.files[file_id] = {"meta": meta, "data": bytes(up["data"])}
            del self._uploads[upload_id]
        return Reply(200, {"file": meta}, headers={"x-goog-upload-status": "final"})

    def _download(self, file_id: str) -> Reply:
        with self.fake._lock:
            f = self.files.get(file_id)
        if f is None:
            return Reply(404, _error(404, "NOT_FOUND", f"File files/{file_id} not found."))
        return Reply(200, f["data"], content_type="application/octet-stream")

    def expire(self, name: str) -> None:
        """End a job as the API does after 48 hours without finishing."""
        self._finish(self.jobs[name.removeprefix("batches/")], BATCH_EXPIRED)

    def count(self) -> int:
        """Requests submitted in batch jobs so far."""
        with self.fake._lock:
            return sum(len(job["requests"]) for job in self.jobs.values())


def _parse_contents(body: dict) -> tuple[str, bytes | None, str | None]:
    texts: list[str] = []
    image: bytes | None = None
    mime: str | None = None
    for content in body.get("contents") or []:
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in (content or {}).get("parts") or []:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            blob = part.get("inlineData") or part.get("inline_data")
            if isinstance(blob, dict) and image is None and blob.get("data"):
                try:
                    image = _b64decode_any(str(blob["data"]))
                except (binascii.Error, ValueError):
                    image = b""
                mime = blob.get("mimeType") or blob.get("mime_type")
    return "\n".join(texts), image, mime


__all__ = ["FAULTS", "DEFAULT_MODELS", "FakeBatches", "FakeGemini", "RecordedRequest", "Reply", "vary_image",
           "OK",
           "OK_WITH_THOUGHTS",
           "OK_JPEG",
           "RATE_LIMIT_MINUTE",
           "RATE_LIMIT_DAY",
           "RATE_LIMIT_BARE",
           "SERVER_500",
           "BAD_GATEWAY_HTML",
           "OVERLOADED_503",
           "GATEWAY_TIMEOUT_504",
           "NOT_FOUND",
           "PERMISSION_DENIED",
           "UNAUTHENTICATED",
           "BAD_KEY",
           "BAD_KEY_ECHO",
           "INVALID_ARGUMENT",
           "SLOW",
           "DROP",
           "SAFETY_BLOCK",
           "PROHIBITED",
           "PROMPT_BLOCKED",
           "TEXT_ONLY",
           "NO_IMAGE",
           "EMPTY",
           "GARBAGE_IMAGE",
           "MALFORMED_JSON",
           ]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the fake on its own (another process keeps its CPU work off a bench's GIL)."""
    import argparse

    parser = argparse.ArgumentParser(description="A fake Gemini API server")
    parser.add_argument("--key", default="fake-gemini-key", help="the valid API key")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per generate call")
    parser.add_argument("--rpm-limit", type=int, default=None)
    parser.add_argument("--image-format", default="PNG", choices=["PNG", "JPEG"])
    args = parser.parse_args(argv)
    with FakeGemini(api_key=args.key, port=args.port, latency_s=args.latency,
                    rpm_limit=args.rpm_limit, image_format=args.image_format) as fake:
        print(fake.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
