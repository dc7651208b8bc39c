"""Tokens and dollars: image tokens by OpenAI's documented rules, text estimates, prices.

Two image schemes exist. The tile scheme (gpt-4o, gpt-4.1, gpt-5, o1/o3) fits the image in
2048x2048, scales the shortest side down to 768, and charges base + tile tokens per 512px tile.
The patch scheme (the -mini/-nano models, o4-mini) counts 32px patches up to a budget of 1536,
shrinking the image by the documented rule when it has more, times a per-model multiplier.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

TILE_FIT = 2048
TILE_SHORT_SIDE = 768
TILE = 512
PATCH = 32
PATCH_BUDGET = 1536


@dataclass(frozen=True)
class ModelCard:
    name: str
    scheme: str
    input_per_million: Decimal
    cached_input_per_million: Decimal
    output_per_million: Decimal
    base_tokens: int = 0
    tile_tokens: int = 0
    multiplier: float = 1.0
    # Models with `detail: "original"` count 32px patches up to this budget, unshrunk below it.
    original_patch_budget: int | None = None
    # The model can be called at the Flex tier (service_tier "flex", priced as the Batch API).
    flex: bool = False


class UnknownModel(KeyError):
    pass


class UnsupportedDetail(ValueError):
    pass


def _load_models(override: str | None) -> tuple[str, dict[str, ModelCard]]:
    raw = json.loads(resources.files("shared").joinpath("data/models.json").read_text("utf-8"))
    taken = raw["prices_taken"]
    cards = dict(raw["models"])
    if override:
        extra = json.loads(Path(override).read_text("utf-8"))
        cards.update(extra.get("models", {}))
        taken = extra.get("prices_taken", taken)
    return taken, {
        name: ModelCard(
            name=name,
            scheme=card["scheme"],
            input_per_million=Decimal(str(card["input"])),
            cached_input_per_million=Decimal(str(card["cached_input"])),
            output_per_million=Decimal(str(card["output"])),
            base_tokens=card.get("base_tokens", 0),
            tile_tokens=card.get("tile_tokens", 0),
            multiplier=card.get("multiplier", 1.0),
            original_patch_budget=card.get("original_patch_budget"),
            flex=bool(card.get("flex", False)),
        )
        for name, card in cards.items()
    }


@lru_cache(maxsize=4)
def _models_from(override: str | None) -> tuple[str, dict[str, ModelCard]]:
    return _load_models(override)


def _override() -> str | None:
    from shared.settings import get_settings

    path = get_settings().models_file
    return str(path) if path else None


def _model_table() -> dict[str, ModelCard]:
    return _models_from(_override())[1]


def prices_taken() -> str:
    """The date the prices were taken (from the packaged file, or the override file)."""
    return _models_from(_override())[0]


def model_card(model: str) -> ModelCard:
    """The card for `model`, matching dated snapshots (gpt-4o-2024-08-06) to their family."""
    table = _model_table()
    if model in table:
        return table[model]
    for name in sorted(table, key=len, reverse=True):
        if model.startswith(name + "-"):
            return table[name]
    raise UnknownModel(model)


def known_models() -> list[str]:
    return sorted(_model_table())


def tile_scheme_size(width: int, height: int) -> tuple[int, int]:
    """The size the tile scheme sees at high detail: fit in 2048 square, shortest side <= 768."""
    scale = min(1.0, TILE_FIT / width, TILE_FIT / height)
    width, height = width * scale, height * scale
    scale = min(1.0, TILE_SHORT_SIDE / min(width, height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def patch_scheme_size(width: int, height: int, budget: int = PATCH_BUDGET) -> tuple[int, int]:
    """The size the patch scheme sees: unchanged within the patch budget, else shrunk."""
    if math.ceil(width / PATCH) * math.ceil(height / PATCH) <= budget:
        return width, height
    shrink = math.sqrt(PATCH * PATCH * budget / (width * height))
    width_patches, height_patches = width * shrink / PATCH, height * shrink / PATCH
    shrink *= min(math.floor(width_patches) / width_patches, math.floor(height_patches) / height_patches)
    return max(1, int(width * shrink)), max(1, int(height * shrink))


def image_patches(width: int, height: int, budget: int = PATCH_BUDGET) -> int:
    w, h = patch_scheme_size(width, height, budget)
    return min(budget, math.ceil(w / PATCH) * math.ceil(h / PATCH))


def image_tokens(model: str, width: int, height: int, detail: str = "high") -> int:
    """Input tokens one image costs on `model` at `detail`: "low", "high", "auto" (counted as
    high, the most it can cost) or "original" (only models that have it)."""
    card = model_card(model)
    if detail == "original":
        if card.original_patch_budget is None:
            raise UnsupportedDetail(f"{model} has no 'original' detail")
        patches = image_patches(width, height, card.original_patch_budget)
        return math.ceil(patches * card.multiplier)
    if detail not in {"low", "high", "auto"}:
        raise UnsupportedDetail(f"detail must be low, high, auto or original, not {detail!r}")
    if card.scheme == "patch":
        return math.ceil(image_patches(width, height) * card.multiplier)
    if detail == "low":
        return card.base_tokens
    w, h = tile_scheme_size(width, height)
    return card.base_tokens + card.tile_tokens * math.ceil(w / TILE) * math.ceil(h / TILE)


LOW_DETAIL_SIDE = 512  # "low" detail: the model receives the image within a 512 px square


def sheet_detail(model: str, width: int, height: int, detail: str) -> str:
    """The detail to send an image of crops at: "low" where the image fits the low-detail square
    whole, so the model receives every pixel of it either way, and that is fewer tokens (the tile
    models: 85 instead of 85 + 170 a tile); otherwise `detail`. Pages are never sent this way: a
    page is always larger than the square."""
    if detail == "low" or max(width, height) > LOW_DETAIL_SIDE:
        return detail
    cheaper = image_tokens(model, width, height, "low") < image_tokens(model, width, height, detail)
    return "low" if cheaper else detail


def sheet_tokens(model: str, width: int, height: int, detail: str) -> int:
    """Input tokens of an image of crops, sent at its sheet_detail."""
    return image_tokens(model, width, height, sheet_detail(model, width, height, detail))


def sheet_cheaper(model: str, detail: str, sheet: tuple[int, int], pages: list[tuple[int, int]]) -> bool:
    """Whether an image of crops (its size), sent at its sheet_detail, is fewer input tokens than
    the pages (their sizes as sent) at `detail`."""
    return sheet_tokens(model, *sheet, detail) < sum(image_tokens(model, w, h, detail) for w, h in pages)


_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


@lru_cache(maxsize=1)
def _o200k() -> Any:
    """OpenAI's o200k_base tokenizer (every model in the price file uses it), from bpe-openai,
    which carries its tables in the package; None where it is not installed."""
    try:
        import bpe_openai
    except ImportError:
        return None
    try:
        return bpe_openai.get_encoding("o200k_base")
    except Exception:
        logging.getLogger(__name__).warning("o200k_base did not load; text tokens are estimated", exc_info=True)
        return None


def estimate_text_tokens(text: str) -> int:
    """A tokenizer-free estimate: about one token per CJK character, one per four other characters."""
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


def text_tokens(text: str) -> int:
    """Text tokens as OpenAI counts them when the tokenizer is installed, else an estimate.
    encode_ordinary: text that looks like a special token is counted, never refused."""
    encoding = _o200k()
    return len(encoding.encode_ordinary(text)) if encoding is not None else estimate_text_tokens(text)


BATCH_DISCOUNT = Decimal("0.5")  # the Batch API and the Flex tier cost half, input and output alike


def call_cost(
    model: str, prompt_tokens: int, cached_tokens: int, completion_tokens: int, batch: bool = False
) -> Decimal:
    """Dollars for one call; cached prompt tokens are priced at the cached rate, and a call made
    through the Batch API or at the Flex tier (`batch`) at half of everything."""
    card = model_card(model)
    million = Decimal(1_000_000) / (BATCH_DISCOUNT if batch else Decimal(1))
    uncached = max(0, prompt_tokens - cached_tokens)
    cost = (
        uncached * card.input_per_million
        + cached_tokens * card.cached_input_per_million
        + completion_tokens * card.output_per_million
    ) / million
    return cost.quantize(Decimal("0.000001"))
