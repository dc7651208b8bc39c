"""Runs last (by name): across the whole suite, images reached the provider only as image parts."""

from tests.helpers import loopback_call


def test_no_base64_was_pasted_into_text_across_the_suite(loopback):
    stats = loopback_call(loopback, "/_loopback/stats")
    assert stats["base64_in_text"] == 0
    assert stats["base64_chars_in_text"] == 0
    assert stats["image_parts_url"] + stats["image_parts_data"] > 0  # pages did arrive, as image parts
    assert stats["schema_violations"] == 0
