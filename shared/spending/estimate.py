"""Estimates: tokens and dollars per page, per paper and per class, for several models side by side
and for every lane, before a single call is made; and what the ledger has measured to correct them.

A paper's call costs its text (instructions, answer key, vocabulary, the reply's schema), its images
as markq sends them (normalised: cropped to the writing and scaled to the fewest tiles or patches
that keep it legible), and its reply. The lanes price the same call differently:

- vision: one call a paper at the standard rate; the static prefix is cached after the first paper.
  With the exam's blank paper, one image of every question's crop instead of the pages where that
  is fewer tokens (as on the economy and flex lanes).
- economy: the same call through the Batch API, half of every price.
- flex: the same call at the Flex tier (models that have one), half of every price.
- cascade: the offline reader first; a call only for a paper with unsure questions, asking only
  those, with their crops instead of the pages when that costs fewer tokens.

Two numbers are not known before marking: how long the model's replies are (tokens a question) and
what share of questions the offline reader leaves unsure. Both start from the priors below and are
replaced by measurements (`Calibration`) from the school's ledger and the exam's own papers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from shared.spending.costs import (
    PATCH_BUDGET,
    call_cost,
    image_patches,
    image_tokens,
    model_card,
    prices_taken,
    sheet_tokens,
)

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini")
# The text of a request without an exam to build it from. Measured with the o200k_base tokenizer
# on markq's own requests for a grade 3 mathematics exam: 1014 tokens at 4 questions, 1368 at 10,
# 1958 at 20, 3138 at 40. With an exam, its own request is counted instead (`PromptShape`).
PREFIX_TOKENS_BASE = 780
PREFIX_TOKENS_PER_QUESTION = 59
# Priors, replaced by the ledger's measurements as soon as it has any (`Calibration`): the reply's
# tokens a question asked, and the share of questions the offline reader leaves to the model
# (bench.offline: about half on layouts it has not seen).
OUTPUT_TOKENS_PER_QUESTION = 90
UNSURE_SHARE = 0.5
CACHE_MIN_TOKENS = 1024
CACHE_INCREMENT = 128
LANES = ("vision", "economy", "flex", "cascade")


@dataclass(frozen=True)
class PageSize:
    name: str
    width: int
    height: int
    # The size markq sends this page at, per model, when the page itself was seen (normalised);
    # without it the page is priced as the provider would scale it.
    sent: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)
    # Whether the writing stays legible at that size, per model (None: not known from a size alone).
    legible: dict[str, bool] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PromptShape:
    """The text of one paper's request: all of it, the part a provider caches (the text before the
    first image, and the reply's schema), and what one question adds to it."""

    text_tokens: int
    cacheable_tokens: int
    per_question: float

    @staticmethod
    def assumed(questions: int) -> PromptShape:
        text = PREFIX_TOKENS_BASE + PREFIX_TOKENS_PER_QUESTION * questions
        return PromptShape(text, text - 12, PREFIX_TOKENS_PER_QUESTION)


@dataclass(frozen=True)
class Calibration:
    """What has been measured so far, each with where it came from."""

    output_per_question: float = OUTPUT_TOKENS_PER_QUESTION
    unsure_share: float = UNSURE_SHARE
    sources: dict[str, str] = field(
        default_factory=lambda: {"output_per_question": "assumed", "unsure_share": "assumed"}
    )


@dataclass(frozen=True)
class LaneCost:
    """One paper on one lane: the expected tokens of its call(s) and their dollars."""

    calls: float  # calls a paper (the cascade makes none for a paper it is sure of)
    prompt_tokens: int
    cached_tokens: int  # of the prompt, for every paper after the first
    output_tokens: int
    first_usd: float
    later_usd: float

    def class_usd(self, papers: int) -> float:
        return self.first_usd + self.later_usd * max(0, papers - 1)

    def as_dict(self, papers: int) -> dict[str, Any]:
        return {
            "calls_per_paper": round(self.calls, 3),
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "output_tokens": self.output_tokens,
            "paper_usd": round(self.first_usd, 6),
            "paper_usd_with_cached_prefix": round(self.later_usd, 6),
            "class_usd": round(self.class_usd(papers), 6),
        }


def cached_part(cacheable: int) -> int:
    """The prompt tokens a provider serves from its cache once it has seen the prefix."""
    return cacheable // CACHE_INCREMENT * CACHE_INCREMENT if cacheable >= CACHE_MIN_TOKENS else 0


def page_tokens(model: str, page: PageSize, detail: str) -> int:
    width, height = page.sent.get(model, (page.width, page.height))
    return image_tokens(model, width, height, detail)


def crop_sheet_tokens(model: str, detail: str, crop: tuple[int, int] | None, questions: float) -> int | None:
    """The tokens of one image of `questions` crops stacked one under another, each `crop` in size."""
    if crop is None or questions <= 0:
        return None
    width, height = crop
    return sheet_tokens(model, width, max(1, math.ceil(height * questions)), detail)


def asked_call(
    shape: PromptShape, questions: int, asked: float, images: int, calibration: Calibration
) -> tuple[int, int]:
    """The prompt and output tokens of the cascade's call asking `asked` of the exam's `questions`
    with `images` tokens of pictures (their crops, or the pages)."""
    text = round(shape.text_tokens - shape.per_question * (questions - asked))
    return text + images, round(calibration.output_per_question * asked)


def lane_costs(
    model: str,
    pages: list[PageSize],
    shape: PromptShape,
    questions: int,
    detail: str,
    calibration: Calibration,
    crop: tuple[int, int] | None = None,
    sheet: tuple[int, int] | None = None,
) -> dict[str, LaneCost]:
    """What one paper costs on each lane this model can take. `crop`: one question's crop in the
    cascade's image; `sheet`: the image of every question's crop the vision lanes send instead of
    the pages where that is fewer tokens (an exam with a blank paper)."""
    images = sum(page_tokens(model, page, detail) for page in pages)
    if sheet is not None:
        images = min(images, sheet_tokens(model, sheet[0], sheet[1], detail))
    prompt = shape.text_tokens + images
    output = round(calibration.output_per_question * questions)
    cached = cached_part(shape.cacheable_tokens)

    def priced(prompt: int, cached: int, output: int, *, batch: bool = False, calls: float = 1.0) -> LaneCost:
        first = float(call_cost(model, prompt, 0, output, batch=batch)) * calls
        later = float(call_cost(model, prompt, cached, output, batch=batch)) * calls
        return LaneCost(calls, prompt, cached, output, first, later)

    lanes = {
        "vision": priced(prompt, cached, output),
        "economy": priced(prompt, cached, output, batch=True),
    }
    if model_card(model).flex:
        lanes["flex"] = priced(prompt, cached, output, batch=True)
    # The cascade: a call for a paper with any unsure question (independent questions), asking the
    # unsure ones only; its smaller key is a prefix of its own, rarely seen twice (never cached).
    share = min(1.0, max(0.0, calibration.unsure_share))
    calls = 1 - (1 - share) ** questions if questions else 0.0
    if calls > 0:
        asked = share * questions / calls
        crops = crop_sheet_tokens(model, detail, crop, asked)
        asked_images = min(images, crops) if crops is not None else images
        prompt, output = asked_call(shape, questions, asked, asked_images, calibration)
        lanes["cascade"] = priced(prompt, 0, output, calls=calls)
    else:
        lanes["cascade"] = LaneCost(0.0, 0, 0, 0, 0.0, 0.0)
    return lanes


def estimate(
    pages: list[PageSize],
    models: list[str] | None = None,
    detail: str = "high",
    class_size: int = 40,
    questions: int = 10,
    *,
    shape: PromptShape | None = None,
    calibration: Calibration | None = None,
    crop: tuple[int, int] | None = None,
    sheets: dict[str, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The pages given are one paper; `sheets`, per model, the image of every question's crop an
    exam with a blank paper sends instead of them where cheaper. Raises UnknownModel or
    UnsupportedDetail."""
    models = list(models or DEFAULT_MODELS)
    shape = shape or PromptShape.assumed(questions)
    calibration = calibration or Calibration()
    result: dict[str, Any] = {
        "prices_taken": prices_taken(),
        "detail": detail,
        "class_size": class_size,
        "assumptions": {
            "questions": questions,
            "prefix_tokens": shape.text_tokens,
            "output_tokens_per_question": round(calibration.output_per_question, 1),
            "output_tokens_per_paper": round(calibration.output_per_question * questions),
            "unsure_share": round(calibration.unsure_share, 3),
            "measured": dict(calibration.sources),
            "prefix_cached_after_first_paper": cached_part(shape.cacheable_tokens) > 0,
            "pages_as_sent": all(page.sent for page in pages),
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
            if model in page.sent:
                entry["sent_width"], entry["sent_height"] = page.sent[model]
                entry["sent_tokens"] = page_tokens(model, page, detail)
            if model in page.legible:
                entry["legible"] = page.legible[model]
            if card.scheme == "patch":
                budget = card.original_patch_budget if detail == "original" else PATCH_BUDGET
                entry["patches"] = image_patches(page.width, page.height, budget or PATCH_BUDGET)
                entry["multiplier"] = card.multiplier
            per_page.append(entry)
        sheet = (sheets or {}).get(model)
        lanes = lane_costs(model, pages, shape, questions, detail, calibration, crop, sheet)
        vision = lanes["vision"]
        result["models"][model] = {
            "scheme": card.scheme,
            "flex": card.flex,
            "pages": per_page,
            "crops_instead_of_pages": sheet is not None
            and sheet_tokens(model, sheet[0], sheet[1], detail) < sum(page_tokens(model, p, detail) for p in pages),
            "paper": {
                "image_tokens": vision.prompt_tokens - shape.text_tokens,
                "prompt_tokens": vision.prompt_tokens,
                "output_tokens": vision.output_tokens,
                "cost_usd": vision.first_usd,
                "cost_usd_with_cached_prefix": vision.later_usd,
            },
            "class": {"papers": class_size, "cost_usd": vision.class_usd(class_size)},
            "lanes": {name: lane.as_dict(class_size) for name, lane in lanes.items()},
        }
    return result


def seen_page(name: str, data: bytes, models: list[str], detail: str, max_pixels: int) -> PageSize:
    """A page file priced as markq would send it to each model, with its legibility there.
    Raises PageRejected (shared.images) for a file that is not a page."""
    import io

    from shared.images import inspect_page, normalise_page

    header = inspect_page(io.BytesIO(data), max_pixels)
    width, height = header.width, header.height
    sent, legible = {}, {}
    for model in models:
        if detail == "original":
            continue  # markq sends normalised pages; "original" is priced as given
        normalised = normalise_page(data, model, detail)
        sent[model] = (normalised.width, normalised.height)
        legible[model] = normalised.legible(model)
    return PageSize(name, width, height, sent, legible)


def legible_everywhere(pages: list[PageSize], model: str) -> bool | None:
    """Whether every page stays legible as sent to `model` (None: not known from sizes alone)."""
    known = [page.legible[model] for page in pages if model in page.legible]
    return all(known) if known and len(known) == len(pages) else None


def recommend(result: dict[str, Any], pages: list[PageSize], lanes: tuple[str, ...] = LANES) -> dict[str, Any] | None:
    """The cheapest (model, lane) for the class whose pages stay legible, among those estimated;
    None when legibility is not known (sizes without page files) or nothing is legible."""
    best: dict[str, Any] | None = None
    for model, entry in result["models"].items():
        if not legible_everywhere(pages, model):
            continue
        for lane, cost in entry["lanes"].items():
            if lane not in lanes:
                continue
            if best is None or cost["class_usd"] < best["class_usd"]:
                best = {"model": model, "detail": result["detail"], "lane": lane, "class_usd": cost["class_usd"]}
    return best


def parse_size(text: str) -> tuple[int, int]:
    """'1024x768' -> (1024, 768)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not int(width) or not int(height):
        raise ValueError(f"size must look like 1024x768, not {text!r}")
    if math.prod((int(width), int(height))) > 400_000_000:
        raise ValueError(f"size {text} is not a page")
    return int(width), int(height)
