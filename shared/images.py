"""Page images: check uploads cheaply, and normalise pages for the vision model with Pillow."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import (
    Image,
    ImageChops,
    ImageFilter,
    ImageMath,
    ImageOps,
    UnidentifiedImageError,
)
from pillow_heif import register_heif_opener

from shared.refusals import RefusalKind
from shared.spending.costs import model_card, patch_scheme_size, tile_scheme_size

register_heif_opener()  # phones save HEIC; Pillow reads it through pillow-heif
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "HEIF")
JPEG_QUALITY = 90  # small greyscale pages: quality costs bytes, never tokens


class PageRejected(ValueError):
    """An uploaded page that cannot be used, with a reason a teacher can act on."""

    def __init__(self, reason: str, kind: RefusalKind = RefusalKind.invalid) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class PageHeader:
    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return Image.MIME.get(self.format, "application/octet-stream")


# Below this on its shorter side, a whole page's handwriting is a pixel or two tall: nothing, or
# no one, can read it (an A4 page at about 36 dpi). Thumbnails and icons are refused at intake.
MIN_PAGE_SIDE = 300


def greyscale(image: Image.Image) -> Image.Image:
    """The image as 8-bit greyscale without losing its content: 16- and 32-bit greyscale scaled
    down (Pillow's own conversion clips them to white), transparency laid on white paper (not
    black), palette and CMYK through RGB."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 255.0)
        if image.mode in ("I", "F") and top <= 255.0:
            top = 255.0
        return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("L")
    if image.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB").convert("L")
    return image.convert("L")


def inspect_page(stream: BinaryIO, max_pixels: int, decode: bool = True) -> PageHeader:
    """Check an uploaded page: its format (allow-listed), its size (bounded before any pixel is
    decoded, decompression-bomb warnings fatal), and, with `decode`, that every pixel decodes,
    so a damaged file is refused now rather than failing in a worker later.

    The stream is left at its start so it can be stored unchanged.
    """
    start = stream.tell()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream, formats=ACCEPTED_FORMATS) as image:
                header = PageHeader(image.format or "", image.width, image.height)
                if header.width * header.height > max_pixels:
                    raise PageRejected(
                        f"image is {header.width}x{header.height}, more than {max_pixels} pixels", RefusalKind.too_large
                    )
                if min(header.width, header.height) < MIN_PAGE_SIDE:
                    raise PageRejected(
                        f"image is {header.width}x{header.height}: too small to read a page from; send a photo "
                        f"or scan at least {MIN_PAGE_SIDE} pixels on its shorter side",
                        RefusalKind.invalid,
                    )
                if decode:
                    try:
                        # JPEG decodes at 1/8 scale (libjpeg's DCT scaling): every byte is still
                        # read, so damage is still found, at a sixty-fourth of the memory and time.
                        image.draft(image.mode, (max(1, header.width // 8), max(1, header.height // 8)))
                        image.load()
                    except (OSError, SyntaxError, ValueError) as exc:
                        raise PageRejected(
                            f"the image is damaged and does not decode ({exc})", RefusalKind.invalid
                        ) from exc
    except PageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PageRejected("image has too many pixels (decompression bomb?)", RefusalKind.too_large) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PageRejected(
            f"not a readable image or PDF; accepted: {', '.join(ACCEPTED_FORMATS)} and PDF", RefusalKind.unsupported
        ) from exc
    finally:
        stream.seek(start)
    return header


# A text line must stay at least this many pixels tall after scaling for the model (and an OCR
# engine) to read it. Chosen with `python -m bench.tokens` (OCR recall >= 0.98 of the original on
# every page kind): on the tile scheme 10 px already buys the lower tile count; on the patch scheme
# tokens fall smoothly with size, so one more pixel of margin costs little.
MIN_LINE_PX = {"tile": 10, "patch": 11}
INK_CONTRAST = 45  # how much darker than the paper a pixel must be to count as ink
MIN_STROKE_EDGES = 8  # ink edges a row must cross to be part of a text line (4 strokes)
MARGIN = 0.015  # kept around the cropped content, as a fraction of the page
# Whatever the measured text size says, never send less than this share of what the provider
# itself would look at: a mis-measured page must cost legibility gracefully, not all of it.
MIN_SHARE_OF_PROVIDER_SCALE = 0.4


@dataclass(frozen=True)
class NormalisedPage:
    jpeg: bytes
    width: int
    height: int
    # The median text line's height as sent, in pixels (None: no text line found).
    line_px: float | None = None

    def legible(self, model: str) -> bool:
        """Whether the writing stays as tall as bench.tokens found it must be to be read (a page
        with no text line found has nothing to lose)."""
        return self.line_px is None or self.line_px >= MIN_LINE_PX[model_card(model).scheme] - 0.5


def provider_limit(model: str, detail: str, width: int, height: int) -> float:
    """The scale the provider itself would apply: sending anything larger is wasted bytes."""
    card = model_card(model)
    if card.scheme == "patch":
        w, _h = patch_scheme_size(width, height)
        return w / width
    if detail == "low":
        return min(1.0, 512 / max(width, height))
    w, _h = tile_scheme_size(width, height)
    return w / width


def cheapest_scale(model: str, detail: str, width: int, height: int, min_scale: float) -> float:
    """The scale that costs the fewest tiles (or patches) while staying at or above `min_scale`,
    then grown to fill those tiles: never shrink past a tile boundary, never pay for empty tiles."""
    limit = provider_limit(model, detail, width, height)
    card = model_card(model)
    if card.scheme == "tile" and detail == "low":
        return limit  # a flat price: the most detail the price allows
    unit = 32 if card.scheme == "patch" else 512
    floor_scale = min(limit, max(min_scale, limit * MIN_SHARE_OF_PROVIDER_SCALE))
    cols = max(1, math.ceil(width * floor_scale / unit - 1e-9))
    rows = max(1, math.ceil(height * floor_scale / unit - 1e-9))
    return min(limit, cols * unit / width, rows * unit / height)


def otsu_threshold(histogram: list[int]) -> int:
    """The grey level that best splits a histogram in two (Otsu's method)."""
    total = sum(histogram)
    weighted = sum(level * count for level, count in enumerate(histogram))
    below = below_weighted = 0
    best, best_level = -1.0, 128
    for level, count in enumerate(histogram):
        below += count
        if below == 0 or below == total:
            continue
        below_weighted += level * count
        mean_below = below_weighted / below
        mean_above = (weighted - below_weighted) / (total - below)
        spread = below * (total - below) * (mean_below - mean_above) ** 2
        if spread > best:
            best, best_level = spread, level
    return best_level


def sheet_box(gray: Image.Image) -> tuple[int, int, int, int] | None:
    """Where the paper is in a photo: the bright region, when it clearly leaves out some of the
    frame (a desk). None for a scan, where the paper is the whole image."""
    factor = max(1, min(gray.width, gray.height) // 300)
    small = gray.reduce(factor) if factor > 1 else gray
    bright = small.point(lambda v, t=otsu_threshold(small.histogram()): 255 if v > t else 0)
    bright = bright.filter(ImageFilter.MinFilter(5)).filter(ImageFilter.MaxFilter(5))
    box = bright.getbbox()
    if box is None:
        return None
    area = (box[2] - box[0]) * (box[3] - box[1]) / (small.width * small.height)
    covered = bright.crop(box).histogram()[255] / max(1, (box[2] - box[0]) * (box[3] - box[1]))
    if area > 0.92 or covered < 0.6:  # no desk to remove, or not one clear sheet
        return None
    # A desk shows on two opposite sides of the sheet; a shadow darkens one side or a corner, and
    # what it leaves bright must not be mistaken for the sheet.
    inside = lambda low, high, size: low > 0.01 * size and high < 0.99 * size  # noqa: E731
    if not (inside(box[0], box[2], small.width) or inside(box[1], box[3], small.height)):
        return None
    inset_x, inset_y = round((box[2] - box[0]) * 0.01), round((box[3] - box[1]) * 0.01)
    return (
        (box[0] + inset_x) * factor,
        (box[1] + inset_y) * factor,
        (box[2] - inset_x) * factor,
        (box[3] - inset_y) * factor,
    )


def flatten(gray: Image.Image) -> Image.Image:
    """Divide out uneven light (phone shadows, a desk around the sheet): each pixel over the local
    paper brightness, estimated as a blurred local maximum on a reduced copy. Ink stays dark; paper,
    shadow and desk all become white."""
    factor = max(1, min(gray.width, gray.height) // 400)
    small = gray.reduce(factor) if factor > 1 else gray
    background = small.filter(ImageFilter.MaxFilter(7)).filter(ImageFilter.GaussianBlur(4))
    background = background.resize(gray.size, Image.Resampling.BILINEAR)
    flat = ImageMath.lambda_eval(
        lambda args: args["min"](args["ink"] * 255 / args["max"](args["paper"], 1), 255),
        ink=gray.convert("F"),
        paper=background.convert("F"),
    )
    return flat.convert("L")


def ink_mask(flat: Image.Image) -> Image.Image:
    """White where a flattened page has ink (clearly darker than paper), specks removed."""
    mask = flat.point(lambda v: 255 if v < 255 - INK_CONTRAST else 0)
    return mask.filter(ImageFilter.MedianFilter(3))


def content_box(mask: Image.Image) -> tuple[int, int, int, int] | None:
    box = mask.getbbox()
    if box is None:
        return None
    pad_x, pad_y = round(mask.width * MARGIN), round(mask.height * MARGIN)
    return (
        max(0, box[0] - pad_x),
        max(0, box[1] - pad_y),
        min(mask.width, box[2] + pad_x),
        min(mask.height, box[3] + pad_y),
    )


def text_line_height(mask: Image.Image) -> float | None:
    """The median height of the page's text lines. A row belongs to a line when it crosses several
    strokes: counting ink edges (not ink pixels) ignores the straight edges of a photographed sheet,
    ruled lines and margins, which cross a row once or twice."""
    shifted = ImageChops.offset(mask, 1, 0)
    edges = ImageChops.difference(mask, shifted).resize((1, mask.height), Image.Resampling.BOX)
    crossings = [v * mask.width / 255 for v in edges.tobytes()]
    runs, run = [], 0
    for count in crossings:
        if count >= MIN_STROKE_EDGES:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    if run:
        runs.append(run)
    runs = sorted(r for r in runs if 4 <= r <= mask.height * 0.08)  # taller is a figure, not text
    return float(runs[len(runs) // 2]) if runs else None


def jpeg_bytes(image: Image.Image) -> bytes:
    """An image (a crop, a sheet of crops) as the JPEG markq stores and sends."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def normalise_page(data: bytes, model: str, detail: str) -> NormalisedPage:
    """The cheapest legible page: upright (EXIF), greyscale, cut to the sheet in a photo, uneven
    light divided out, blank margins cropped, scaled to the fewest tiles or patches that keep text lines MIN_LINE_PX tall, JPEG."""
    with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        gray = greyscale(ImageOps.exif_transpose(image))
    sheet = sheet_box(gray)
    if sheet is not None:
        gray = gray.crop(sheet)
    gray = flatten(gray)
    mask = ink_mask(gray)
    box = content_box(mask)
    if box is not None:
        gray, mask = gray.crop(box), mask.crop(box)
    line = text_line_height(mask)
    min_scale = MIN_LINE_PX[model_card(model).scheme] / line if line else 1.0
    scale = cheapest_scale(model, detail, gray.width, gray.height, min_scale)
    if scale < 1.0:
        size = (max(1, math.floor(gray.width * scale)), max(1, math.floor(gray.height * scale)))
        gray = gray.resize(size, Image.Resampling.LANCZOS)
        # Downscaling softens strokes; a light unsharp mask restores their edges at no token cost.
        gray = gray.filter(ImageFilter.UnsharpMask(radius=1, percent=80, threshold=2))
    out = io.BytesIO()
    gray.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return NormalisedPage(out.getvalue(), gray.width, gray.height, line * min(scale, 1.0) if line else None)
