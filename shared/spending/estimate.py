"""Pre-flight estimate: tokens and dollars per page, per paper and per class, for several models
side by side, before a single call is made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shared.spending.costs import (
    PATCH_BUDGET,
    call_cost,
    image_patches,
    image_tokens,
    model_card,
    prices_taken,
)

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini")
# What a paper costs besides its images. The static prefix (instructions, answer key, vocabulary,
# schema) was measured with the o200k_base tokenizer on markq's own requests for a grade 3
# mathematics exam: 1014 tokens at 4 questions, 1368 at 10, 1958 at 20, 3138 at 40. The reply is an
# allowance of 90 tokens per question (verdict, short explanation and correction), not a
# measurement of a real model.
PREFIX_TOKENS_BASE = 780
PREFIX_TOKENS_PER_QUESTION = 59
OUTPUT_TOKENS_PER_QUESTION = 90
CACHE_MIN_TOKENS = 1024


@dataclass(frozen=True)
class PageSize:
    name: str
    width: int
    height: int


def estimate(
    pages: list[PageSize],
    models: list[str] | None = None,
    detail: str = "high",
    class_size: int = 40,
    questions: int = 10,
) -> dict[str, Any]:
    """The pages given are one paper. Raises UnknownModel or UnsupportedDetail."""
    models = list(models or DEFAULT_MODELS)
    prefix = PREFIX_TOKENS_BASE + PREFIX_TOKENS_PER_QUESTION * questions
    output = OUTPUT_TOKENS_PER_QUESTION * questions
    cached = prefix // 128 * 128 if prefix >= CACHE_MIN_TOKENS else 0
    result: dict[str, Any] = {
        "prices_taken": prices_taken(),
        "detail": detail,
        "class_size": class_size,
        "assumptions": {
            "questions": questions,
            "prefix_tokens": prefix,
            "output_tokens_per_paper": output,
            "prefix_cached_after_first_paper": cached > 0,
        },
        "models": {},
    }
    for model in models:
        card = model_card(model)
        per_page = []
        for page in pages:
            tokens = image_tokens(model, page.width, page.height, detail)
            entry: dict[str, Any] = {
                "page": page.name,
                "width": page.width,
                "height": page.height,
                "tokens": tokens,
                "cost_usd": float(call_cost(model, tokens, 0, 0)),
            }
            if card.scheme == "patch":
                budget = card.original_patch_budget if detail == "original" else PATCH_BUDGET
                entry["patches"] = image_patches(page.width, page.height, budget or PATCH_BUDGET)
                entry["multiplier"] = card.multiplier
            per_page.append(entry)
        image_total = sum(p["tokens"] for p in per_page)
        first = call_cost(model, image_total + prefix, 0, output)
        later = call_cost(model, image_total + prefix, cached, output)
        result["models"][model] = {
            "scheme": card.scheme,
            "pages": per_page,
            "paper": {
                "image_tokens": image_total,
                "prompt_tokens": image_total + prefix,
                "output_tokens": output,
                "cost_usd": float(first),
                "cost_usd_with_cached_prefix": float(later),
            },
            "class": {
                "papers": class_size,
                "cost_usd": float(first + later * max(0, class_size - 1)),
            },
        }
    return result


def parse_size(text: str) -> tuple[int, int]:
    """'1024x768' -> (1024, 768)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not int(width) or not int(height):
        raise ValueError(f"size must look like 1024x768, not {text!r}")
    if math.prod((int(width), int(height))) > 400_000_000:
        raise ValueError(f"size {text} is not a page")
    return int(width), int(height)
