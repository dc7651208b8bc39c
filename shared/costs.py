"""Tokens and dollars: image tokens by OpenAI's documented rules, text estimates, prices.

Two image schemes exist. The tile scheme (gpt-4o, gpt-4.1, gpt-5, o1/o3) fits the image in
2048x2048, scales the shortest side down to 768, and charges base + tile tokens per 512px tile.
The patch scheme (the -mini/-nano models, o4-mini) counts 32px patches up to a budget of 1536,
shrinking the image by the documented rule when it has more, times a per-model multiplier.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources

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


class UnknownModel(KeyError):
    pass


@lru_cache(maxsize=1)
def _model_table() -> dict[str, ModelCard]:
    raw = json.loads(resources.files("shared").joinpath("data/models.json").read_text("utf-8"))
    return {
        name: ModelCard(
            name=name,
            scheme=card["scheme"],
            input_per_million=Decimal(str(card["input"])),
            cached_input_per_million=Decimal(str(card["cached_input"])),
            output_per_million=Decimal(str(card["output"])),
            base_tokens=card.get("base_tokens", 0),
            tile_tokens=card.get("tile_tokens", 0),
            multiplier=card.get("multiplier", 1.0),
        )
        for name, card in raw["models"].items()
    }


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


def patch_scheme_size(width: int, height: int) -> tuple[int, int]:
    """The size the patch scheme sees: unchanged within the 1536-patch budget, else shrunk."""
    if math.ceil(width / PATCH) * math.ceil(height / PATCH) <= PATCH_BUDGET:
        return width, height
    shrink = math.sqrt(PATCH * PATCH * PATCH_BUDGET / (width * height))
    width_patches, height_patches = width * shrink / PATCH, height * shrink / PATCH
    shrink *= min(
        math.floor(width_patches) / width_patches, math.floor(height_patches) / height_patches
    )
    return max(1, int(width * shrink)), max(1, int(height * shrink))


def image_patches(width: int, height: int) -> int:
    w, h = patch_scheme_size(width, height)
    return min(PATCH_BUDGET, math.ceil(w / PATCH) * math.ceil(h / PATCH))


def image_tokens(model: str, width: int, height: int, detail: str = "high") -> int:
    """Input tokens one image costs on `model` at `detail` ("low", "high" or "auto")."""
    card = model_card(model)
    if card.scheme == "patch":
        return math.ceil(image_patches(width, height) * card.multiplier)
    if detail == "low":
        return card.base_tokens
    w, h = tile_scheme_size(width, height)
    return card.base_tokens + card.tile_tokens * math.ceil(w / TILE) * math.ceil(h / TILE)


_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


def text_tokens(text: str) -> int:
    """An estimate of text tokens: about one per CJK character and one per four other characters."""
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


def call_cost(model: str, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Decimal:
    """Dollars for one call; cached prompt tokens are priced at the cached rate."""
    card = model_card(model)
    million = Decimal(1_000_000)
    uncached = max(0, prompt_tokens - cached_tokens)
    cost = (
        uncached * card.input_per_million
        + cached_tokens * card.cached_input_per_million
        + completion_tokens * card.output_per_million
    ) / million
    return cost.quantize(Decimal("0.000001"))
