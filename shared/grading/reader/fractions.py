"""Handwritten stacked fractions: a numerator over a bar over a denominator, each read on its own.

The recogniser reads one line at a time; a stacked fraction is two rows of digits, which it reads
as one number ("1" over "3" read "13") or as nothing. Where an answer's ink is two short rows one
above the other, split by a drawn bar, or by the empty band a printed answer line left when the
template's print was taken away (the bar drawn on the line went with it), each row is cut out and
recognised three ways, a letter read for the digit it looks like, and the answer is
"numerator/denominator", as sure as its less sure row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from shared import ocr

BAR_HEIGHT = 0.35  # a bar is at most this many printed lines tall
BAR_WIDTH = 0.4  # and at least this wide (a bar under one digit), and as wide as most of the rows it splits
ROW_HEIGHT = (0.4, 1.8)  # each row of the fraction is this many printed lines tall
GAP = 1.0  # without a bar, the rows are at most this far apart (the answer line's band)
_PART = re.compile(r"-?\d{1,4}")
# A digit alone, recognised as a line, is often taken for the letter it looks like; a row of a
# fraction holds digits only, so the letter is read as its digit, trusted a little less.
_DIGIT_LOOKALIKES = str.maketrans({"Z": "2", "z": "2", "O": "0", "o": "0", "l": "1", "I": "1", "|": "1", "S": "5",
                                   "s": "5", "B": "8", "q": "9", "g": "9", "b": "6", "G": "6", "T": "7"})  # fmt: skip
LOOKALIKE = 0.9


@dataclass(frozen=True)
class Stacked:
    text: str  # "numerator/denominator"
    confidence: float
    agreeing: int  # the fewest readings of a row that gave its text (of three)


def _longest_runs(pixels: np.ndarray) -> np.ndarray:
    """Each row's longest run of ink, gaps of a pixel or two closed (a pen stroke thins out)."""
    closed = cv2.morphologyEx(pixels, cv2.MORPH_CLOSE, np.ones((1, 3), np.uint8))
    runs = np.zeros(closed.shape[0], dtype=int)
    for y, row in enumerate(closed):
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row, [0]))))
        if len(edges):
            runs[y] = int((edges[1::2] - edges[0::2]).max())
    return runs


def _rows(pixels: np.ndarray, line_height: int) -> tuple[tuple[int, int], tuple[int, int], bool] | None:
    """The numerator's and the denominator's rows (top, bottom) and whether a bar was drawn. A
    bar is a band of rows, at most a pen's width tall, each holding one run of ink across most of
    the writing, with writing above and below it (digits that touch or cross it are cut there)."""
    height, width = pixels.shape
    runs = _longest_runs(pixels)
    barred = np.flatnonzero(runs >= max(BAR_WIDTH * line_height, 0.6 * width))
    bands: list[tuple[int, int]] = []
    for y in barred:
        if bands and y <= bands[-1][1] + 1:
            bands[-1] = (bands[-1][0], int(y))
        else:
            bands.append((int(y), int(y)))
    tallest = max(3, BAR_HEIGHT * line_height)
    for first, last in bands:
        # a slanting bar crosses rows where each holds only part of it
        while first > 0 and runs[first - 1] >= 0.3 * width and last - first + 2 <= tallest:
            first -= 1
        while last < height - 1 and runs[last + 1] >= 0.3 * width and last - first + 2 <= tallest:
            last += 1
        if last - first + 1 > tallest:
            continue
        if first >= 2 and height - last - 1 >= 2:
            return (0, first), (last + 1, height), True
    # No bar: two rows of ink split by an empty band no taller than a line (the answer line's,
    # its print and the bar drawn on it taken away together).
    rows = np.flatnonzero(pixels.max(axis=1) > 0)
    gaps = [(int(a), int(b)) for a, b in zip(rows[:-1], rows[1:], strict=True) if b - a > 2]
    if len(gaps) != 1 or gaps[0][1] - gaps[0][0] > GAP * line_height:
        return None
    return (int(rows[0]), gaps[0][0] + 1), (gaps[0][1], int(rows[-1]) + 1), False


def _read_row(crop: Image.Image, mask: Image.Image, band: tuple[int, int], line_height: int) -> tuple[str, float, int]:
    """One row of the fraction read three ways (close, with a wide white border, as its ink
    alone), as the template-free reader reads a line: the text most readings give, its best score,
    and how many gave it."""
    row_mask = Image.new("L", mask.size, 0)
    row_mask.paste(mask.crop((0, band[0], mask.width, band[1])), (0, band[0]))
    box = row_mask.getbbox()
    if box is None:
        return "", 0.0, 0
    # only this row's ink, its soft edges kept: the bar and the other row are not read with it
    crop = Image.composite(crop, Image.new("L", crop.size, 255), row_mask.filter(ImageFilter.MaxFilter(5)))
    pad = max(4, line_height // 6)
    close = crop.crop((max(0, box[0] - pad), max(0, box[1] - pad), box[2] + pad, box[3] + pad))
    bordered = ImageOps.expand(crop.crop(box), border=line_height // 2, fill=255)
    ink_only = ImageOps.expand(ImageOps.invert(row_mask.crop(box)), border=line_height // 3, fill=255)
    votes: dict[str, list[float]] = {}
    for image in (close, bordered, ink_only):
        text, score = ocr.recognise(image)
        text = re.sub(r"\s+", "", text)
        digits = text.translate(_DIGIT_LOOKALIKES)
        votes.setdefault(digits, []).append(score * (LOOKALIKE if digits != text else 1.0))
    text, scores = max(votes.items(), key=lambda item: (len(item[1]), max(item[1])))
    return text, max(scores), len(scores)


def read_stacked(crop: Image.Image, mask: Image.Image, line_height: int) -> Stacked | None:
    """The answer's ink read as a stacked fraction, or None where it is not one: not two short
    rows one over the other, or a row that does not read as a whole number."""
    box = mask.getbbox()
    if box is None:
        return None
    pixels = (np.asarray(mask.crop(box)) > 0).astype(np.uint8)
    found = _rows(pixels, line_height)
    if found is None:
        return None
    top, bottom, barred = found
    shortest = ROW_HEIGHT[0] * line_height * (1.0 if barred else 1.25)  # not a digit's foot cut off by a line
    for band in (top, bottom):
        if not shortest <= band[1] - band[0] <= ROW_HEIGHT[1] * line_height:
            return None
    columns = [np.flatnonzero(pixels[band[0] : band[1]].max(axis=0) > 0) for band in (top, bottom)]
    overlap = min(columns[0][-1], columns[1][-1]) - max(columns[0][0], columns[1][0])
    if overlap < 0.5 * min(columns[0][-1] - columns[0][0], columns[1][-1] - columns[1][0]):
        return None  # one row over the other, not beside it
    crop, mask = crop.crop(box), mask.crop(box)
    numerator, denominator = _read_row(crop, mask, top, line_height), _read_row(crop, mask, bottom, line_height)
    if not (_PART.fullmatch(numerator[0]) and _PART.fullmatch(denominator[0])) or denominator[0].startswith("-"):
        return None
    agreeing = min(numerator[2], denominator[2])
    confidence = min(numerator[1], denominator[1]) * (1.0 if agreeing >= 2 else 0.85) * (1.0 if barred else 0.9)
    return Stacked(f"{numerator[0]}/{denominator[0]}", confidence, agreeing)
