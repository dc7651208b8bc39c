"""The one place that talks to the vision provider (OpenAI or any OpenAI-compatible server).

The SDK's own retries are off (`max_retries=0`): retrying is the Celery task's job, with the
attempt count kept in SQL, so a call is never retried twice over (once by the SDK, once by us).
Errors come out classified, so the task knows what to retry and what never to retry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import openai


class ProviderError(Exception):
    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


class RateLimited(ProviderError):
    """429 with a wait: try again after `retry_after` seconds."""

    def __init__(
        self, reason: str, retry_after: float, request_id: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(reason, request_id)
        self.retry_after = retry_after
        self.headers = dict(headers or {})


class FlexUnavailable(ProviderError):
    """429 "resource unavailable" at the Flex tier: no capacity now, nothing billed; ask again later
    (or at the standard tier)."""

    def __init__(self, reason: str, retry_after: float, request_id: str | None = None) -> None:
        super().__init__(reason, request_id)
        self.retry_after = retry_after


class QuotaExhausted(ProviderError):
    """The account has no credit left; retrying cannot help until someone pays."""


class KeyRefused(ProviderError):
    """401/403: the server's provider key was refused (rotated, revoked, or without access to the
    model). Every call would fail the same way until an admin sets a working key."""


# Never the provider's own text: a 401 quotes part of the key it refused.
KEY_REFUSED = (
    "the server's provider key was refused (HTTP {status}); an admin must set a working OPENAI_API_KEY "
    "and restart the workers, then resume the exam"
)


class RequestRejected(ProviderError):
    """The provider refused this request (4xx); the same request will fail again."""


class ProviderUnavailable(ProviderError):
    """5xx, timeout or connection failure: worth trying again later."""


class ProviderTimedOut(ProviderUnavailable):
    """The request was sent and no answer came in time: the provider may have answered, and billed."""


@dataclass(frozen=True)
class ProviderReply:
    content: str
    model: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    request_id: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float | None = None  # how long the live call took (None: from a batch)
    # The tier the provider says it served the call at ("default", "flex", ...); None: not said.
    service_tier: str | None = None


# OpenAI's advice for the Flex tier, which queues work: a 15-minute timeout.
FLEX_TIMEOUT_SECONDS = 900.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """Seconds in an OpenAI reset header: '1s', '120ms', '6m0s', '1h2m3.5s'."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    unit_seconds = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * unit_seconds[u] for n, u in parts)


def retry_after_seconds(headers: Mapping[str, str], default: float = 1.0) -> float:
    """How long the provider asks us to wait, from retry-after-ms, retry-after or reset headers."""
    if (value := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
                return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
            except (TypeError, ValueError):
                pass
    resets = [
        parse_duration(headers[name])
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if name in headers
    ]
    resets = [r for r in resets if r is not None]
    return max(resets) if resets else default


class VisionProvider:
    """Chat completions now, or through the Batch API (JSONL via the Files API) at half price."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        sdk_retries: int = 0,
        flex_timeout: float = FLEX_TIMEOUT_SECONDS,
    ) -> None:
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=sdk_retries)
        self.flex_timeout = flex_timeout

    def complete(self, request: dict[str, Any]) -> ProviderReply:
        """Make one chat completion call; raise a ProviderError subclass on failure. A call at the
        Flex tier waits up to `flex_timeout` (the Flex tier queues work; OpenAI advises 15 minutes)."""
        started = time.perf_counter()
        flex = request.get("service_tier") == "flex"
        client = self.client.with_options(timeout=self.flex_timeout) if flex else self.client
        try:
            raw = client.chat.completions.with_raw_response.create(**request)
        except openai.RateLimitError as exc:
            request_id = exc.response.headers.get("x-request-id")
            if exc.code == "insufficient_quota" or _error_type(exc) == "insufficient_quota":
                raise QuotaExhausted(f"provider quota exhausted: {exc.message}", request_id) from exc
            if flex and exc.code != "rate_limit_exceeded":
                raise FlexUnavailable(
                    f"the Flex tier has no capacity now: {exc.message}",
                    retry_after_seconds(exc.response.headers, default=0.0),
                    request_id,
                ) from exc
            raise RateLimited(
                f"rate limited: {exc.message}",
                retry_after_seconds(exc.response.headers),
                request_id,
                exc.response.headers,
            ) from exc
        except openai.APITimeoutError as exc:
            raise ProviderTimedOut(f"provider did not answer in time: {exc}") from exc
        except openai.APIConnectionError as exc:
            raise ProviderUnavailable(f"provider unreachable: {exc}") from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise KeyRefused(
                KEY_REFUSED.format(status=exc.status_code), exc.response.headers.get("x-request-id")
            ) from None
        except openai.APIStatusError as exc:
            request_id = exc.response.headers.get("x-request-id")
            if exc.status_code >= 500:
                raise ProviderUnavailable(f"provider error {exc.status_code}: {exc.message}", request_id) from exc
            raise RequestRejected(
                f"provider refused the request ({exc.status_code}): {exc.message}", request_id
            ) from exc
        reply = _reply(raw.parse(), raw.headers.get("x-request-id"), dict(raw.headers))
        return replace(reply, seconds=round(time.perf_counter() - started, 3))


def _reply(completion: Any, request_id: str | None, headers: Mapping[str, str] | None = None) -> ProviderReply:
    """The reply in a chat completion, live or from a batch; a refusal is a RequestRejected."""
    usage = completion.usage
    cached = 0
    if usage is not None and usage.prompt_tokens_details is not None:
        cached = usage.prompt_tokens_details.cached_tokens or 0
    message = completion.choices[0].message
    if message.refusal:
        raise RequestRejected(f"model refused: {message.refusal}", request_id)
    return ProviderReply(
        content=message.content or "",
        model=completion.model,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        cached_tokens=cached,
        completion_tokens=usage.completion_tokens if usage else 0,
        request_id=request_id,
        headers=dict(headers or {}),
        service_tier=getattr(completion, "service_tier", None),
    )


def reply_from_completion(body: Mapping[str, Any], request_id: str | None = None) -> ProviderReply:
    """A ProviderReply from a chat completion body (a Batch API output line's response body)."""
    return _reply(openai.types.chat.ChatCompletion.model_validate(body), request_id)


@dataclass(frozen=True)
class BatchState:
    status: str
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None


def _error_type(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error.get("type")
    return None


def _batch_call(call: Any) -> Any:
    try:
        return call()
    except (openai.APITimeoutError, openai.APIConnectionError) as exc:
        raise ProviderUnavailable(f"provider unreachable: {exc}") from exc
    except openai.APIStatusError as exc:
        if exc.status_code >= 500 or exc.status_code == 429:
            raise ProviderUnavailable(f"provider error {exc.status_code}: {exc.message}") from exc
        raise RequestRejected(f"provider refused ({exc.status_code}): {exc.message}") from exc


def submit_batch(provider: VisionProvider, lines: list[dict[str, Any]]) -> tuple[str, str]:
    """Upload the JSONL and create the batch; returns (batch id, input file id)."""
    import json

    data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
    upload = _batch_call(lambda: provider.client.files.create(file=("markq-batch.jsonl", data), purpose="batch"))
    batch = _batch_call(
        lambda: provider.client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    )
    return batch.id, upload.id


def batch_state(provider: VisionProvider, batch_id: str) -> BatchState:
    batch = _batch_call(lambda: provider.client.batches.retrieve(batch_id))
    counts = batch.request_counts
    return BatchState(
        batch.status,
        counts.total if counts else 0,
        counts.completed if counts else 0,
        counts.failed if counts else 0,
        batch.output_file_id,
        batch.error_file_id,
    )


def file_lines(provider: VisionProvider, file_id: str | None) -> list[dict[str, Any]]:
    import json

    if not file_id:
        return []
    text = _batch_call(lambda: provider.client.files.content(file_id).text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]
