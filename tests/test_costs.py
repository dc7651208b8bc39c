import json
import uuid
from decimal import Decimal

import pytest

from shared.grading.answer_key import AnswerKey
from shared.grading.prompt import PageImage, build_request
from shared.models import Exam
from shared.spending.costs import (
    call_cost,
    image_patches,
    image_tokens,
    model_card,
    sheet_detail,
    sheet_tokens,
    text_tokens,
)


@pytest.mark.parametrize(
    ("model", "width", "height", "detail", "tokens"),
    [
        ("gpt-4o", 1024, 1024, "high", 765),
        ("gpt-4o", 2048, 4096, "high", 1105),
        ("gpt-4o", 4096, 8192, "low", 85),
        ("gpt-4o", 1900, 1900, "high", 765),
        ("gpt-4.1", 1024, 1024, "high", 765),
        ("gpt-4o-mini", 1024, 1024, "high", 2833 + 4 * 5667),
        ("gpt-5", 1024, 1024, "high", 70 + 4 * 140),
        ("o3", 1024, 1024, "high", 75 + 4 * 150),
        ("gpt-4o-2024-08-06", 512, 512, "high", 255),
    ],
)
def test_tile_scheme_matches_the_documented_examples(model, width, height, detail, tokens):
    assert image_tokens(model, width, height, detail) == tokens


@pytest.mark.parametrize(
    ("width", "height", "patches"),
    [(1024, 1024, 1024), (1800, 2400, 1452), (100, 100, 16)],
)
def test_patch_scheme_counts_the_documented_patches(width, height, patches):
    assert image_patches(width, height) == patches


def test_patch_scheme_multiplies_by_the_model_factor():
    assert image_tokens("gpt-4.1-mini", 1800, 2400) == 2353  # ceil(1452 * 1.62)
    assert image_tokens("gpt-4.1-mini", 1024, 1024) == 1659  # the guide's own example
    assert image_tokens("gpt-4.1-nano", 1024, 1024) == 2520  # ceil(1024 * 2.46 = 2519.04)


@pytest.mark.parametrize(
    ("model", "width", "height", "detail", "sent", "tokens"),
    [
        ("gpt-4o", 404, 227, "high", "low", 85),  # within the low-detail square: every pixel, 85 not 255
        ("gpt-4o", 512, 512, "high", "low", 85),
        ("gpt-4o", 513, 200, "high", "high", 425),  # would be shrunk at low detail: sent as asked
        ("gpt-5", 300, 300, "high", "low", 70),
        ("gpt-4.1-mini", 404, 227, "high", "high", image_tokens("gpt-4.1-mini", 404, 227)),  # patches: no saving
        ("gpt-4o", 404, 227, "low", "low", 85),
    ],
)
def test_a_small_sheet_of_crops_goes_at_low_detail_only_where_nothing_is_lost(
    model, width, height, detail, sent, tokens
):
    assert sheet_detail(model, width, height, detail) == sent
    assert sheet_tokens(model, width, height, detail) == tokens


def test_cached_tokens_are_priced_at_the_cached_rate():
    assert model_card("gpt-4o").cached_input_per_million == Decimal("1.25")
    full = call_cost("gpt-4o", 1_000_000, 0, 0)
    cached = call_cost("gpt-4o", 1_000_000, 1_000_000, 0)
    assert (full, cached) == (Decimal("2.500000"), Decimal("1.250000"))


def test_text_tokens_use_the_real_o200k_tokenizer():
    assert text_tokens("hello world") == 2
    assert text_tokens("a <|endoftext|> b") > 3  # counted like any text, not refused


def test_the_fallback_estimate_counts_chinese_characters_as_tokens():
    from shared.spending.costs import estimate_text_tokens

    assert estimate_text_tokens("分数") == 2
    assert estimate_text_tokens("abcdefgh") == 2


def test_blank_environment_values_count_as_unset(monkeypatch):
    from shared.settings import Settings

    monkeypatch.setenv("OPENAI_BASE_URL", "")
    monkeypatch.setenv("MARKQ_S3_PUBLIC_ENDPOINT_URL", " ")
    settings = Settings()
    assert settings.openai_base_url is None and settings.s3_public_endpoint_url is None


def _request(questions: list[dict], caption: str | None) -> dict:
    exam = Exam(id=uuid.UUID(int=1), subject="math", grade=3, language="zh", rubric="", model="gpt-4o")
    exam.image_detail = "high"
    key = AnswerKey.model_validate({"questions": questions})
    return build_request(exam, key, [], [PageImage("https://storage.example/p.jpg")], 1000, caption=caption)


def test_a_request_says_nothing_its_reader_does_not_need():
    questions = [
        {"id": "1.1", "answer": "26", "points": 2, "section": "一、计算题"},
        {"id": "1.2", "answer": "5", "points": 1.5, "section": "一、计算题"},
    ]
    pages, crops = _request(questions, None), _request(questions, "crops")
    page_key = json.loads(pages["messages"][1]["content"])["answer_key"]["questions"]
    crop_key = json.loads(crops["messages"][1]["content"])["answer_key"]["questions"]
    assert [q["section"] for q in page_key] == ["一、计算题"] * 2  # where to look on the page
    assert all("section" not in q for q in crop_key)  # a crop is labelled with its number
    assert [q["points"] for q in crop_key] == [2, 1.5] and '"points":2}' in crops["messages"][1]["content"]
    assert text_tokens(crops["messages"][1]["content"]) < text_tokens(pages["messages"][1]["content"])
    assert "solve the question yourself" not in pages["messages"][0]["content"]  # every answer is given
    unanswered = _request([*questions, {"id": "2", "points": 3, "prompt": "12×4="}], None)
    assert "solve the question yourself" in unanswered["messages"][0]["content"]
    assert unanswered["messages"][0]["content"].index("solve") < unanswered["messages"][0]["content"].index("Award")
