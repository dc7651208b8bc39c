"""Tokens per page sent naively (the original at high detail) and by markq, per model family,
with legibility measured by OCR, and the dollars for a class.

    python -m bench.tokens

Legibility: RapidOCR (PP-OCR models shipped in its package) reads the original page and the page
markq sends; the ratio is the share of the characters read on the original that are read again.
For reference, "naive legibility" is the same ratio for the original as the provider itself would
shrink it (a phone photo arrives sideways: providers do not apply EXIF orientation).
Target: markq at most 0.6 of naive tokens on the tile scheme, legibility at least 0.98.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections import Counter

from PIL import Image, ImageOps

from bench.pages import exam_sheet, jpeg, phone_photo
from shared import ocr
from shared.images import normalise_page
from shared.spending.costs import (
    call_cost,
    image_tokens,
    model_card,
    patch_scheme_size,
    tile_scheme_size,
)
from shared.spending.estimate import (
    OUTPUT_TOKENS_PER_QUESTION,
    PREFIX_TOKENS_BASE,
    PREFIX_TOKENS_PER_QUESTION,
)

FAMILIES = ["gpt-4o", "gpt-5", "gpt-4o-mini", "gpt-4.1-mini", "o4-mini"]
CLASS_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1-mini"]


SHEETS_PER_KIND = 3  # OCR recall on one sheet moves by a percent or two; pool several


def pages() -> dict[str, list[bytes]]:
    seeds = range(SHEETS_PER_KIND)
    return {
        "scan 1900x1900": [jpeg(exam_sheet(1900, 1900, seed=10 + n)) for n in seeds],
        "A4 150 dpi": [jpeg(exam_sheet(1240, 1754, seed=20 + n)) for n in seeds],
        "A4 300 dpi": [jpeg(exam_sheet(2480, 3508, seed=30 + n)) for n in seeds],
        "phone 4032x3024 EXIF": [phone_photo(seed=40 + n) for n in seeds],
    }


class Reader:
    """The offline reader's OCR engine (shared.ocr), reading a whole page's text."""

    def text(self, data: bytes) -> str:
        with Image.open(io.BytesIO(data)) as image:
            lines = ocr.read_lines(ImageOps.exif_transpose(image).convert("RGB"))
        lines.sort(key=lambda line: (round(line.quad[0][1] / 20), line.quad[0][0]))
        return "".join("".join(line.text.split()) for line in lines)


def provider_view(data: bytes, model: str) -> bytes:
    """The original as the provider itself would shrink it at high detail (the naive request)."""
    with Image.open(io.BytesIO(data)) as image:
        w, h = image.size  # sent as stored: the provider does not apply EXIF orientation
        size = patch_scheme_size(w, h) if model_card(model).scheme == "patch" else tile_scheme_size(w, h)
        return jpeg(image.convert("RGB").resize(size, Image.Resampling.LANCZOS), None)


def recalled(original: str, sent: str) -> int:
    """Characters read on the original that are read again, order-free: OCR may order lines
    differently at another scale."""
    return sum((Counter(original) & Counter(sent)).values())


def main() -> int:
    started = time.perf_counter()
    reader = Reader()
    rows = []
    for name, sheets in pages().items():
        with Image.open(io.BytesIO(sheets[0])) as image:
            width, height = image.size
        originals = [reader.text(data) for data in sheets]
        chars = sum(len(text) for text in originals)
        row = {"page": name, "size": [width, height], "sheets": len(sheets), "ocr_chars": chars, "models": {}}
        for scheme_model in ("gpt-4o", "gpt-4.1-mini"):  # one optimised page per scheme
            sent = [normalise_page(data, scheme_model, "high") for data in sheets]
            ratio = sum(recalled(o, reader.text(s.jpeg)) for o, s in zip(originals, sent)) / chars
            as_provider_sees = [provider_view(data, scheme_model) for data in sheets]
            naive_ratio = sum(recalled(o, reader.text(v)) for o, v in zip(originals, as_provider_sees)) / chars
            for model in FAMILIES:
                if model_card(model).scheme != model_card(scheme_model).scheme:
                    continue
                naive = sum(image_tokens(model, width, height, "high") for _ in sheets) // len(sheets)
                markq = sum(image_tokens(model, s.width, s.height, "high") for s in sent) // len(sheets)
                row["models"][model] = {
                    "naive": naive,
                    "markq": markq,
                    "ratio": round(markq / naive, 3),
                    "sent": [sent[0].width, sent[0].height],
                    "legibility": round(ratio, 4),
                    "naive_legibility": round(naive_ratio, 4),
                }
        rows.append(row)
        print(f"{name:22} {width}x{height}  {len(sheets)} sheets, OCR chars on the originals: {chars}")
        for model, figures in row["models"].items():
            print(
                f"    {model:13} naive {figures['naive']:>6}  markq {figures['markq']:>6}  "
                f"ratio {figures['ratio']:.3f}  sent {figures['sent'][0]}x{figures['sent'][1]}  "
                f"legibility {figures['legibility']:.4f} (naive {figures['naive_legibility']:.4f})"
            )

    by_family = {}
    for model in FAMILIES:
        naive = sum(r["models"][model]["naive"] for r in rows)
        markq = sum(r["models"][model]["markq"] for r in rows)
        by_family[model] = {
            "scheme": model_card(model).scheme,
            "naive_tokens": naive,
            "markq_tokens": markq,
            "ratio": round(markq / naive, 3),
        }
    tile_ratio = max(v["ratio"] for v in by_family.values() if v["scheme"] == "tile")
    min_legibility = min(f["legibility"] for r in rows for f in r["models"].values())

    # A class of 40 two-page papers (A4 at 150 dpi), 12 questions, prefix cached after the first.
    questions, papers = len(__import__("bench.pages", fromlist=["QUESTIONS"]).QUESTIONS), 40
    prefix = PREFIX_TOKENS_BASE + PREFIX_TOKENS_PER_QUESTION * questions
    output = OUTPUT_TOKENS_PER_QUESTION * questions
    a4 = next(r for r in rows if r["page"] == "A4 150 dpi")
    class_cost = {}
    for model in CLASS_MODELS:
        cost = {}
        for way in ("naive", "markq"):
            images = 2 * a4["models"][model][way]
            cached = prefix // 128 * 128 if prefix >= 1024 else 0
            first = call_cost(model, images + prefix, 0, output)
            later = call_cost(model, images + prefix, cached, output)
            cost[way] = float(first + later * (papers - 1))
        class_cost[model] = {
            "naive_usd": round(cost["naive"], 4),
            "markq_usd": round(cost["markq"], 4),
            "ratio": round(cost["markq"] / cost["naive"], 3),
        }
    print("\nper model family (all pages):")
    for model, figures in by_family.items():
        print(
            f"    {model:13} {figures['scheme']:5} naive {figures['naive_tokens']:>7}  "
            f"markq {figures['markq_tokens']:>7}  ratio {figures['ratio']:.3f}"
        )
    print("\nclass of 40 two-page papers (A4 150 dpi, 12 questions):")
    for model, figures in class_cost.items():
        print(
            f"    {model:13} naive ${figures['naive_usd']:.4f}  markq ${figures['markq_usd']:.4f}  ratio {figures['ratio']:.3f}"
        )
    verdict = tile_ratio <= 0.6 and min_legibility >= 0.98
    print(
        f"\ntile-scheme ratio {tile_ratio:.3f} (target <= 0.6), min legibility {min_legibility:.4f} "
        f"(target >= 0.98): {'MET' if verdict else 'NOT MET'}  [{time.perf_counter() - started:.1f}s]"
    )
    print(
        json.dumps(
            {
                "tile_scheme_ratio": tile_ratio,
                "min_legibility": min_legibility,
                "target_met": verdict,
                "per_family": by_family,
                "per_page": rows,
                "class_of_40": class_cost,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
