"""The shared limiter on the real Redis."""

import secrets
import threading

import pytest
import redis

from shared.limiter import RateLimiter, TooLargeForLimit


@pytest.fixture
def limiter(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield RateLimiter(client, rpm=60, tpm=6000, prefix=f"test:limiter:{secrets.token_hex(4)}")
    client.close()


def test_requests_and_tokens_are_taken_until_none_are_left(limiter):
    assert limiter.acquire("gpt-4o", 3000) == 0
    assert limiter.acquire("gpt-4o", 3000) == 0
    wait = limiter.acquire("gpt-4o", 3000)  # the token bucket is empty: refills 100 tokens a second
    assert 25 <= wait <= 31


def test_a_request_larger_than_the_limit_can_never_be_sent(limiter):
    with pytest.raises(TooLargeForLimit, match="6000 tokens per minute"):
        limiter.acquire("gpt-4o", 7000)


def test_the_provider_headers_correct_the_limits(limiter):
    limiter.observe(
        "gpt-4o",
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-remaining-tokens": "29000",
        },
    )
    assert limiter.limits("gpt-4o") == (500, 30000)
    assert limiter.acquire("gpt-4o", 100) > 0  # the provider says no request is left right now


def test_after_a_429_every_caller_holds_back(limiter):
    limiter.hold("gpt-4o", 5.0)
    assert 4 < limiter.acquire("gpt-4o", 10) <= 5
    assert limiter.acquire("gpt-4o-mini", 10) == 0  # other models are not held


def test_concurrent_callers_never_take_more_than_the_bucket(limiter):
    granted = []

    def take():
        for _ in range(20):
            if limiter.acquire("gpt-4o", 100) == 0:
                granted.append(1)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 60 <= len(granted) <= 61  # 60 requests a minute, plus what refills in the meantime


def test_unused_output_tokens_come_back(limiter):
    assert limiter.acquire("gpt-4o", 6000) == 0
    limiter.refund("gpt-4o", 3000)
    assert limiter.acquire("gpt-4o", 2900) == 0
