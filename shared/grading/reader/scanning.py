"""Scanning a page for the offline reader: upright, cut to the sheet, level, its text lines found.

The page is turned upright (EXIF), cut to the sheet when it is a photo with a desk around it,
scaled to at most LONG_SIDE pixels, and its uneven light divided out (the same `flatten` the
vision path uses), then every text line is detected and recognised. A tilted page (a photo, a
skewed scan) is turned level by the median tilt of its lines, so that the questions' areas can be
cut as rectangles; the lines are turned with it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cached_property

from PIL import Image, ImageOps

from shared import ocr
from shared.images import ACCEPTED_FORMATS, flatten, greyscale, ink_mask, sheet_box

LONG_SIDE = 2000  # OCR reads a 150-300 dpi page well at this size; a 12 MP photo is halved


@dataclass
class PageScan:
    number: int
    image: Image.Image  # greyscale, flattened, at most LONG_SIDE
    ink: Image.Image  # white where there is ink
    lines: list[ocr.TextLine]
    tilt: float = 0.0  # degrees the page was turned to level it (Pillow's sense)

    @cached_property
    def line_height(self) -> int:
        """The page's typical text line: the median height of the lines found."""
        return sorted(line.height for line in self.lines)[len(self.lines) // 2]


def upright_sheet(data: bytes) -> Image.Image:
    """The page upright, cut to the sheet when it is a photo with a desk around it, at most
    LONG_SIDE pixels, with uneven light divided out: what is read, and what crops are cut from."""
    with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        gray = greyscale(ImageOps.exif_transpose(image))
    if (sheet := sheet_box(gray)) is not None:
        gray = gray.crop(sheet)
    scale = LONG_SIDE / max(gray.size)
    if scale < 1:
        gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.LANCZOS)
    return flatten(gray)


def scan_page(data: bytes, number: int) -> PageScan:
    """Read a page; a tilted page (a photo, a skewed scan) is turned level first, by the median
    tilt of the lines the detector found, so that question areas can be cut as rectangles."""
    flat = upright_sheet(data)
    lines = ocr.read_lines(flat)
    wide = [line.angle for line in lines if line.box[2] - line.box[0] > 3 * line.height]
    tilt = sorted(wide)[len(wide) // 2] if wide else 0.0
    if abs(tilt) >= 0.3:
        flat = level(flat, tilt)
        lines = [_turned(line, tilt, flat.width / 2, flat.height / 2) for line in lines]
    else:
        tilt = 0.0
    return PageScan(number, flat, ink_mask(flat), lines, tilt)


def _turned(line: ocr.TextLine, degrees: float, cx: float, cy: float) -> ocr.TextLine:
    """The line as it lies on the page turned by `degrees` (counter-clockwise, as Pillow turns)."""
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    quad = tuple((cx + (x - cx) * cos + (y - cy) * sin, cy - (x - cx) * sin + (y - cy) * cos) for x, y in line.quad)
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    return ocr.TextLine((int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1), line.text, line.score, quad)


def level(image: Image.Image, tilt: float) -> Image.Image:
    """A page turned as scan_page turned it."""
    return image.rotate(tilt, resample=Image.Resampling.BICUBIC, fillcolor=255) if tilt else image


def scan_pages(pages: list[bytes]) -> list[PageScan]:
    """A paper's pages (original uploads, in order), each read."""
    return [scan_page(data, number) for number, data in enumerate(pages, start=1)]
