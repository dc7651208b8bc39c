import pytest

from shared.provider import parse_duration, retry_after_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("120ms", 0.12), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("0.5s", 0.5)],
)
def test_reset_header_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5", "1x"])
def test_unparseable_durations_are_none(text):
    assert parse_duration(text) is None


def test_retry_after_prefers_milliseconds_then_seconds_then_resets():
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "6m0s"}) == 360.0
    assert retry_after_seconds({}, default=7.0) == 7.0
