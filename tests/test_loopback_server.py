"""The loopback OpenAI-compatible server, driven through the official openai SDK."""

import base64
import io
import json

import httpx
import jsonschema
import openai
import pytest
from PIL import Image

from loopback.server import LoopbackServer, LoopbackState, format_duration
from shared.provider import parse_duration
from shared.spending.costs import text_tokens

SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["right", "wrong"]},
        "points": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}},
        "score": {"type": "number", "minimum": 0, "maximum": 4},
    },
    "required": ["verdict", "points", "score"],
    "additionalProperties": False,
}


def data_url(size=(1024, 1024)):
    out = io.BytesIO()
    Image.new("RGB", size, "white").save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def ask(client, url, **extra):
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "mark"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                ],
            }
        ],
        response_format={"type": "json_schema", "json_schema": {"name": "t", "strict": True, "schema": SCHEMA}},
        max_completion_tokens=50,
        **extra,
    )


@pytest.fixture
def own_server():
    """A private server, so what these tests send does not count in the suite's shared stats."""
    with LoopbackServer(state=LoopbackState(rpm=3, tpm=1_000_000)) as server:
        yield server


def test_usage_counts_image_parts_by_the_tile_rule(own_server):
    client = openai.OpenAI(api_key="x", base_url=own_server.url, max_retries=0)
    completion = ask(client, data_url()).parse()
    # 765 image tokens (1024x1024 high) + "mark" (1) + 4 message overhead + the response schema,
    # which OpenAI also counts as prompt
    schema_tokens = text_tokens(json.dumps(SCHEMA, sort_keys=True, separators=(",", ":")))
    assert completion.usage.prompt_tokens == 770 + schema_tokens
    jsonschema.validate(json.loads(completion.choices[0].message.content), SCHEMA)


def test_rate_limit_headers_and_429_body(own_server):
    client = openai.OpenAI(api_key="x", base_url=own_server.url, max_retries=0)
    raw = ask(client, data_url())
    assert raw.headers["x-ratelimit-limit-requests"] == "3"
    assert raw.headers["x-ratelimit-remaining-requests"] == "2"
    assert parse_duration(raw.headers["x-ratelimit-reset-requests"]) == pytest.approx(20, abs=1)
    ask(client, data_url())
    ask(client, data_url())
    with pytest.raises(openai.RateLimitError) as limited:
        ask(client, data_url())
    assert limited.value.code == "rate_limit_exceeded"
    assert 0 < int(limited.value.response.headers["retry-after-ms"]) <= 20_000


def test_injected_faults_come_back_as_the_sdk_errors(own_server):
    base = own_server.url.removesuffix("/v1")
    httpx.post(
        base + "/_loopback/faults",
        json={
            "faults": [
                {"status": 500, "message": "boom"},
                {"status": 429, "type": "insufficient_quota", "code": "insufficient_quota", "message": "no credit"},
            ]
        },
    )
    client = openai.OpenAI(api_key="x", base_url=own_server.url, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        ask(client, data_url())
    with pytest.raises(openai.RateLimitError) as quota:
        ask(client, data_url())
    assert quota.value.code == "insufficient_quota"


def test_base64_pasted_into_text_is_counted(own_server):
    client = openai.OpenAI(api_key="x", base_url=own_server.url, max_retries=0)
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "here is the page: " + data_url()}],
    )
    stats = httpx.get(own_server.url.removesuffix("/v1") + "/_loopback/stats").json()
    assert stats["base64_in_text"] == 1 and stats["base64_chars_in_text"] > 1000


def test_long_static_prefixes_are_reported_as_cached_the_second_time(own_server):
    client = openai.OpenAI(api_key="x", base_url=own_server.url, max_retries=0)
    prefix = "answer key " * 600
    cached = []
    for _ in range(2):
        completion = client.chat.completions.create(
            model="gpt-4o",
            prompt_cache_key="exam-1",
            messages=[
                {"role": "system", "content": prefix},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url((64, 64))}}]},
            ],
        )
        cached.append(completion.usage.prompt_tokens_details.cached_tokens)
    assert cached[0] == 0 and cached[1] >= 1024 and cached[1] % 128 == 0


def test_only_loopback_image_urls_are_fetched(own_server):
    client = openai.OpenAI(api_key="x", base_url=own_server.url, max_retries=0)
    with pytest.raises(openai.BadRequestError):
        ask(client, "http://192.0.2.1/page.jpg")


@pytest.mark.parametrize(("seconds", "text"), [(0.12, "120ms"), (1, "1s"), (360, "6m0s")])
def test_reset_durations_use_openai_format(seconds, text):
    assert format_duration(seconds) == text
