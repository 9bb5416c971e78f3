"""The ``gemini-batch`` backend: the Gemini backend's requests sent as Batch API jobs, at half the price.

The same prompts, configuration, answer handling and outcome classification as ``gemini``
(varflow/generation/backends/gemini.py); only the transport differs. A request becomes one line
(:meth:`GeminiBatchGenerator.batch_line`: the REST ``GenerateContentRequest``); a job is sent with
``client.batches.create``, inline for small jobs and as an uploaded JSONL file (the Files API)
for large ones; its state is read with ``client.batches.get``; its answers come back inlined or
as a JSONL file (``client.files.download``), each turned into a variation or a classified
:class:`GenerationError` exactly as a synchronous answer would be. Which requests go in which job,
and what the run does with the answers, is varflow/processing/batch.py's. No Prefect here.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varflow.generation.backends.base import (
    GeneratedVariation,
    GenerationError,
    TokenUsage,
    VariationRequest,
    resolve_variation_type,
)
from varflow.generation.backends.gemini import (
    OUTCOMES,
    GeminiGenerator,
    _source_part,
    build_prompt,
    classify,
    estimate_cost,
)

# The SDK's job states (``JOB_STATE_*``; the wire says ``BATCH_STATE_*``) -> varflow's.
JOB_STATES = {
    "JOB_STATE_UNSPECIFIED": "pending", "JOB_STATE_QUEUED": "pending", "JOB_STATE_PENDING": "pending",
    "JOB_STATE_RUNNING": "running", "JOB_STATE_UPDATING": "running", "JOB_STATE_PAUSED": "running",
    "JOB_STATE_CANCELLING": "running",
    "JOB_STATE_SUCCEEDED": "succeeded", "JOB_STATE_PARTIALLY_SUCCEEDED": "succeeded",
    "JOB_STATE_FAILED": "failed", "JOB_STATE_CANCELLED": "cancelled", "JOB_STATE_EXPIRED": "expired",
}
OPEN_STATES = ("submitted", "pending", "running")  # the job may still answer
ENDED_STATES = ("succeeded", "failed", "cancelled", "expired")  # the API is done with it

# gRPC codes a job's per-request error may carry -> the HTTP status the outcome table speaks.
_GRPC_TO_HTTP = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 13: 500, 14: 503, 16: 401}


@dataclass(frozen=True)
class BatchJobStatus:
    name: str
    state: str  # one of JOB_STATES' values
    succeeded: int | None = None
    failed: int | None = None
    message: str | None = None


@dataclass(frozen=True)
class BatchAnswer:
    """One request's answer in a finished job: a response, or the error the API gave it."""

    index: int  # its place in the job (inline answers come back in request order)
    key: str | None  # the request key it was sent with (metadata for inline, ``key`` for a file)
    response: Any = None  # google.genai.types.GenerateContentResponse
    error: dict | None = None  # {"code", "message", "status"?}


class GeminiBatchGenerator(GeminiGenerator):
    """The ``gemini-batch`` backend: Batch API jobs, 50% of the standard price, answers within 24 h."""

    name = "gemini-batch"
    can_batch = True

    @classmethod
    def estimate_cost(cls, model: str, usage: TokenUsage | None = None) -> float | None:
        return estimate_cost(model, usage, batch=True)

    @classmethod
    def synchronous_cost(cls, model: str, usage: TokenUsage | None = None) -> float | None:
        """What the same call costs without a batch (the dry run shows both)."""
        return estimate_cost(model, usage)

    @staticmethod
    def resubmits(outcome: str) -> bool:
        """Whether a request a job answered with ``outcome`` is worth sending again (the
        synchronous backend's retryable outcomes; a block is final)."""
        return OUTCOMES.get(outcome, (False, ""))[0]

    def generate(self, request: VariationRequest) -> GeneratedVariation:
        raise GenerationError("the gemini-batch backend makes no synchronous calls: its requests go in "
                              "batch jobs (varflow.processing.batch)", outcome="error", retryable=False)

    # -- requests ---------------------------------------------------------------------------

    def batch_line(self, request: VariationRequest, key: str) -> dict:
        """The request as one JSONL line of a batch input file: ``{"key", "request"}``, the
        request in the REST shape generateContent takes (the image inline, base64)."""
        variation_type = resolve_variation_type(request.variation_type, request.seed)
        prompt = build_prompt(variation_type, request.prompt, request.seed)
        data, mime = _source_part(request.source_path)
        config: dict[str, Any] = {"responseModalities": ["IMAGE"], "seed": request.seed & 0x7FFF_FFFF}
        if self.temperature is not None:
            config["temperature"] = self.temperature
        image_cfg = {k: v for k, v in (("aspectRatio", self.aspect_ratio), ("imageSize", self.image_size)) if v}
        if image_cfg:
            config["imageConfig"] = image_cfg
        return {"key": key, "request": {
            "contents": [{"role": "user", "parts": [
                {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}, {"text": prompt}]}],
            "generationConfig": config,
        }}

    def _inlined(self, line: dict) -> Any:
        """A line as the SDK's ``InlinedRequest`` (the key travels in its metadata)."""
        from google.genai import types

        content = line["request"]["contents"][0]
        blob, text = content["parts"][0]["inlineData"], content["parts"][1]["text"]
        seed = line["request"]["generationConfig"]["seed"]
        return types.InlinedRequest(
            contents=[types.Content(role="user", parts=[
                types.Part.from_bytes(data=base64.b64decode(blob["data"]), mime_type=blob["mimeType"]),
                types.Part.from_text(text=text)])],
            config=self.config(seed), metadata={"key": line["key"]},
        )

    # -- jobs -------------------------------------------------------------------------------

    def submit(self, lines: list[dict], *, display_name: str, as_file: bool, work_dir: Path) -> tuple[str, str | None]:
        """Create one job of ``lines``; (its name, the uploaded input file's name or None)."""
        from google.genai import types

        input_file = None
        if as_file:
            path = Path(work_dir) / f"{display_name}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w") as f:
                for line in lines:
                    f.write(json.dumps(line) + "\n")
            try:
                uploaded = self._call(self.client.files.upload, file=str(path),
                                      config=types.UploadFileConfig(display_name=display_name, mime_type="jsonl"))
            finally:
                path.unlink(missing_ok=True)
            src: Any = uploaded.name
            input_file = uploaded.name
        else:
            src = [self._inlined(line) for line in lines]
        job = self._call(self.client.batches.create, model=self.model, src=src,
                         config=types.CreateBatchJobConfig(display_name=display_name))
        return job.name, input_file

    def status(self, name: str) -> tuple[BatchJobStatus, Any]:
        """(the job's state, the SDK's BatchJob) from ``batches.get``."""
        job = self._call(self.client.batches.get, name=name)
        state = getattr(job.state, "name", None) or str(job.state or "JOB_STATE_UNSPECIFIED")
        error = getattr(job, "error", None)
        return BatchJobStatus(name=name, state=JOB_STATES.get(state, "pending"),
                              message=getattr(error, "message", None)), job

    def cancel(self, name: str) -> None:
        self._call(self.client.batches.cancel, name=name)

    def answers(self, job: Any) -> list[BatchAnswer]:
        """Every answer of a finished job (none for a job that ended without output)."""
        from google.genai import types

        dest = getattr(job, "dest", None)
        if dest is None:
            return []
        if dest.inlined_responses:
            out = []
            for i, item in enumerate(dest.inlined_responses):
                error = item.error.model_dump(exclude_none=True) if item.error is not None else None
                out.append(BatchAnswer(i, (item.metadata or {}).get("key"), item.response, error))
            return out
        if dest.file_name:
            data = self._call(self.client.files.download, file=dest.file_name)
            out = []
            for i, text in enumerate(t for t in data.decode().splitlines() if t.strip()):
                line = json.loads(text)
                response = line.get("response")
                if response is not None:
                    response = types.GenerateContentResponse._from_response(response=response, kwargs={})
                out.append(BatchAnswer(i, line.get("key"), response, line.get("error")))
            return out
        return []

    def answer_variation(self, answer: BatchAnswer, request: VariationRequest, *,
                         prompt: str | None = None) -> GeneratedVariation:
        """The variation an answer holds for ``request``; raises the classified GenerationError
        (the same outcomes as a synchronous answer: docs/gemini.md)."""
        if answer.error is not None or answer.response is None:
            from google.genai import errors as genai_errors

            error = dict(answer.error or {"code": 500, "message": "the job returned no answer for this request"})
            code = int(error.get("code") or 500)
            code = _GRPC_TO_HTTP.get(code, 500) if code < 100 else code
            raise classify(genai_errors.APIError(code, {"error": {**error, "code": code}}),
                           model=self.model, secrets=self._secrets())
        return self.variation_from(answer.response, request, prompt=prompt)


__all__ = ["ENDED_STATES", "JOB_STATES", "OPEN_STATES", "BatchAnswer", "BatchJobStatus", "GeminiBatchGenerator"]
