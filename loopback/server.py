"""An OpenAI-compatible server for loopback use: tests, benchmarks and the demo without a key.

It speaks `/v1/chat/completions` with text and image parts (data: URLs and loopback http URLs),
counts usage with OpenAI's image-token rules, enforces requests and tokens per minute with
`x-ratelimit-*` headers and 429 bodies (continuously refilled buckets, as OpenAI describes),
accepts `service_tier` ("flex" only for models with a Flex tier, each answer saying the tier that
served it, and "resource unavailable" refusals on demand), prices every answer as OpenAI bills it
(`cost_usd` in the stats: cached input, Batch and Flex at half), injects latency and faults,
simulates prompt caching of long static prefixes, and replies with JSON that validates against the
request's `json_schema`. `/_loopback/stats` counts what arrived,
including any base64 pasted into text, which a correct client never sends.

Control endpoints (loopback only, no auth): GET /_loopback/stats, GET /_loopback/requests (the
question ids and image sizes of the last 100 completions), POST /_loopback/reset,
POST /_loopback/config {"rpm", "tpm", "latency_ms": [lo, hi], "flex_unavailable": n},
POST /_loopback/replies {"replies": [object, ...]} (returned in order instead of generated ones),
POST /_loopback/faults {"faults": [{"status", "type", "code", "message"}, ...]}.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import ipaddress
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
from flask import Flask, Response, jsonify, request
from PIL import Image
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from shared.spending.costs import UnknownModel, call_cost, image_tokens, model_card, text_tokens

BASE64_IN_TEXT = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,[A-Za-z0-9+/=]*|[A-Za-z0-9+/]{200,}={0,2}")
CACHE_MIN_TOKENS = 1024
CACHE_INCREMENT = 128


class Bucket:
    """A continuously refilled bucket: `capacity` per minute."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.level = float(capacity)
        self.stamp = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.capacity / 60.0)
        self.stamp = now

    def seconds_until(self, amount: float) -> float:
        return max(0.0, (amount - self.level) * 60.0 / self.capacity)

    def seconds_until_full(self) -> float:
        return self.seconds_until(self.capacity)


def format_duration(seconds: float) -> str:
    """OpenAI's reset header format: '120ms', '1s', '6m0s'."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    if minutes >= 1:
        return f"{int(minutes)}m{rest:.0f}s" if rest == int(rest) else f"{int(minutes)}m{rest:.3g}s"
    return f"{rest:.3g}s"


@dataclass
class LoopbackState:
    rpm: int = 10_000
    tpm: int = 10_000_000
    latency_ms: tuple[int, int] = (0, 0)
    replies: deque[Any] = field(default_factory=deque)
    faults: deque[dict[str, Any]] = field(default_factory=deque)
    stats: dict[str, int] = field(default_factory=dict)
    seen_prefixes: set[str] = field(default_factory=set)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {"fail_lines": n}: the next batch answers its first n lines with an error;
    # {"expire_after": n}: the next batch expires after answering n lines.
    batch_faults: dict[str, int] = field(default_factory=dict)
    batch_seconds: float = 0.5  # how long a batch takes to run
    # The next n calls asking for the Flex tier are refused: 429 "resource unavailable".
    flex_unavailable: int = 0
    # What the calls answered cost, priced as OpenAI bills them (cached input, Batch and Flex at half).
    cost_usd: Decimal = Decimal(0)
    # What the last completions asked: question ids in the reply schema and image sizes.
    requests_seen: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests_bucket = Bucket(self.rpm)
        self.tokens_bucket = Bucket(self.tpm)
        self.replies.clear()
        self.faults.clear()
        self.seen_prefixes.clear()
        self.batch_faults.clear()
        self.requests_seen.clear()
        self.flex_unavailable = 0
        self.cost_usd = Decimal(0)
        self.stats = dict.fromkeys(
            [
                "requests",
                "completions",
                "rate_limited",
                "faults",
                "bad_requests",
                "image_parts_data",
                "image_parts_url",
                "base64_in_text",
                "base64_chars_in_text",
                "prompt_tokens",
                "cached_tokens",
                "completion_tokens",
                "schema_violations",
                "batches",
                "batch_lines",
                "flex_completions",
                "flex_unavailable",
            ],
            0,
        )

    def count(self, name: str, amount: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + amount


class BadRequest(Exception):
    def __init__(self, message: str, code: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _openai_error(
    status: int, message: str, type_: str, code: str | None, headers: dict[str, str] | None = None
) -> Response:
    response = jsonify({"error": {"message": message, "type": type_, "param": None, "code": code}})
    response.status_code = status
    response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _is_loopback(host: str | None) -> bool:
    if host in {"localhost"}:
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _image_size(url: str) -> tuple[tuple[int, int], bytes]:
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header or not header.startswith("data:image/"):
            raise BadRequest("image data URLs must be data:image/...;base64,...", "invalid_image_url")
        try:
            data = base64.b64decode(payload, validate=True)
        except ValueError as exc:
            raise BadRequest("image data URL is not valid base64", "invalid_image_url") from exc
    else:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not _is_loopback(parts.hostname):
            raise BadRequest("this loopback server only fetches loopback http URLs", "invalid_image_url")
        try:
            reply = httpx.get(url, timeout=10)
        except httpx.HTTPError as exc:
            raise BadRequest(f"could not download the image: {exc}", "invalid_image_url") from exc
        if reply.status_code != 200:
            raise BadRequest(f"downloading the image gave HTTP {reply.status_code}", "invalid_image_url")
        data = reply.content
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size, data
    except Exception as exc:
        raise BadRequest("the image could not be decoded", "invalid_image_format") from exc


@dataclass
class PromptCount:
    tokens: int = 0
    prefix_tokens: int = 0
    prefix_text: str = ""
    seed: bytes = b""
    images: list[tuple[int, int]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


def count_prompt(state: LoopbackState, model: str, messages: list[dict[str, Any]]) -> PromptCount:
    """Prompt tokens by OpenAI's rules; the static prefix is everything before the first image."""
    count = PromptCount()
    digest = hashlib.sha256()
    in_prefix = True
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise BadRequest("each message needs a role")
        count.tokens += 4
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if part.get("type") == "text":
                text = str(part.get("text", ""))
                found = BASE64_IN_TEXT.findall(text)
                if found:
                    state.count("base64_in_text", len(found))
                    state.count("base64_chars_in_text", sum(len(f) for f in found))
                tokens = text_tokens(text)
                count.tokens += tokens
                if in_prefix:
                    count.prefix_tokens += tokens
                    count.prefix_text += text
                else:
                    digest.update(text.encode())
            elif part.get("type") == "image_url":
                in_prefix = False
                image = part.get("image_url") or {}
                url = str(image.get("url", ""))
                state.count("image_parts_data" if url.startswith("data:") else "image_parts_url")
                (width, height), data = _image_size(url)
                count.images.append((width, height))
                count.details.append(str(image.get("detail", "auto")))
                digest.update(hashlib.sha256(data).digest())
                try:
                    count.tokens += image_tokens(model, width, height, image.get("detail", "auto"))
                except UnknownModel:
                    count.tokens += image_tokens("gpt-4o", width, height, image.get("detail", "auto"))
            else:
                raise BadRequest(f"unsupported content part type {part.get('type')!r}")
    count.seed = digest.digest()
    return count


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s (#/$defs/...) to the schema they name."""
    while "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def generate_instance(
    schema: dict[str, Any],
    rng: random.Random,
    root: dict[str, Any] | None = None,
    points: dict[str, float] | None = None,
    key: str | None = None,
) -> Any:
    """A value that validates against `schema` (the subset structured outputs allow). `points`
    maps question ids to their points, read from the exam in the prompt, as a model would."""
    root = root if root is not None else schema
    points = points or {}
    schema = _resolve(schema, root)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    if "anyOf" in schema:
        return generate_instance(schema["anyOf"][0], rng, root, points)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        value = {name: generate_instance(sub, rng, root, points, name) for name, sub in properties.items()}
        return _coherent_mark(value, properties, rng, points.get(key or ""))
    if kind == "array":
        items = _resolve(schema.get("items", {}), root)
        low = schema.get("minItems", 1)
        high = max(low, min(schema.get("maxItems", 2), 2))
        if "enum" in items:
            choices = list(items["enum"])
            return rng.sample(choices, min(len(choices), rng.randint(low, high))) if choices else []
        return [generate_instance(items, rng, root, points) for _ in range(rng.randint(low, high))]
    if kind == "string":
        return "simulated"
    if kind in {"number", "integer"}:
        low = schema.get("minimum", 0)
        high = schema.get("maximum", low + 10)
        value = rng.uniform(low, high)
        return round(value) if kind == "integer" else round(value, 2)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def _coherent_mark(
    value: dict[str, Any], properties: dict[str, Any], rng: random.Random, points: float | None
) -> dict[str, Any]:
    """A simulated verdict that makes sense: a correct answer scores full marks and has no error."""
    if not {"is_correct", "score", "error_type"} <= value.keys():
        return value
    correct = rng.random() < 0.7
    value["is_correct"] = correct
    full = points if points is not None else properties["score"].get("maximum", 1)
    value["score"] = full if correct else properties["score"].get("minimum", 0)
    errors = [e for e in properties["error_type"].get("enum", []) if e not in {"none", "illegible", "blank"}]
    value["error_type"] = "none" if correct or not errors else rng.choice(errors)
    if "confidence" in value:
        value["confidence"] = round(rng.uniform(0.8, 0.99), 2)
    if "student_answer" in value:
        value["student_answer"] = "(simulated)"
    return value


def _error(
    status: int, message: str, type_: str, code: str | None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    return status, {"error": {"message": message, "type": type_, "param": None, "code": code}}, dict(headers or {})


def ratelimit_headers(state: LoopbackState) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(state.requests_bucket.capacity),
        "x-ratelimit-limit-tokens": str(state.tokens_bucket.capacity),
        "x-ratelimit-remaining-requests": str(int(state.requests_bucket.level)),
        "x-ratelimit-remaining-tokens": str(int(state.tokens_bucket.level)),
        "x-ratelimit-reset-requests": format_duration(state.requests_bucket.seconds_until_full()),
        "x-ratelimit-reset-tokens": format_duration(state.tokens_bucket.seconds_until_full()),
    }


SERVICE_TIERS = ("auto", "default", "flex", "priority")


def complete(state: LoopbackState, body: Any, *, limits: bool) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One chat completion: (status, JSON body, headers). `limits` is False for batch lines,
    which do not count against the per-minute limits and are billed at the batch rate."""
    with state.lock:
        state.count("requests")
        if not isinstance(body, dict) or not body.get("model") or not isinstance(body.get("messages"), list):
            state.count("bad_requests")
            return _error(400, "'model' and 'messages' are required", "invalid_request_error", None)
        tier = body.get("service_tier") or "auto"
        if tier not in SERVICE_TIERS:
            state.count("bad_requests")
            return _error(400, f"Invalid value for 'service_tier': {tier!r}.", "invalid_request_error", "invalid_value")
        flex = tier == "flex" and limits
        if flex:
            try:
                has_flex = model_card(body["model"]).flex
            except UnknownModel:
                has_flex = False
            if not has_flex:
                state.count("bad_requests")
                return _error(
                    400,
                    f"The model {body['model']} is not available on the flex service tier.",
                    "invalid_request_error",
                    "invalid_value",
                )
            if state.flex_unavailable > 0:  # not billed, as OpenAI says of these
                state.flex_unavailable -= 1
                state.count("flex_unavailable")
                return _error(
                    429,
                    "Resource Unavailable: the flex service tier has no capacity for this request right now. "
                    "Please try again later, or use service_tier 'auto'.",
                    "resource_unavailable",
                    "resource_unavailable",
                )
        if limits and state.faults:
            fault = state.faults.popleft()
            state.count("faults")
            return _error(
                int(fault.get("status", 500)),
                fault.get("message", "injected fault"),
                fault.get("type", "server_error"),
                fault.get("code"),
                fault.get("headers"),
            )
    try:
        prompt = count_prompt(state, body["model"], body["messages"])
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        if schema is not None:
            schema_text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
            prompt.tokens += text_tokens(schema_text)
            prompt.prefix_tokens += text_tokens(schema_text)
            prompt.prefix_text += schema_text
    except BadRequest as exc:
        with state.lock:
            state.count("bad_requests")
        return _error(400, exc.message, "invalid_request_error", exc.code)
    with state.lock:
        questions = ((schema or {}).get("properties", {}).get("questions") or {}).get("properties", {})
        state.requests_seen.append(
            {
                "model": body["model"],
                "questions": list(questions),
                "knowledge_points": _listed_points(body),
                "images": [list(size) for size in prompt.images],
                "details": prompt.details,
                "prompt_tokens": prompt.tokens,
                "service_tier": body.get("service_tier"),
            }
        )
    max_out = int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096)
    needed = prompt.tokens + max_out
    headers: dict[str, str] = {}
    with state.lock:
        if limits:
            state.requests_bucket.refill()
            state.tokens_bucket.refill()
            if needed > state.tokens_bucket.capacity:
                state.count("bad_requests")
                return _error(
                    400 if needed > 10 * state.tokens_bucket.capacity else 429,
                    f"Request too large for {body['model']}: Limit {state.tokens_bucket.capacity}, Requested {needed}.",
                    "tokens",
                    "rate_limit_exceeded",
                    ratelimit_headers(state),
                )
            wait = max(state.requests_bucket.seconds_until(1), state.tokens_bucket.seconds_until(needed))
            if wait > 0:
                state.count("rate_limited")
                kind = "requests" if state.requests_bucket.level < 1 else "tokens"
                headers = ratelimit_headers(state)
                headers["retry-after-ms"] = str(max(1, round(wait * 1000)))
                headers["retry-after"] = str(max(1, round(wait)))
                return _error(
                    429,
                    f"Rate limit reached for {body['model']} on {kind} per min. "
                    f"Please try again in {format_duration(wait)}.",
                    kind,
                    "rate_limit_exceeded",
                    headers,
                )
            state.requests_bucket.level -= 1
            state.tokens_bucket.level -= needed
            headers = ratelimit_headers(state)
        cache_key = f"{body.get('prompt_cache_key', '')}|{hashlib.sha256(prompt.prefix_text.encode()).hexdigest()}"
        cached = 0
        if prompt.prefix_tokens >= CACHE_MIN_TOKENS:
            if cache_key in state.seen_prefixes:
                cached = prompt.prefix_tokens // CACHE_INCREMENT * CACHE_INCREMENT
            state.seen_prefixes.add(cache_key)
        scripted = state.replies.popleft() if state.replies else None
    low, high = state.latency_ms
    if limits and high > 0:
        time.sleep(random.uniform(low, high) / 1000)
    content = reply_content(state, body, prompt, scripted)
    completion_tokens = text_tokens(content)
    with state.lock:
        if limits:  # unused capacity of the reservation goes back, as OpenAI counts actual output
            state.tokens_bucket.level = min(
                state.tokens_bucket.capacity, state.tokens_bucket.level + max(0, max_out - completion_tokens)
            )
        state.count("completions")
        state.count("flex_completions", int(flex))
        state.count("prompt_tokens", prompt.tokens)
        state.count("cached_tokens", cached)
        state.count("completion_tokens", completion_tokens)
        try:
            state.cost_usd += call_cost(
                body["model"], prompt.tokens, cached, completion_tokens, batch=flex or not limits
            )
        except UnknownModel:
            pass
    return (
        200,
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt.tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt.tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "system_fingerprint": "markq-loopback",
            "service_tier": "flex" if flex else "default",
        },
        headers,
    )


def _json_error(status: int, message: str) -> Response:
    response = jsonify({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})
    response.status_code = status
    return response


def _run_batch(state: LoopbackState, batch_id: str, lines: list[dict[str, Any]], faults: dict[str, int]) -> None:
    """Answer a batch's lines as /v1/chat/completions would, then publish output and error files."""
    time.sleep(state.batch_seconds / 2)
    with state.lock:
        state.batches[batch_id]["status"] = "in_progress"
    outputs, errors = [], []
    expire_after = faults.get("expire_after")
    for n, line in enumerate(lines):
        if expire_after is not None and n >= expire_after:
            break
        custom_id = line.get("custom_id")
        if n < faults.get("fail_lines", 0):
            errors.append(
                {
                    "id": f"batch_req_{uuid.uuid4().hex}",
                    "custom_id": custom_id,
                    "response": None,
                    "error": {"code": "server_error", "message": "injected line failure"},
                }
            )
            continue
        status, payload, _headers = complete(state, line.get("body"), limits=False)
        entry = {
            "id": f"batch_req_{uuid.uuid4().hex}",
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": f"req_{uuid.uuid4().hex}", "body": payload},
            "error": None,
        }
        (outputs if status == 200 else errors).append(entry)
    time.sleep(state.batch_seconds / 2)
    with state.lock:
        batch = state.batches[batch_id]
        for kind, entries in (("output_file_id", outputs), ("error_file_id", errors)):
            if entries:
                file_id = f"file-{uuid.uuid4().hex}"
                data = "\n".join(json.dumps(e, ensure_ascii=False) for e in entries).encode("utf-8") + b"\n"
                state.files[file_id] = {
                    "id": file_id,
                    "object": "file",
                    "bytes": len(data),
                    "data": data,
                    "created_at": int(time.time()),
                    "filename": f"{batch_id}-{kind}.jsonl",
                    "purpose": "batch_output",
                    "status": "processed",
                }
                batch[kind] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}
        batch["status"] = "expired" if expire_after is not None and expire_after < len(lines) else "completed"
        batch["completed_at" if batch["status"] == "completed" else "expired_at"] = int(time.time())
        state.count("batch_lines", len(outputs) + len(errors))


def create_app(state: LoopbackState | None = None) -> Flask:
    state = state or LoopbackState()
    app = Flask("markq-loopback-openai")
    app.extensions["loopback"] = state

    @app.post("/v1/chat/completions")
    def chat_completions() -> Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _openai_error(401, "missing API key", "invalid_request_error", "invalid_api_key")
        status, payload, headers = complete(state, request.get_json(silent=True), limits=True)
        response = jsonify(payload)
        response.status_code = status
        response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
        for key, value in headers.items():
            response.headers[key] = value
        return response

    @app.post("/v1/files")
    def upload_file() -> Response:
        upload = request.files.get("file")
        if upload is None:
            return _json_error(400, "send the file in a multipart 'file' field")
        data = upload.read()
        file_id = f"file-{uuid.uuid4().hex}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": upload.filename or "upload.jsonl",
            "purpose": request.form.get("purpose", "batch"),
            "status": "processed",
        }
        with state.lock:
            state.files[file_id] = {**meta, "data": data}
        return jsonify(meta)

    @app.get("/v1/files/<file_id>")
    def file_meta(file_id: str) -> Response:
        with state.lock:
            stored = state.files.get(file_id)
        if stored is None:
            return _json_error(404, f"no file {file_id}")
        return jsonify({k: v for k, v in stored.items() if k != "data"})

    @app.get("/v1/files/<file_id>/content")
    def file_content(file_id: str) -> Response:
        with state.lock:
            stored = state.files.get(file_id)
        if stored is None:
            return _json_error(404, f"no file {file_id}")
        return Response(stored["data"], mimetype="application/jsonl")

    @app.post("/v1/batches")
    def create_batch() -> Response:
        body = request.get_json(silent=True) or {}
        with state.lock:
            source = state.files.get(body.get("input_file_id", ""))
        if source is None:
            return _json_error(400, "input_file_id names no uploaded file")
        if body.get("endpoint") != "/v1/chat/completions":
            return _json_error(400, "this server runs batches of /v1/chat/completions only")
        batch_id = f"batch_{uuid.uuid4().hex}"
        lines = [json.loads(line) for line in source["data"].decode("utf-8").splitlines() if line.strip()]
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "metadata": body.get("metadata"),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        }
        with state.lock:
            state.batches[batch_id] = batch
            faults = dict(state.batch_faults)
            state.batch_faults.clear()
            state.count("batches")
        threading.Thread(target=_run_batch, args=(state, batch_id, lines, faults), daemon=True).start()
        return jsonify(batch)

    @app.get("/v1/batches/<batch_id>")
    def get_batch(batch_id: str) -> Response:
        with state.lock:
            batch = state.batches.get(batch_id)
            return jsonify(batch) if batch else _json_error(404, f"no batch {batch_id}")

    @app.post("/_loopback/batch-faults")
    def batch_faults() -> Response:
        with state.lock:
            state.batch_faults.update(request.get_json(force=True))
            return jsonify(state.batch_faults)

    @app.get("/v1/models")
    def models() -> Response:
        from shared.spending.costs import known_models

        return jsonify(
            {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "markq"} for m in known_models()]}
        )

    @app.get("/_loopback/stats")
    def stats() -> Response:
        with state.lock:
            return jsonify({**state.stats, "cost_usd": str(state.cost_usd)})

    @app.get("/_loopback/requests")
    def requests_seen() -> Response:
        with state.lock:
            return jsonify(list(state.requests_seen))

    @app.post("/_loopback/reset")
    def reset() -> Response:
        with state.lock:
            state.reset()
        return jsonify({"reset": True})

    @app.post("/_loopback/config")
    def config() -> Response:
        body = request.get_json(force=True)
        with state.lock:
            state.rpm = int(body.get("rpm", state.rpm))
            state.tpm = int(body.get("tpm", state.tpm))
            if "latency_ms" in body:
                state.latency_ms = (int(body["latency_ms"][0]), int(body["latency_ms"][1]))
            state.flex_unavailable = int(body.get("flex_unavailable", state.flex_unavailable))
            state.requests_bucket = Bucket(state.rpm)
            state.tokens_bucket = Bucket(state.tpm)
        return jsonify(
            {
                "rpm": state.rpm,
                "tpm": state.tpm,
                "latency_ms": list(state.latency_ms),
                "flex_unavailable": state.flex_unavailable,
            }
        )

    @app.post("/_loopback/replies")
    def replies() -> Response:
        body = request.get_json(force=True)
        with state.lock:
            state.replies.extend(body["replies"])
            return jsonify({"queued": len(state.replies)})

    @app.post("/_loopback/faults")
    def faults() -> Response:
        body = request.get_json(force=True)
        with state.lock:
            state.faults.extend(body["faults"])
            return jsonify({"queued": len(state.faults)})

    return app


def reply_content(state: LoopbackState, body: dict[str, Any], prompt: PromptCount, scripted: Any) -> str:
    response_format = body.get("response_format") or {}
    schema = (response_format.get("json_schema") or {}).get("schema")
    if scripted is not None:
        value = scripted
    elif schema is not None:
        value = generate_instance(schema, random.Random(prompt.seed), points=_question_points(body))
    else:
        return "This is a simulated reply from the markq loopback server."
    if schema is not None:
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError:
            with state.lock:
                state.count("schema_violations")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def _exam_context(body: dict[str, Any]) -> dict[str, Any]:
    """The exam context markq puts in a system message (a JSON object), or {} without one."""
    for message in body.get("messages", []):
        if message.get("role") != "system" or not isinstance(message.get("content"), str):
            continue
        try:
            context = json.loads(message["content"])
        except ValueError:
            continue
        if isinstance(context, dict):
            return context
    return {}


def _listed_points(body: dict[str, Any]) -> list[str]:
    """The knowledge point ids the exam context lists."""
    points = _exam_context(body).get("knowledge_points")
    return sorted(points) if isinstance(points, dict) else []


def _question_points(body: dict[str, Any]) -> dict[str, float]:
    """Question ids and points from the exam context's answer key, if one is there."""
    key = _exam_context(body).get("answer_key")
    if not isinstance(key, dict):
        return {}
    return {str(q.get("id")): float(q.get("points", 1)) for q in key.get("questions", []) if isinstance(q, dict)}


class LoopbackServer:
    """The server on a thread, for tests and the demo: `with LoopbackServer() as server: server.url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state: LoopbackState | None = None) -> None:
        self.state = state or LoopbackState()
        self._server: BaseWSGIServer = make_server(
            host, port, create_app(self.state), threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--rpm", type=int, default=10_000)
    parser.add_argument("--tpm", type=int, default=10_000_000)
    parser.add_argument("--latency-ms", default="0-0", help="uniform latency range, e.g. 200-800")
    args = parser.parse_args()
    if not _is_loopback(args.host):
        parser.error("this server is for loopback use only")
    low, _, high = args.latency_ms.partition("-")
    state = LoopbackState(rpm=args.rpm, tpm=args.tpm, latency_ms=(int(low), int(high or low)))
    server = LoopbackServer(args.host, args.port, state)
    print(f"loopback OpenAI-compatible server at {server.url}", flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
