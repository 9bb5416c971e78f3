"""The Gemini backend: one ``generateContent`` call per variation through the ``google-genai`` SDK.

What it does, per :class:`~varflow.generation.backends.base.VariationRequest`:

1. reads the (already optimized) source image and sends it with a prompt built from a template
   for the variation type (picked reproducibly from ``request.seed``) plus the user's prompt,
   asking for ``response_modalities=["IMAGE"]`` with ``seed`` folded into int32;
2. takes the first non-``thought`` image part of the answer, checks it decodes with Pillow, and
   writes it atomically to ``request.output_path`` with the suffix of the image's real format;
3. turns every failure into a :class:`~varflow.generation.backends.base.GenerationError` with a stable
   ``outcome`` (see :func:`classify` and ``OUTCOMES``). Messages never contain the API key.

Configuration follows the SDK's conventions: the key comes from the ``api_key`` argument, else
``GOOGLE_API_KEY``, else ``GEMINI_API_KEY``; the address from ``base_url``, else the SDK's
``GOOGLE_GEMINI_BASE_URL`` (left to the SDK, so it keeps working), else Google's endpoint. The
SDK's own retries stay off: retrying is the orchestrator's job, driven by ``retryable`` and
``retry_after_s``. No Prefect here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from varflow.errors import ConfigurationError
from varflow.generation.backends.base import (
    Backend,
    GeneratedVariation,
    GenerationError,
    TokenUsage,
    VariationRequest,
    resolve_variation_type,
)
from varflow.images.imageio import write_bytes_atomic
from varflow.safety.redaction import REDACTED, remember_secret
from varflow.safety.redaction import redact as redact_secrets

DEFAULT_MODEL = "gemini-2.5-flash-image"
DEFAULT_TIMEOUT_S = 120.0
API_KEY_ENV_VARS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")  # the SDK's order: GOOGLE_API_KEY wins

# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------

#: outcome -> (retryable, what it means). ``retryable`` is what :class:`GenerationError` carries.
OUTCOMES: dict[str, tuple[bool, str]] = {
    "rate_limited": (True, "429 per-minute quota; wait retry_after_s, then retry"),
    "quota_day": (False, "429 daily quota exhausted; nothing succeeds until it resets"),
    "server_error": (True, "500/502/503 (and unparseable answers); retry with backoff"),
    "timeout": (True, "504 or the client's own timeout; retry"),
    "connection": (True, "could not connect, or the connection dropped; retry"),
    "auth": (False, "bad/missing/leaked API key or no permission (400 API_KEY_INVALID/401/403)"),
    "not_found": (False, "404: the model name is unknown or retired"),
    "invalid_request": (False, "other 400s: the request itself is wrong"),
    "blocked": (False, "safety/policy block; the same prompt will be blocked again"),
    "no_image": (True, "answer without an image; retry with a changed prompt (retry_prompt)"),
    "bad_image": (True, "image bytes that do not decode; retry with a changed prompt"),
    "error": (False, "anything else (a bug until proven otherwise)"),
}

BLOCK_FINISH_REASONS = frozenset({
    "SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST",
    "SPII", "RECITATION", "IMAGE_RECITATION", "MODEL_ARMOR", "JAILBREAK",
})


# ---------------------------------------------------------------------------------------------
# Prices (USD). Anchors: docs/REFERENCE "Price anchors"; token rates derived from them.
# ---------------------------------------------------------------------------------------------

#: Standard (non-batch) price of one output image at the default 1K size.
#: gemini-2.5-flash-image: 1290 output tokens at $30/M = $0.039.
#: gemini-3-pro-image: $0.134 for 1K/2K (1120 tokens at $120/M), $0.24 for 4K (2000 tokens).
#: gemini-3.1-flash-image: about $0.045 (0.5K) to $0.151 (4K); $0.067 at 1K is an estimate.
PRICES_USD_PER_IMAGE: dict[str, float] = {
    "gemini-2.5-flash-image": 0.039,
    "gemini-3-pro-image": 0.134,
    "gemini-3.1-flash-image": 0.067,
}


@dataclass(frozen=True)
class TokenPrice:
    input_per_m: float  # USD per million prompt tokens (text and image input)
    output_per_m: float  # USD per million output tokens (image output rate)


#: Per-token estimates. Output rates follow from the per-image anchors above (price / tokens);
#: input rates are the published text/image input prices as far as known. Estimates only:
#: thinking and text output are billed at lower text rates, which this ignores (overestimate).
TOKEN_PRICES_USD: dict[str, TokenPrice] = {
    "gemini-2.5-flash-image": TokenPrice(input_per_m=0.30, output_per_m=30.0),
    "gemini-3-pro-image": TokenPrice(input_per_m=2.00, output_per_m=120.0),
    "gemini-3.1-flash-image": TokenPrice(input_per_m=0.50, output_per_m=60.0),
}
BATCH_DISCOUNT = 0.5  # the Batch API costs half the standard price


def _price_key(model: str) -> str | None:
    name = model.split("/")[-1]
    for key in sorted(PRICES_USD_PER_IMAGE, key=len, reverse=True):
        if name == key or name.startswith(key + "-"):  # "...-preview", "...-001"
            return key
    return None


def estimate_cost(model: str, usage: TokenUsage | None = None, *, images: int = 1,
                  batch: bool = False) -> float | None:
    """Estimated USD cost of a call: from token usage when known, else per image.

    Returns None for a model without a known price. Not a bill: see ``TOKEN_PRICES_USD``.
    """
    key = _price_key(model)
    if key is None:
        return None
    factor = BATCH_DISCOUNT if batch else 1.0
    rates = TOKEN_PRICES_USD.get(key)
    if usage is not None and rates is not None and usage.output_tokens is not None:
        cost = ((usage.prompt_tokens or 0) * rates.input_per_m
                + usage.output_tokens * rates.output_per_m) / 1e6
        return round(cost * factor, 6)
    return round(PRICES_USD_PER_IMAGE[key] * images * factor, 6)


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------

_IMAGE_ONLY = "Return the edited image only."

PROMPT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "object_rearrange": (
        "Rearrange the objects in this image: move some of them to new positions while keeping "
        "every object, the setting, the lighting and the style recognisable.",
        "Edit this image so the main objects sit in a different arrangement relative to each "
        "other. Do not add or remove anything; keep the same photographic style.",
        "Create a variation of this image in which the existing objects are repositioned into a "
        "new, natural-looking layout. Keep the background and the style unchanged.",
    ),
    "object_add": (
        "Add one or two new objects to this image that fit the scene naturally, matching its "
        "lighting, perspective and style. Keep everything already there unchanged.",
        "Edit this image by introducing a plausible new object into the scene, blended in with "
        "consistent shadows and scale. Leave the existing content as it is.",
        "Create a variation of this image with an extra element added that belongs in the "
        "setting. Preserve the original composition and style.",
    ),
    "object_remove": (
        "Remove one of the secondary objects from this image and fill the area so the scene "
        "looks natural and untouched. Keep everything else unchanged.",
        "Edit this image by taking out a non-essential object and reconstructing the background "
        "behind it seamlessly. Preserve lighting and style.",
        "Create a variation of this image with one object removed cleanly, leaving no trace. "
        "Keep the rest of the scene exactly as it is.",
    ),
    "style_change": (
        "Re-render this image in a clearly different artistic style while keeping its content, "
        "objects and layout the same.",
        "Edit this image to change its visual style (palette, medium, rendering) without moving, "
        "adding or removing any objects.",
        "Create a stylistic variation of this image: same scene and composition, new artistic "
        "treatment.",
    ),
    "composition": (
        "Recompose this image: change the framing, viewpoint or crop so the same scene is shown "
        "with a different composition. Keep the objects and the style.",
        "Edit this image to present the same subject with a new composition, for example a "
        "different camera angle or balance of elements.",
        "Create a variation of this image with an altered composition (framing, perspective, "
        "placement of the subject) while preserving its content and style.",
    ),
}

RETRY_PROMPT_VARIANTS: tuple[str, ...] = (
    "{prompt} (alternative interpretation)",
    "Create a different version of: {prompt}",
    "Generate an alternative approach to: {prompt}",
    "Please try again with: {prompt}",
)
_RETRY_PROMPT_EMPTY: tuple[str, ...] = (
    "(alternative interpretation)",
    "Create a different version.",
    "Generate an alternative approach.",
    "Please try again.",
)


def _template_index(seed: int, n: int) -> int:
    digest = hashlib.sha256(f"template:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def build_prompt(variation_type: str, user_prompt: str, seed: int) -> str:
    """The exact text sent: a template for the type (chosen from ``seed``) and the user's prompt."""
    templates = PROMPT_TEMPLATES.get(variation_type)
    if templates is None:
        raise ConfigurationError(f"no prompt templates for variation type {variation_type!r}; known: "
                         f"{', '.join(PROMPT_TEMPLATES)}")
    text = templates[_template_index(seed, len(templates))]
    user = " ".join((user_prompt or "").split())
    if user:
        text += f" Additional direction: {user}"
        if user[-1] not in ".!?)":
            text += "."
    return f"{text} {_IMAGE_ONLY}"


def retry_prompt(prompt: str, retry_number: int) -> str:
    """The seed's ``modify_prompt_for_retry``: reword the prompt for retry 1, 2, ...

    ``retry_number`` 0 (the first try) returns the prompt unchanged; later retries cycle through
    the variants instead of falling back to the original, which already failed once.
    """
    if retry_number <= 0:
        return prompt
    text = " ".join((prompt or "").split())
    i = (retry_number - 1) % len(RETRY_PROMPT_VARIANTS)
    if not text:
        return _RETRY_PROMPT_EMPTY[i]
    return RETRY_PROMPT_VARIANTS[i].format(prompt=text)


# ---------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------

_GOOGLE_KEY_RE = re.compile(r"AIza[0-9A-Za-z_\-]{30,}")
_KEY_PARAM_RE = re.compile(r"(?i)((?:[?&]|\b)key=)[^&\s'\"]+")
_KEY_HEADER_RE = re.compile(r"(?i)(x-goog-api-key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without the given secrets and this process's known ones (any fragment of 8+
    characters, any case: varflow/safety/redaction.py), Google API keys, ``key=`` params or key headers."""
    text = redact_secrets(text, secrets)
    text = _GOOGLE_KEY_RE.sub(REDACTED, text)
    text = _KEY_PARAM_RE.sub(lambda m: m.group(1) + REDACTED, text)
    return _KEY_HEADER_RE.sub(lambda m: m.group(1) + REDACTED, text)


def _clip(text: str, limit: int = 300) -> str:
    text = re.sub(r"<[^>]+>", " ", text)  # HTML error pages
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Key resolution
# ---------------------------------------------------------------------------------------------


class MissingApiKeyError(ConfigurationError):
    """No API key: raised when the backend is created, before any work."""


def resolve_api_key(api_key: str | None = None) -> str:
    """The explicit key, else ``GOOGLE_API_KEY``, else ``GEMINI_API_KEY`` (the SDK's order)."""
    candidates = [api_key] + [os.environ.get(name) for name in API_KEY_ENV_VARS]
    for value in candidates:
        if value and value.strip():
            return value.strip()
    raise MissingApiKeyError(
        "no Gemini API key: set GOOGLE_API_KEY or GEMINI_API_KEY (GOOGLE_API_KEY wins when both "
        "are set) or pass api_key=...; create a key at https://aistudio.google.com/apikey"
    )


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------


def _error_body(exc: Any) -> dict:
    """The ``error`` object of an APIError, whichever shape the SDK kept."""
    details = getattr(exc, "details", None)
    if isinstance(details, list) and len(details) == 1:
        details = details[0]
    if isinstance(details, dict):
        inner = details.get("error")
        return inner if isinstance(inner, dict) else details
    return {}


def _detail_items(body: dict) -> list[dict]:
    items = body.get("details")
    return [d for d in items if isinstance(d, dict)] if isinstance(items, list) else []


def _parse_duration(value: Any) -> float | None:
    """``"53s"``, ``"1.5s"``, ``{"seconds": 2, "nanos": 0}`` or a number -> seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*s?\s*", value)
        if m:
            return float(m.group(1))
    return None


def _retry_after(exc: Any, body: dict) -> float | None:
    for d in _detail_items(body):
        if str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = _parse_duration(d.get("retryDelay"))
            if delay is not None:
                return delay
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            value = headers.get("retry-after")
        except Exception:  # noqa: BLE001 - odd header containers
            value = None
        delay = _parse_duration(value)
        if delay is not None:
            return delay
    m = re.search(r"retry in (\d+(?:\.\d+)?)\s*s", str(body.get("message") or ""), re.I)
    return float(m.group(1)) if m else None


def _quota_ids(body: dict) -> list[str]:
    ids: list[str] = []
    for d in _detail_items(body):
        if str(d.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            for v in d.get("violations") or []:
                if isinstance(v, dict) and v.get("quotaId"):
                    ids.append(str(v["quotaId"]))
    return ids


def _error_reasons(body: dict) -> set[str]:
    return {str(d.get("reason")) for d in _detail_items(body)
            if str(d.get("@type", "")).endswith("google.rpc.ErrorInfo") and d.get("reason")}


def _exc_family(exc: BaseException) -> str | None:
    """'timeout' / 'connection' for httpx, httpx2 (the SDK's default client) and requests."""
    for cls in type(exc).__mro__:
        module = cls.__module__.split(".")[0]
        if module not in ("httpx", "httpx2", "httpcore", "requests", "urllib3", "aiohttp"):
            continue
        name = cls.__name__
        if "Timeout" in name:
            return "timeout"
        if name in ("TransportError", "NetworkError", "ConnectError", "ReadError", "WriteError",
                    "RemoteProtocolError", "ProtocolError", "ConnectionError", "ProxyError",
                    "ClientConnectionError", "ServerDisconnectedError", "CloseError",
                    "LocalProtocolError"):
            return "connection"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "connection"
    return None


def _classify_api_error(exc: Any, model: str, secrets: tuple[str | None, ...]) -> GenerationError:
    body = _error_body(exc)
    code = getattr(exc, "code", None)
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    status = str(getattr(exc, "status", None) or body.get("status") or "")
    raw_message = str(getattr(exc, "message", None) or body.get("message") or "")
    message = _clip(redact(raw_message, secrets))
    where = f"Gemini ({model})" if model else "Gemini"
    head = f"{where}: HTTP {code}" + (f" {status}" if status else "")
    detail = f": {message}" if message else ""

    def err(outcome: str, text: str, retry_after: float | None = None) -> GenerationError:
        return GenerationError(redact(text, secrets), outcome=outcome,
                               retryable=OUTCOMES[outcome][0], http_status=code,
                               retry_after_s=retry_after)

    if code == 429:
        quota_ids = _quota_ids(body)
        day = [q for q in quota_ids if "perday" in q.lower()]
        if day:
            return err("quota_day", f"{head}: daily quota exhausted ({', '.join(day)}); requests "
                       "will keep failing until the quota resets (midnight Pacific time). Stop, "
                       "or use another key or model.")
        retry_after = _retry_after(exc, body)
        which = f" ({', '.join(quota_ids)})" if quota_ids else ""
        wait = f"; retry after {retry_after:g}s" if retry_after is not None else ""
        return err("rate_limited", f"{head}: rate limited{which}{wait}", retry_after)
    if code in (401, 403):
        return err("auth", f"{head}{detail} (check GOOGLE_API_KEY / GEMINI_API_KEY and the "
                   "key's permissions)")
    if code == 400:
        reasons = _error_reasons(body)
        lower = raw_message.lower()
        if "API_KEY_INVALID" in reasons or "api key not valid" in lower or \
                "api key expired" in lower:
            why = ", ".join(sorted(reasons)) or "invalid key"
            return err("auth", f"{head}: the API key was rejected ({why}); set a valid key in "
                       "GOOGLE_API_KEY or GEMINI_API_KEY")
        return err("invalid_request", f"{head}{detail}")
    if code == 404 and not model:
        return err("not_found", f"{head}{detail}")
    if code == 404:
        return err("not_found", f"{where}: HTTP 404 NOT_FOUND: model {model!r} was not found or "
                   "does not support generateContent (retired or misspelt name?); run "
                   "`varflow models` to list the image models your key can use"
                   + (f" [{message}]" if message else ""))
    if code in (408, 504):
        return err("timeout", f"{head}{detail}")
    if code is not None and 500 <= code < 600:
        if code == 501:
            return GenerationError(redact(f"{head}{detail}", secrets), outcome="server_error",
                                   retryable=False, http_status=code)
        return err("server_error", f"{head}{detail}", _retry_after(exc, body))
    if code is not None and 400 <= code < 500:
        return err("invalid_request", f"{head}{detail}")
    return GenerationError(redact(f"{head}{detail}", secrets), outcome="error", retryable=False,
                           http_status=code)


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    name = getattr(value, "value", value)
    return str(name).upper() or None


def image_parts(response: Any) -> list[tuple[bytes, str | None]]:
    """(bytes, mime type) of every non-thought inline image in the first candidate."""
    candidates = getattr(response, "candidates", None) or []
    if not candidates:
        return []
    content = getattr(candidates[0], "content", None)
    out: list[tuple[bytes, str | None]] = []
    for part in getattr(content, "parts", None) or []:
        if getattr(part, "thought", None):
            continue
        blob = getattr(part, "inline_data", None)
        data = getattr(blob, "data", None)
        mime = getattr(blob, "mime_type", None)
        if data and (mime is None or str(mime).startswith("image/")):
            out.append((data, mime))
    return out


def _classify_response(response: Any, model: str) -> GenerationError:
    where = f"Gemini ({model})" if model else "Gemini"
    feedback = getattr(response, "prompt_feedback", None)
    block = _enum_name(getattr(feedback, "block_reason", None))
    candidates = getattr(response, "candidates", None) or []
    if block and block != "BLOCKED_REASON_UNSPECIFIED":
        msg = getattr(feedback, "block_reason_message", None)
        return GenerationError(f"{where}: prompt blocked ({block})" + (
            f": {_clip(str(msg))}" if msg else "") + "; the same prompt will be blocked again",
            outcome="blocked", retryable=False, http_status=200)
    if not candidates:
        return GenerationError(f"{where}: the answer had no candidates and no image",
                               outcome="no_image", retryable=True, http_status=200)
    cand = candidates[0]
    finish = _enum_name(getattr(cand, "finish_reason", None)) or "UNSPECIFIED"
    finish_msg = getattr(cand, "finish_message", None)
    if finish in BLOCK_FINISH_REASONS:
        return GenerationError(f"{where}: image blocked (finishReason {finish})" + (
            f": {_clip(str(finish_msg))}" if finish_msg else "")
            + "; the same prompt will be blocked again",
            outcome="blocked", retryable=False, http_status=200)
    texts = [str(p.text) for p in (getattr(getattr(cand, "content", None), "parts", None) or [])
             if getattr(p, "text", None) and not getattr(p, "thought", None)]
    said = f"; it said: {_clip(' '.join(texts), 160)!r}" if texts else ""
    kind = "text only" if texts else "no content"
    return GenerationError(f"{where}: no image in the answer (finishReason {finish}, {kind})"
                           f"{said}; retry with a changed prompt",
                           outcome="no_image", retryable=True, http_status=200)


def classify(obj: Any, *, model: str = "", secrets: Iterable[str | None] = (),
             timeout_s: float | None = None) -> GenerationError:
    """Turn an SDK exception, a transport exception, or an imageless response into a
    :class:`GenerationError` with a stable ``outcome``; see ``OUTCOMES``.

    ``secrets`` (the API key) are removed from the message, as are anything that looks like a
    Google API key and ``key=`` parameters.
    """
    secrets = tuple(secrets)
    if isinstance(obj, GenerationError):
        return obj
    if isinstance(obj, BaseException):
        from google.genai import errors as genai_errors

        where = f"Gemini ({model})" if model else "Gemini"
        if isinstance(obj, genai_errors.APIError):
            return _classify_api_error(obj, model, secrets)
        text = _clip(redact(str(obj) or type(obj).__name__, secrets))
        family = _exc_family(obj)
        if family == "timeout":
            after = f" after {timeout_s:g}s" if timeout_s else ""
            return GenerationError(f"{where}: request timed out{after} ({type(obj).__name__}: "
                                   f"{text}); raise timeout_s if this keeps happening",
                                   outcome="timeout", retryable=True)
        if family == "connection":
            return GenerationError(f"{where}: connection failed ({type(obj).__name__}: {text})",
                                   outcome="connection", retryable=True)
        name = type(obj).__name__
        if name == "ValidationError" and ("inlineData" in str(obj) or "inline_data" in str(obj)):
            return GenerationError(f"{where}: the image data in the answer is not valid base64; "
                                   "retry with a changed prompt", outcome="bad_image",
                                   retryable=True, http_status=200)
        if isinstance(obj, (genai_errors.UnknownApiResponseError, json.JSONDecodeError)) or \
                name == "ValidationError":
            return GenerationError(f"{where}: unreadable answer ({name}: {_clip(text, 120)})",
                                   outcome="server_error", retryable=True, http_status=200)
        return GenerationError(f"{where}: unexpected {name}: {text}", outcome="error",
                               retryable=False)
    return _classify_response(obj, model)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

_FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
                  "TIFF": ".tif", "HEIF": ".heic", "AVIF": ".avif"}
_MIME_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg",
                "image/webp": ".webp", "image/gif": ".gif", "image/heic": ".heic",
                "image/heif": ".heif", "image/avif": ".avif"}
_SENDABLE = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def suffix_for(mime_type: str | None, pil_format: str | None = None) -> str:
    """The file suffix for an image: its decoded format first, else its declared mime type."""
    if pil_format and pil_format.upper() in _FORMAT_SUFFIX:
        return _FORMAT_SUFFIX[pil_format.upper()]
    if mime_type:
        return _MIME_SUFFIX.get(mime_type.split(";")[0].strip().lower(), ".png")
    return ".png"


def _decode(data: bytes) -> tuple[int, int, str | None]:
    """(width, height, format) of image bytes; raises when they are not a whole image."""
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # verify() does not decode pixels; truncated data fails here
        return img.width, img.height, img.format


def _source_part(path: str) -> tuple[bytes, str]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GenerationError(f"cannot read source image {path}: {exc.strerror or exc}",
                              outcome="invalid_request", retryable=False) from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "").upper()
            if fmt in _SENDABLE:
                return data, _SENDABLE[fmt]
            converted = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise GenerationError(f"source image {path} does not decode: {exc}",
                              outcome="invalid_request", retryable=False) from None
    buf = io.BytesIO()
    converted.save(buf, format="PNG")  # Gemini takes PNG/JPEG/WEBP; send others as PNG
    return buf.getvalue(), "image/png"


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageModelInfo:
    name: str  # without the "models/" prefix: what ``model=`` takes
    display_name: str
    description: str
    supported_actions: tuple[str, ...]


def is_image_model(name: str, supported_actions: Iterable[str] | None = None) -> bool:
    """Can this model answer ``generateContent`` with images? Judged by name and actions."""
    short = name.split("/")[-1].lower()
    by_name = ("image" in short and not short.startswith("imagen")) or "nano-banana" in short
    if supported_actions is None:
        return by_name
    actions = set(supported_actions)
    return by_name and (not actions or "generateContent" in actions)


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------


class GeminiGenerator(Backend):
    """The ``gemini`` backend: the real SDK, no SDK retries, a timeout on every request."""

    name = "gemini"
    default_model = DEFAULT_MODEL
    remote = True

    @classmethod
    def estimate_cost(cls, model: str, usage: TokenUsage | None = None) -> float | None:
        return estimate_cost(model, usage)

    def retry_prompt(self, prompt: str, retry_number: int) -> str:
        return retry_prompt(prompt, retry_number)

    def sent_prompt(self, request: VariationRequest) -> str:
        """The template-wrapped text a call for ``request`` sends."""
        try:
            return build_prompt(resolve_variation_type(request.variation_type, request.seed),
                                request.prompt, request.seed)
        except Exception:  # noqa: BLE001 - a record must not fail on its prompt text
            return request.prompt

    def __init__(self, model: str = DEFAULT_MODEL, *, api_key: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, base_url: str | None = None,
                 api_version: str | None = None, aspect_ratio: str | None = None,
                 image_size: str | None = None, temperature: float | None = None):
        if not model or not model.strip():
            raise ConfigurationError("model must be a Gemini image model name, e.g. " + DEFAULT_MODEL)
        if timeout_s is None or timeout_s <= 0:
            raise ConfigurationError(f"timeout_s={timeout_s!r} must be a positive number of seconds")
        self.model = model.strip().removeprefix("models/")
        self._api_key = resolve_api_key(api_key)  # raises before any work
        remember_secret(self._api_key)  # every record and log line of this process redacts it
        self.timeout_s = float(timeout_s)
        self.base_url = base_url
        self.api_version = api_version
        self.aspect_ratio = aspect_ratio
        self.image_size = image_size
        self.temperature = temperature
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"GeminiGenerator(model={self.model!r}, timeout_s={self.timeout_s:g}, "
                f"base_url={self.base_url!r})")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_client"] = None  # rebuilt on first use
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- client -----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from google import genai
                    from google.genai import types

                    options: dict[str, Any] = {"timeout": max(1, int(self.timeout_s * 1000))}
                    if self.base_url:  # else the SDK reads GOOGLE_GEMINI_BASE_URL itself
                        options["base_url"] = self.base_url
                    if self.api_version:
                        options["api_version"] = self.api_version
                    # No retry_options: the SDK's retries stay off.
                    self._client = genai.Client(api_key=self._api_key, vertexai=False,
                                                http_options=types.HttpOptions(**options))
        return self._client

    def close(self) -> None:
        """Close the SDK client's connections (a new client is made if used again)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> GeminiGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _secrets(self) -> tuple[str]:
        return (self._api_key,)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified, re-raised as GenerationError
            err = classify(exc, model=self.model, secrets=self._secrets(),
                           timeout_s=self.timeout_s)
        raise err from None  # the SDK exception may quote request details: don't chain it

    # -- generation -------------------------------------------------------------------------

    def config(self, seed: int) -> Any:
        from google.genai import types

        kwargs: dict[str, Any] = {"response_modalities": ["IMAGE"], "seed": seed & 0x7FFF_FFFF}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.aspect_ratio or self.image_size:
            image_cfg = {k: v for k, v in (("aspect_ratio", self.aspect_ratio),
                                           ("image_size", self.image_size)) if v}
            kwargs["image_config"] = types.ImageConfig(**image_cfg)
        return types.GenerateContentConfig(**kwargs)

    def generate(self, request: VariationRequest) -> GeneratedVariation:
        from google.genai import types

        variation_type = resolve_variation_type(request.variation_type, request.seed)
        prompt = build_prompt(variation_type, request.prompt, request.seed)
        data, mime = _source_part(request.source_path)
        response = self._call(
            self.client.models.generate_content,
            model=self.model,
            contents=[types.Part.from_bytes(data=data, mime_type=mime), prompt],
            config=self.config(request.seed),
        )
        return self.variation_from(response, request)

    def variation_from(self, response: Any, request: VariationRequest, *,
                       prompt: str | None = None) -> GeneratedVariation:
        """The variation in a ``GenerateContentResponse`` for ``request`` (``prompt``: the text
        sent, when known), its image written to ``request.output_path`` with its real suffix;
        raises the classified GenerationError."""
        variation_type = resolve_variation_type(request.variation_type, request.seed)
        prompt = prompt or build_prompt(variation_type, request.prompt, request.seed)
        images = image_parts(response)
        if not images:
            err = classify(response, model=self.model, secrets=self._secrets())
            err.usage = usage_of(response)  # a block or a text answer may still be billed
            raise err
        image, out_mime = images[0]
        try:
            width, height, fmt = _decode(image)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad data
            raise GenerationError(
                f"Gemini ({self.model}): the returned {out_mime or 'image'} ({len(image)} bytes) "
                f"does not decode ({type(exc).__name__}); retry with a changed prompt",
                outcome="bad_image", retryable=True, http_status=200,
                usage=usage_of(response)) from None
        out = Path(request.output_path)
        out = out.with_suffix(suffix_for(out_mime, fmt))
        write_bytes_atomic(image, out)  # no fsync: the file is copied into the cache at once
        cand = response.candidates[0]
        finish = _enum_name(getattr(cand, "finish_reason", None)) or "UNSPECIFIED"
        version = getattr(response, "model_version", None)
        template = _template_index(request.seed, len(PROMPT_TEMPLATES[variation_type]))
        detail = f"{variation_type}; template {template}; finish {finish}"
        if version and version != self.model:
            detail += f"; model_version {version}"
        return GeneratedVariation(
            output_path=str(out), prompt_sent=prompt, model=self.model, width=width,
            height=height, detail=detail, usage=usage_of(response),
        )

    # -- models -----------------------------------------------------------------------------

    def check(self) -> None:
        """One free ``models.get`` for the configured model: raises the classified
        :class:`GenerationError` for a rejected key (``auth``) or an unknown model
        (``not_found``, naming the model and ``varflow models``) before any paid call."""
        self._call(self.client.models.get, model=self.model)

    def list_models(self) -> list[ImageModelInfo]:
        return self.list_image_models()

    def list_image_models(self) -> list[ImageModelInfo]:
        """The models this key can use that produce images (``client.models.list()``)."""

        def run() -> list[ImageModelInfo]:
            found = []
            for m in self.client.models.list():
                name = (m.name or "").removeprefix("models/")
                actions = tuple(m.supported_actions or ())
                if is_image_model(name, actions if m.supported_actions is not None else None):
                    found.append(ImageModelInfo(name, m.display_name or name,
                                                m.description or "", actions))
            return found

        try:
            return run()
        except Exception as exc:  # noqa: BLE001
            err = classify(exc, model="", secrets=self._secrets(), timeout_s=self.timeout_s)
        raise err from None


def usage_of(response: Any) -> TokenUsage | None:
    meta = getattr(response, "usage_metadata", None)
    if meta is None:
        return None
    return TokenUsage(prompt_tokens=getattr(meta, "prompt_token_count", None),
                      output_tokens=getattr(meta, "candidates_token_count", None),
                      total_tokens=getattr(meta, "total_token_count", None))


def list_image_models(api_key: str | None = None, *, base_url: str | None = None,
                      timeout_s: float = 30.0) -> list[ImageModelInfo]:
    """The image models an API key can use; for ``varflow models``."""
    with GeminiGenerator(api_key=api_key, base_url=base_url, timeout_s=timeout_s) as backend:
        return backend.list_image_models()


__all__ = [
    "API_KEY_ENV_VARS", "BATCH_DISCOUNT", "DEFAULT_MODEL", "OUTCOMES", "PRICES_USD_PER_IMAGE",
    "PROMPT_TEMPLATES", "TOKEN_PRICES_USD", "GeminiGenerator",
    "ImageModelInfo", "MissingApiKeyError", "TokenPrice", "build_prompt", "classify",
    "estimate_cost", "image_parts", "is_image_model", "list_image_models",
    "redact", "resolve_api_key", "retry_prompt", "suffix_for", "usage_of",
]
