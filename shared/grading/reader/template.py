"""Reading with the exam's blank paper (its template): align, take the print away, read each region.

1. The template's pages are read once: each key question's answer region is where its printed
   number's row begins, up to the next question on the row (a second column) and down to the next
   row's question (`answer_regions`).
2. Each student page is aligned to its template page: SIFT features on both, matched with Lowe's
   ratio test, and a homography fitted with RANSAC (`register`). A page that cannot be aligned
   says so, and the paper is read without the template.
3. The template's printed ink, a little widened, is painted white on the aligned student page
   (`remove_print`): prompts, options lines, 答：, footers and headings never enter a reading.
4. Each region is read alone: a stroke its edge cuts goes to the region holding most of it
   (`own_writing`); no ink is a blank; otherwise the detector's lines and a whole-crop
   recognition, as the template-free reader does.

Handwriting that crosses printed ink (a fraction bar on an answer line) loses those pixels. A
struck-through try (a level line drawn through a row of writing) is left out of the reading, and
the reading's note says so; the region's crop, for review, still shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageFilter

from shared import ocr
from shared.grading.answer_key import AnswerKey, QuestionType
from shared.grading.reader.fractions import Stacked, read_stacked
from shared.grading.reader.layout import (
    find_anchors,
    in_reading_order,
    is_footer,
    is_heading,
    next_in_row,
    normalise_text,
)
from shared.grading.reader.reading import (
    AGREED_READINGS,
    MIN_INK_PIXELS,
    REMAINDER_APART,
    AnswerReading,
    Vote,
    clean_reading,
    read_whole,
    remainder_apart,
    vote,
    whole_readings,
    whole_readings_against,
    written_forms,
)
from shared.grading.reader.scanning import PageScan, level, scan_page, upright_sheet
from shared.images import ink_mask

MATCH_SIDE = 1200  # features are found on pages scaled to this long side: enough detail, quick
RATIO = 0.75  # Lowe's ratio test for a good feature match
MIN_INLIERS = 25  # fewer matches agreeing on one homography: the page is not this template page
PRINT_WIDENING = 5  # px of the template's ink also taken away, for a slightly misaligned page
REGION_PAD = 6  # px around a region, so writing that leans out of it is still read
ONE_LINE = 3.0  # handwriting up to this many printed lines tall is one line, read whole as well
FRACTION_RISE = 0.7  # printed lines above its region a stacked fraction's numerator may stand


@dataclass
class Template:
    """An exam's blank pages (as the reader sees them) and where each question's answer goes."""

    pages: list[PageScan]  # the blank pages upright and flattened, with their ink
    regions: dict[str, tuple[int, tuple[int, int, int, int]]]  # question id -> (page index, box)
    line_heights: list[int]  # each page's printed line height
    derived: bool = False  # derived from the pupils' papers, not given (shared.grading.reader.derive)

    def to_json(self) -> dict[str, Any]:
        """What is stored of it: the regions and line heights (the pages are in storage)."""
        return {
            "regions": {qid: {"page": index + 1, "box": list(box)} for qid, (index, box) in self.regions.items()},
            "line_heights": self.line_heights,
            "tilts": [page.tilt for page in self.pages],
            "sizes": [list(page.image.size) for page in self.pages],  # the pixels the regions are in
            "printed": self.printed(),
        }

    def printed(self) -> dict[str, list[int]]:
        """The box of each region's print, in its region's pixels (for estimating its crop)."""
        boxes = {}
        for qid, (index, box) in self.regions.items():
            if (inked := self.pages[index].ink.crop(box).getbbox()) is not None:
                boxes[qid] = list(inked)
        return boxes

    @classmethod
    def from_stored(cls, pages: list[bytes], stored: dict[str, Any]) -> Template:
        """The template from its stored pages and regions, without reading its print again."""
        scans = []
        for number, (data, tilt) in enumerate(zip(pages, stored["tilts"], strict=True), start=1):
            image = level(upright_sheet(data), tilt)  # the pixels the regions were found in
            scans.append(PageScan(number, image, ink_mask(image), [], tilt))
        regions = {qid: (r["page"] - 1, tuple(r["box"])) for qid, r in stored["regions"].items()}
        return cls(scans, regions, list(stored["line_heights"]), bool(stored.get("derived_from")))  # type: ignore[arg-type]


def read_template(pages: list[bytes], key: AnswerKey) -> Template:
    """Read the blank pages once: their print, and each question's answer region."""
    scans = [scan_page(data, number) for number, data in enumerate(pages, start=1)]
    return Template(scans, answer_regions(scans, key), [scan.line_height for scan in scans])


def answer_regions(scans: list[PageScan], key: AnswerKey) -> dict[str, tuple[int, tuple[int, int, int, int]]]:
    """Each found question's region on the blank pages: its row from its number to the next
    question on the row, down to the next row's question, section heading or footer (or the foot
    of the page)."""
    anchors = find_anchors(scans, key)
    ordered = sorted(anchors.items(), key=lambda item: (item[1].page, item[1].line.box[1], item[1].line.box[0]))
    every = [anchor for _qid, anchor in ordered]
    regions = {}
    for qid, anchor in ordered:
        page = scans[anchor.page]
        right = next_in_row(anchor, every) or page.image.width
        below = [
            other.line.box[1]
            for other in every
            if other.page == anchor.page and other.line.box[1] > anchor.line.box[3] - 2
        ] + [  # a section heading or the page's footer ends it too
            line.box[1] - REGION_PAD
            for line in page.lines
            if line.box[1] > anchor.line.box[3]
            and (is_heading(line) or is_footer(line, page.image.height, page.image.width))
        ]
        bottom = min(below) if below else round(0.93 * page.image.height)
        top = max(0, anchor.line.box[1] - REGION_PAD)
        regions[qid] = (anchor.page, (anchor.line.box[0], top, right, max(top + 1, bottom)))
    return regions


def register(student: Image.Image, template: Image.Image) -> Image.Image | None:
    """The student page warped onto the template page's pixels, or None when they do not match."""
    homography = match(student, template)
    if homography is None:
        return None
    warped = cv2.warpPerspective(
        np.asarray(student), homography, template.size, flags=cv2.INTER_LINEAR, borderValue=255
    )
    return Image.fromarray(warped)


def match(student: Image.Image, template: Image.Image) -> np.ndarray | None:
    """The homography from the student page's pixels to the template page's, or None when they
    do not match."""
    scale_s, scale_t = MATCH_SIDE / max(student.size), MATCH_SIDE / max(template.size)
    small_s = np.asarray(student.resize((round(student.width * scale_s), round(student.height * scale_s))))
    small_t = np.asarray(template.resize((round(template.width * scale_t), round(template.height * scale_t))))
    sift = cv2.SIFT_create()
    keys_s, desc_s = sift.detectAndCompute(small_s, None)
    keys_t, desc_t = sift.detectAndCompute(small_t, None)
    if desc_s is None or desc_t is None or len(keys_s) < MIN_INLIERS or len(keys_t) < MIN_INLIERS:
        return None
    pairs = cv2.BFMatcher().knnMatch(desc_s, desc_t, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < RATIO * n.distance]
    if len(good) < MIN_INLIERS:
        return None
    source = np.float32([keys_s[m.queryIdx].pt for m in good]) / scale_s
    target = np.float32([keys_t[m.trainIdx].pt for m in good]) / scale_t
    homography, inliers = cv2.findHomography(source, target, cv2.RANSAC, 4.0)
    if homography is None or int(inliers.sum()) < MIN_INLIERS:
        return None
    return homography


def remove_print(aligned: Image.Image, template_ink: Image.Image) -> Image.Image:
    """The aligned page with the template's printed ink (widened a little) painted white."""
    printed = template_ink.filter(ImageFilter.MaxFilter(2 * (PRINT_WIDENING // 2) + 1))
    return Image.composite(Image.new("L", aligned.size, 255), aligned, printed)


@dataclass
class TemplateReading:
    readings: dict[str, AnswerReading]
    aligned: list[PageScan]  # the student's pages in the template's pixels, print kept (for crops)


def read_with_template(pages: list[bytes], template: Template, key: AnswerKey) -> TemplateReading | None:
    """Every question read from its region on the aligned, print-free pages; None when a page
    cannot be aligned to its template page (the caller reads without the template)."""
    if len(pages) != len(template.pages):
        return None
    cleaned, aligned_pages = [], []
    for number, (data, blank) in enumerate(zip(pages, template.pages, strict=True), start=1):
        aligned = register(upright_sheet(data), blank.image)
        if aligned is None:
            return None
        aligned_pages.append(PageScan(number, aligned, ink_mask(aligned), []))
        cleaned.append(remove_print(aligned, blank.ink))
    readings = {}
    for question in key.questions:
        if question.id not in template.regions:
            readings[question.id] = AnswerReading(
                question.id, "not_found", "", 0.0, note="the question was not found on the blank paper"
            )
            continue
        index, box = template.regions[question.id]
        line_height = template.line_heights[index]
        slots = (
            blank_slots(template.pages[index].ink.crop(box), line_height, len(question.blanks))
            if question.type == QuestionType.blanks
            else None
        )
        others = [other for qid, (at, other) in template.regions.items() if at == index and qid != question.id]
        page, box = own_writing(cleaned[index], box, others, line_height)
        readings[question.id] = _read_region(
            page, index + 1, box, question.id, question.type, line_height, written_forms(question), slots
        )
    return TemplateReading(readings, aligned_pages)


OWN_SHARE = 2 / 3  # of a stroke's ink in a region: the region's, read whole


def own_writing(
    page: Image.Image, box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]], line_height: int
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The region's writing whole, without its neighbours': a stroke cut by the region's upper or
    lower edge is the region's when OWN_SHARE of its ink is in it, and the box grows (a line at
    most) to take it in whole (a tall hand, a tail); a stroke with as little in the region and
    most in another question's region (the next row's tall digits reaching up into this one) is
    painted out of the page returned, as is anything else the grown box takes in. A stroke between
    the two is left as the region cuts it (a 7's bar in the region above its body). The page is
    the same one when nothing changes."""
    x0, y0, x1, y1 = box
    top, bottom = max(0, y0 - line_height), min(page.height, y1 + line_height)
    pixels = np.asarray(ink_mask(page.crop((x0, top, x1, bottom)))) > 0
    count, labels, stats, _centres = cv2.connectedComponentsWithStats(pixels.astype(np.uint8), connectivity=8)
    inside = np.bincount(labels[y0 - top : y1 - top].ravel(), minlength=count)
    grown_top, grown_bottom, theirs = y0, y1, []
    for n in range(1, count):
        left, upper, width, height, area = (int(v) for v in stats[n])
        if upper >= y0 - top and upper + height <= y1 - top:
            continue  # within the region
        if inside[n] >= OWN_SHARE * area:  # its own, read whole
            grown_top, grown_bottom = min(grown_top, top + upper), max(grown_bottom, top + upper + height)
        elif 0 < inside[n] <= (1 - OWN_SHARE) * area and _mostly_in(labels == n, (x0, top), others):
            theirs.append(n)
    if not theirs and (grown_top, grown_bottom) == (y0, y1):
        return page, box
    grown = (x0, grown_top, x1, grown_bottom)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = [n not in theirs and inside[n] > 0 for n in range(1, count)]  # nothing more the grown box takes in
    band = labels[grown_top - top : grown_bottom - top]
    painted = page.copy()
    out = (band > 0) & ~keep[band]
    if out.any():
        white = Image.fromarray(np.where(out, 255, 0).astype(np.uint8)).filter(ImageFilter.MaxFilter(3))
        painted.paste(255, (x0, grown_top), white)
    return painted, grown


def _mostly_in(component: np.ndarray, origin: tuple[int, int], others: list[tuple[int, int, int, int]]) -> bool:
    """Whether most of a stroke's ink (a mask in the page's pixels from `origin`) lies in one of
    the other questions' regions."""
    ys, xs = np.nonzero(component)
    xs, ys = xs + origin[0], ys + origin[1]
    return any(
        int(np.count_nonzero((xs >= a) & (xs < c) & (ys >= b) & (ys < d))) * 2 > len(xs) for a, b, c, d in others
    )


CROP_PAD = 10  # px kept around what a question's crop shows


def cut_questions(pages: list[bytes], template: Template, key: AnswerKey) -> list[tuple[str, int, Image.Image]] | None:
    """Every key question's region cut from the student's pages aligned to the blank ones, print
    and writing as the vision model should see them, down to the last of the question's print or
    writing (a region runs on to the next question): (id, page index, crop) in key order. None
    when a page cannot be aligned or a question has no region: then the pages are sent."""
    if len(pages) != len(template.pages) or any(q.id not in template.regions for q in key.questions):
        return None
    aligned, writing = [], []
    for data, blank in zip(pages, template.pages, strict=True):
        page = register(upright_sheet(data), blank.image)
        if page is None:
            return None
        aligned.append(page)
        writing.append(ink_mask(remove_print(page, blank.ink)))
    printed, crops = template.printed(), []
    for question in key.questions:
        index, box = template.regions[question.id]
        if fraction_key(written_forms(question)):  # a stacked fraction's numerator, as _read_region reads it
            box = raised(box, template.line_heights[index])
        rise = template.regions[question.id][1][1] - box[1]
        left, top, right, bottom = box
        print_box = printed.get(question.id)  # the question's print, in the region's pixels
        shown = [
            b
            for b in (
                [print_box[0], print_box[1] + rise, print_box[2], print_box[3] + rise] if print_box else None,
                student_ink(writing[index].crop(box), template.line_heights[index]).getbbox(),
            )
            if b is not None
        ]
        if shown:
            x1 = min(right - left, max(b[2] for b in shown) + CROP_PAD)
            y1 = min(bottom - top, max(b[3] for b in shown) + CROP_PAD)
            box = (left, top, left + max(1, x1), top + max(1, y1))
        crops.append((question.id, index, aligned[index].crop(box)))
    return crops


INK_KEPT = 5  # px around the ink kept for the recogniser: a stroke's soft edges
FAINT_CONTRAST = 22  # half as dark as ink: a light pencil stroke's pale stretches, where they join ink
FAINT_INK = 166  # writing whose ink is this light at its middle is a pencil's (a pen's is darker)
FAINT_GROWTH = 3  # the faint parts more than this many times the ink: a shadow or a smudge, not strokes
FAINT_FLOOR = 0.25  # of a line's height squared: the ink a light character is weighed against at least
SPECK = 30  # ink pixels: a component this small far from the writing is a speck or a print remnant


def with_faint(region: Image.Image, mask: Image.Image, line_height: int = 0) -> Image.Image:
    """The ink `mask` of the `region`'s image grown by its faint pixels that join its ink (the
    hysteresis of an edge detector) where the writing is in pencil: a light stroke's pale
    stretches kept, so its characters are read whole, not in pieces. Paper grain and faint marks
    that touch no ink stay out; where the faint pixels would outgrow the ink many times over (a
    shadow), the mask is kept as it was. So light a character that only a few of its pixels are
    ink (a pencil 6 with 18) may grow to FAINT_FLOOR of a square line of writing: a shadow's
    patch is far larger."""
    pixels, strong = np.asarray(region), np.asarray(mask) > 0
    if not strong.any() or np.median(pixels[strong]) < FAINT_INK:
        return mask  # a pen's dark line is whole already; its soft edge would join strokes that do not touch
    faint = (pixels < 255 - FAINT_CONTRAST).astype(np.uint8)
    count, labels = cv2.connectedComponents(faint, connectivity=8)
    joined = np.zeros(count, dtype=bool)
    joined[np.unique(labels[strong & (faint > 0)])] = True
    joined[0] = False
    grown = joined[labels] | strong
    if grown.sum() > FAINT_GROWTH * max(1, strong.sum(), round(FAINT_FLOOR * line_height**2)):
        return mask
    return Image.fromarray(np.where(grown, 255, 0).astype(np.uint8))


def student_ink(mask: Image.Image, line_height: int) -> Image.Image:
    """The region's ink without specks: components under SPECK pixels more than half a line from
    any larger one (what is left of the print at a misaligned edge, dirt), which would stretch
    the writing's box and make the recogniser read blank paper; without the paper's edge where
    a photographed page ends at the region (`_paper_edge`); and without the next row's
    writing where it reaches up into the region (ink cut by the region's lower edge that starts
    within a line of it, below the region's own writing)."""
    pixels = np.asarray(mask)
    count, labels, stats, _centres = cv2.connectedComponentsWithStats((pixels > 0).astype(np.uint8), connectivity=8)
    edges = [n for n in range(1, count) if _paper_edge(stats[n], mask.size, line_height)]
    large = [n for n in range(1, count) if stats[n, cv2.CC_STAT_AREA] >= SPECK and n not in edges]
    edge = mask.height - line_height
    below = [  # starting within a line of the lower edge and running on past it
        n
        for n in large
        if stats[n, cv2.CC_STAT_TOP] >= edge and stats[n, cv2.CC_STAT_TOP] + stats[n, cv2.CC_STAT_HEIGHT] >= mask.height
    ]
    below = below if len(below) < len(large) else []  # never all of the region's writing
    large = [n for n in large if n not in below]
    if not large and edges:  # nothing written: the edge alone
        return Image.fromarray(np.where(np.isin(labels, edges), 0, pixels).astype(np.uint8))
    if not large or (not below and not edges and len(large) == count - 1):
        return mask
    reach = line_height // 2
    x0 = min(stats[n, cv2.CC_STAT_LEFT] for n in large) - reach
    y0 = min(stats[n, cv2.CC_STAT_TOP] for n in large) - reach
    x1 = max(stats[n, cv2.CC_STAT_LEFT] + stats[n, cv2.CC_STAT_WIDTH] for n in large) + reach
    y1 = max(stats[n, cv2.CC_STAT_TOP] + stats[n, cv2.CC_STAT_HEIGHT] for n in large) + reach
    keep = np.zeros(count, dtype=bool)
    keep[large] = True
    for n in range(1, count):
        left, top, width, height = stats[n, :4]
        if not keep[n] and n not in edges and left >= x0 and top >= y0 and left + width <= x1 and top + height <= y1:
            keep[n] = True
    keep[0] = False
    return Image.fromarray(np.where(keep[labels], 255, 0).astype(np.uint8))


def _paper_edge(stat: np.ndarray, size: tuple[int, int], line_height: int) -> bool:
    """A thin straight line along the region's side that it runs along, a line long or more
    upright (the edge is often broken) and two level: the paper's edge, or the table beyond it,
    where a photographed page ends at the region (a page's last column). A pupil's 1 cut by the
    region's top is not along a side it runs along."""
    left, top, width, height = (int(v) for v in stat[:4])
    thin, long = max(3, line_height // 8), 2 * line_height
    upright = width <= thin and height >= line_height and (left == 0 or left + width >= size[0])
    level = height <= thin and width >= long and (top == 0 or top + height >= size[1])
    return upright or level


STRIKE_LENGTH = 1.5  # a line striking a try through is at least this many printed lines long
STRIKE_HEIGHT = 1.6  # and what it crosses at most this tall: one row of writing (a stacked fraction is two)
STRIKE_SLOPE = 0.3  # its line rises at most this much for its length
STRIKE_INK = 20  # darker than the paper by this much is a pen's line, however quick and light
STRIKE_VOTES = 0.8  # of its length on one straight line (a hand's stroke wavers a little)
STRIKE_FULL = 0.9  # of its length with ink on it or beside it: one stroke, not level strokes in a row
STRIKE_OUT = 8  # an eighth of a line at one of its ends with nothing written above or below it
SHORT_STRIKE = 0.7  # lines: a line through a try of one or two characters is at least this long
SHORT_GAP = (0.1, 1.2)  # lines from a short strike's end to the final answer after it
SHORT_MIDDLE = 0.3  # a short strike crosses its characters' middle rows, not their top or bottom 30%
SHORT_WIDTH = 0.8  # lines: the characters a short strike crosses are digits, narrower than this
SHORT_CROSS = 0.15  # lines of the crossed characters above and below a short strike, at least


def without_struck(
    mask: Image.Image, line_height: int, region: Image.Image | None = None, short: bool = False
) -> tuple[Image.Image, int]:
    """The region's ink without struck-through tries, and how many there were. A strike is one
    long, nearly level stroke (looked for in the `region`'s image, where a quick light line is
    still whole: the ink mask's speck filter takes its thin parts) that runs on past the writing
    at one end at least, through the middle of two or more of the writing's characters (or of one
    as wide as two, where the line joined them). The characters it crosses go with it. Level
    strokes of the writing itself (an equals sign, a 5's top, a 一) are not one unbroken line
    run out past the writing; a fraction's bar and an underline pass above or below characters,
    not through their middle.

    With `short`, a try of one or two characters struck with one short line is found too
    (`_short_strikes`): for answers whose writing has no level stroke through a character of its
    own (a + or a ± is a struck 1)."""
    components = _components(mask)
    count, labels, stats = components
    gray = np.asarray(region if region is not None else Image.eval(mask, lambda v: 255 - v))
    strikes = _strikes(gray < 255 - STRIKE_INK, components, line_height)
    if not strikes and short:
        strikes = _short_strikes(_against_paper(gray, line_height), components, line_height)
    if not strikes:
        return mask, 0
    keep = np.ones(count, dtype=bool)
    keep[0] = False
    for n in range(1, count):
        if any(_crossed(strike, stats[n]) for strike in strikes):
            keep[n] = False
    return Image.fromarray(np.where(keep[labels], 255, 0).astype(np.uint8)), len(_merged(strikes))


def _components(mask: Image.Image) -> tuple[int, np.ndarray, np.ndarray]:
    """The mask's connected components (8-connected): their count, labels and stats."""
    pixels = (np.asarray(mask) > 0).astype(np.uint8)
    count, labels, stats, _centres = cv2.connectedComponentsWithStats(pixels, connectivity=8)
    return count, labels, stats


def _crossed(strike: tuple[int, int, int, int], stat: np.ndarray) -> bool:
    """A component (its stats row) lies under a strike: its middle within the strike's columns,
    half of it (or of the strike's rows) within the strike's rows."""
    x0, y0, x1, y1 = strike
    left, top, width, height = (int(v) for v in stat[:4])
    return x0 <= left + width / 2 <= x1 and min(y1, top + height) - max(y0, top) >= 0.5 * min(height, y1 - y0)


def _strikes(
    ink: np.ndarray, components: tuple[int, np.ndarray, np.ndarray], line_height: int
) -> list[tuple[int, int, int, int]]:
    """Each strike's box: its columns, and the rows of the characters it crosses. `ink`: the
    region's pixels a pen has touched, however lightly; `components`: the writing's."""
    count, _labels, stats = components
    strikes = []
    for x0, y0, x1, y1 in _level_lines(ink, STRIKE_LENGTH * line_height, line_height):
        if _line_share(ink, x0, y0, x1, y1) < STRIKE_FULL:
            continue
        x0, y0, x1, y1 = _whole_line(ink, x0, y0, x1, y1)
        if not _runs_out(ink, x0, y0, x1, y1, line_height):
            continue
        crossed = [n for n in range(1, count) if _through_middle(stats[n], x0, y0, x1, y1, line_height)]
        if len(crossed) >= 2 or (len(crossed) == 1 and stats[crossed[0], cv2.CC_STAT_WIDTH] >= 1.2 * line_height):
            top = min(int(stats[n, cv2.CC_STAT_TOP]) for n in crossed)
            bottom = max(int(stats[n, cv2.CC_STAT_TOP] + stats[n, cv2.CC_STAT_HEIGHT]) for n in crossed)
            strikes.append((x0, top, x1, bottom))
    return strikes


def _level_lines(ink: np.ndarray, least: float, line_height: int) -> list[tuple[int, int, int, int]]:
    """The straight segments of `ink` at least `least` px long that rise at most STRIKE_SLOPE for
    their length, each from its left end to its right."""
    length = int(least)
    found = cv2.HoughLinesP(
        ink.astype(np.uint8) * 255,
        1,
        np.pi / 360,
        threshold=int(STRIKE_VOTES * length),
        minLineLength=length,
        maxLineGap=max(3, line_height // 10),
    )
    segments = [tuple(int(v) for v in segment) for segment in (found.reshape(-1, 4) if found is not None else [])]
    return [
        (x0, y0, x1, y1) if x0 <= x1 else (x1, y1, x0, y0)
        for x0, y0, x1, y1 in segments
        if abs(y1 - y0) <= STRIKE_SLOPE * abs(x1 - x0)
    ]


def _against_paper(gray: np.ndarray, line_height: int) -> np.ndarray:
    """The pixels a pen has touched, darker by STRIKE_INK than the paper around them (its
    brightest within half a line): a shadow's grey is paper, not ink."""
    size = max(3, line_height // 2) | 1
    paper = cv2.dilate(gray, np.ones((size, size), np.uint8))
    return gray.astype(np.int16) < paper.astype(np.int16) - STRIKE_INK


def _short_strikes(
    ink: np.ndarray, components: tuple[int, np.ndarray, np.ndarray], line_height: int
) -> list[tuple[int, int, int, int]]:
    """Each short strike's box: a level line, SHORT_STRIKE lines long at least, run out past the
    writing at both ends, through the middle of the characters that begin their row of writing
    (a pupil's first try), with more writing after it within SHORT_GAP (the final answer). A
    minus, an equals sign or a fraction's bar crosses no character's middle; a 4's bar or a 7's
    is not run out at both ends; a 十 or 本 inside an answer is not its first writing with an
    answer after it."""
    count, labels, stats = components
    writing = [n for n in range(1, count) if stats[n, cv2.CC_STAT_AREA] >= SPECK]
    segments = _level_lines(ink, SHORT_STRIKE * line_height, line_height)
    # whether a line runs out is judged without the level lines themselves: a second stroke of a
    # double strike, or the line's own thickness where it tilts, is not writing above or below it
    level, band = np.zeros(ink.shape, np.uint8), max(3, line_height // 5)
    for x0, y0, x1, y1 in segments:
        cv2.line(level, (x0, y0), (x1, y1), 1, thickness=band)
    apart = ink & (level == 0)
    on_lines = np.bincount(labels[level > 0], minlength=count)
    pieces = {  # a line's broken-off ends
        n
        for n in writing
        if on_lines[n] >= 0.8 * stats[n, cv2.CC_STAT_AREA] and stats[n, cv2.CC_STAT_HEIGHT] <= band + 2
    }
    strikes = []
    for x0, y0, x1, y1 in segments:
        if _line_share(ink, x0, y0, x1, y1) < STRIKE_FULL:
            continue
        x0, y0, x1, y1 = _whole_line(ink, x0, y0, x1, y1)
        if not _runs_out(apart, x0, y0, x1, y1, line_height, both=True):
            continue
        crossed = [n for n in writing if _through_middle(stats[n], x0, y0, x1, y1, line_height, SHORT_MIDDLE)]
        character = np.isin(labels, crossed) & (level == 0)  # their level strokes left out
        if not crossed or not _past_both_sides(character, x0, x1, line_height):
            continue
        if not _a_small_character_crossed(character, x0, y0, x1, y1, line_height):
            continue
        top = min(int(stats[n, cv2.CC_STAT_TOP]) for n in crossed)
        bottom = max(int(stats[n, cv2.CC_STAT_TOP] + stats[n, cv2.CC_STAT_HEIGHT]) for n in crossed)
        row = [n for n in writing if n not in crossed and n not in pieces and _overlap(stats[n], top, bottom)]
        start = min(int(stats[n, cv2.CC_STAT_LEFT]) for n in crossed)
        end = max([x1, *(int(stats[n, cv2.CC_STAT_LEFT] + stats[n, cv2.CC_STAT_WIDTH]) for n in crossed)])
        if any(stats[n, cv2.CC_STAT_LEFT] < start for n in row):
            continue  # writing before it: the line is inside the answer, not through a first try
        if any(stats[n, cv2.CC_STAT_TOP] >= bottom for n in writing):
            continue  # rows written below: working, whose answer is in the last row
        after = [int(stats[n, cv2.CC_STAT_LEFT]) - end for n in row if stats[n, cv2.CC_STAT_LEFT] >= end]
        if after and SHORT_GAP[0] * line_height <= min(after) <= SHORT_GAP[1] * line_height:
            strikes.append((x0, top, x1, bottom))
    return strikes


def _past_both_sides(character: np.ndarray, x0: int, x1: int, line_height: int) -> bool:
    """The line reaches past the characters it crosses (`character`: their pixels, level strokes
    left out) on both sides (a pupil's strike runs out past the try; a 周's middle stroke ends at
    its sides)."""
    columns = np.flatnonzero(character.sum(axis=0) >= 2)  # a stroke, not a line's fringe
    reach = max(2, line_height // 10)
    return columns.size > 0 and x0 <= columns[0] - reach and x1 >= columns[-1] + reach


def _a_small_character_crossed(character: np.ndarray, x0: int, y0: int, x1: int, y1: int, line_height: int) -> bool:
    """The characters a short line crosses (`character`: their pixels, level strokes left out)
    are as narrow as digits (SHORT_WIDTH lines: a 周 or 本 is a line wide) and reach SHORT_CROSS
    of a line above and below the line (a 7's or 5's top bar has nothing above it)."""
    rows, columns = np.nonzero(character)
    if columns.size == 0 or columns.max() - columns.min() > SHORT_WIDTH * line_height:
        return False
    at = np.round(y0 + (y1 - y0) * (columns - x0) / max(1, x1 - x0))  # _line_at, every column at once
    reach = SHORT_CROSS * line_height
    return bool((rows <= at - reach).any() and (rows >= at + reach).any())


def _overlap(stat: np.ndarray, top: int, bottom: int) -> bool:
    """A component in the rows top..bottom: half of it, or of those rows, within them."""
    upper, height = int(stat[cv2.CC_STAT_TOP]), int(stat[cv2.CC_STAT_HEIGHT])
    return min(bottom, upper + height) - max(top, upper) >= 0.5 * min(height, bottom - top)


def _whole_line(ink: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
    """The segment followed on at both ends while the stroke goes on along its line (the
    transform's segment often stops short of a stroke's ends where it crosses the writing)."""

    def on(x: int) -> bool:
        y = _line_at(x0, y0, x1, y1, x)
        return 0 <= x < ink.shape[1] and ink[max(0, y - 2) : y + 3, x].any()

    left, right = x0, x1
    while on(left - 1):
        left -= 1
    while on(right + 1):
        right += 1
    return left, _line_at(x0, y0, x1, y1, left), right, _line_at(x0, y0, x1, y1, right)


def _line_at(x0: int, y0: int, x1: int, y1: int, x: int) -> int:
    return round(y0 + (y1 - y0) * (x - x0) / max(1, x1 - x0))


def _line_share(ink: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> float:
    """The share of the line's columns with ink on it (within 2 px)."""
    on = [ink[max(0, y - 2) : y + 3, x].any() for x in range(x0, x1 + 1) for y in [_line_at(x0, y0, x1, y1, x)]]
    return float(np.mean(on)) if on else 0.0


def _runs_out(ink: np.ndarray, x0: int, y0: int, x1: int, y1: int, line_height: int, both: bool = False) -> bool:
    """The line runs on past the writing at one end (or `both`): nothing above or below it there,
    for an eighth of a line (all but one column)."""
    reach, end = line_height // 3, max(3, line_height // STRIKE_OUT)

    def bare(x: int) -> bool:
        y = _line_at(x0, y0, x1, y1, x)
        return not ink[max(0, y - reach) : max(0, y - 3), x].any() and not ink[y + 4 : y + reach, x].any()

    ends = [sum(bare(x) for x in columns) >= end - 1 for columns in (range(x0, x0 + end), range(x1 - end + 1, x1 + 1))]
    return all(ends) if both else any(ends)


def _through_middle(
    stat: np.ndarray, x0: int, y0: int, x1: int, y1: int, line_height: int, middle: float = 0.2
) -> bool:
    """A character of one row's height whose middle column the line crosses in its middle rows
    (not its top or bottom `middle` of them)."""
    left, top, width, height = (int(v) for v in stat[:4])
    if not 0.5 * line_height <= height <= STRIKE_HEIGHT * line_height or not x0 <= left + width / 2 <= x1:
        return False
    return top + middle * height <= _line_at(x0, y0, x1, y1, round(left + width / 2)) <= top + (1 - middle) * height


def _merged(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """The boxes with those that overlap one another counted once (one strike found twice)."""
    merged: list[tuple[int, int, int, int]] = []
    for box in sorted(boxes):
        if merged and box[0] <= merged[-1][2] and box[1] < merged[-1][3] and merged[-1][1] < box[3]:
            last = merged[-1]
            merged[-1] = (last[0], min(last[1], box[1]), max(last[2], box[2]), max(last[3], box[3]))
        else:
            merged.append(box)
    return merged


BLANKS_GAP = 1.5  # printed lines of blank paper between two answers: two blanks, each read alone


ROW_GAP = 0.3  # lines of empty paper between two rows of writing (a blank wrapped to the next row)


def _runs(profile: np.ndarray, gap: float) -> list[tuple[int, int]]:
    """The runs of nonzero entries, two runs apart where more than `gap` zeros lie between."""
    inked = np.flatnonzero(profile > 0)
    if not len(inked):
        return []
    runs, start = [], int(inked[0])
    for before, after in zip(inked[:-1], inked[1:], strict=True):
        if after - before > gap:
            runs.append((start, int(before) + 1))
            start = int(after)
    runs.append((start, int(inked[-1]) + 1))
    return runs


def _apart(mask: Image.Image, line_height: int) -> list[tuple[int, int, int, int]]:
    """The box of each run of writing, in reading order: row by row (a question's blanks may wrap
    onto the next row, its second answer then left of its first), and within a row each run
    separated from the next by at least BLANKS_GAP lines (and holding more than a speck)."""
    inked = np.asarray(mask) > 0
    boxes = []
    for top, bottom in _runs(inked.sum(axis=1), ROW_GAP * line_height):
        for x0, x1 in _runs(inked[top:bottom].sum(axis=0), BLANKS_GAP * line_height):
            if inked[top:bottom, x0:x1].sum() >= MIN_INK_PIXELS:  # no speck is a blank
                boxes.append((x0, top, x1, bottom))
    return boxes


def _read_apart(
    crop: Image.Image,
    mask: Image.Image,
    lines: list[ocr.TextLine],
    boxes: list[tuple[int, int, int, int] | None],
    line_height: int,
) -> Vote | None:
    """Each blank's writing read alone (the detector's lines over it and three whole readings),
    joined as the blanks' answers: trusted as far as the least sure blank; None when one of
    them reads as nothing."""
    votes = []
    for place in boxes:
        if place is None:  # a blank with no writing in it
            votes.append(Vote("", EMPTY_SLOT, [], AGREED_READINGS))
            continue
        x0, y0, x1, y1 = place
        alone = Image.new("L", mask.size, 0)
        alone.paste(mask.crop((x0, y0, x1, y1)), (x0, y0))
        if (box := alone.getbbox()) is None:
            return None
        over = [
            line
            for line in lines
            if x0 <= (line.box[0] + line.box[2]) / 2 < x1 and y0 <= (line.box[1] + line.box[3]) / 2 < y1
        ]
        det = (clean_reading(" ".join(line.text for line in over)), min((l.score for l in over), default=0.0))
        readings = [det, *whole_readings(crop, alone, box, line_height)]
        if not any(text for text, _score in readings):
            return None
        votes.append(vote(readings))
    notes = sorted({note for v in votes for note in v.notes})
    if not any(v.text for v in votes):
        return None
    return Vote(
        "；".join(v.text for v in votes),
        min(v.confidence for v in votes),
        notes,
        min(v.agreeing for v in votes),
    )


SLOT_WIDE = 1.8  # printed lines of empty print between two printed pieces of a row: a blank
SLOT_FOOT = 0.25  # of a print row's height: an underline's band, left out when looking for blanks
SLOT_RISE = 0.6  # printed lines above a blank's row where its writing may reach
EMPTY_SLOT = 0.95  # a blank with no writing in its place on the row


def blank_slots(printed: Image.Image, line_height: int, count: int) -> list[tuple[int, int, int, int]] | None:
    """The blanks of a question's print (its region's ink on the blank paper), in reading order:
    the wide empty places between printed pieces of a row (inside brackets, or above an underline,
    whose band is left out), each as the box its writing may fill; None unless there are `count`."""
    inked = np.asarray(printed) > 0
    slots = []
    for top, bottom in _runs(inked.sum(axis=1), ROW_GAP * line_height):
        upper = bottom - max(2, round(SLOT_FOOT * (bottom - top)))
        pieces = _runs(inked[top:upper].sum(axis=0), SLOT_WIDE * line_height)
        for (_a, end), (start, _b) in zip(pieces[:-1], pieces[1:], strict=True):
            if start - end > SLOT_WIDE * line_height:
                slots.append((end, max(0, top - round(SLOT_RISE * line_height)), start, bottom + line_height // 3))
    return slots if len(slots) == count else None


def _in_slots(
    mask: Image.Image, slots: list[tuple[int, int, int, int]], line_height: int
) -> list[tuple[int, int, int, int] | None] | None:
    """The writing of each blank, by the blanks' places: the box of the ink whose middle lies in
    each (None for a blank with none); None when some writing lies in no blank's place (written
    beside it: read as before) or no blank holds any."""
    pixels = (np.asarray(mask) > 0).astype(np.uint8)
    count, _labels, stats, _centres = cv2.connectedComponentsWithStats(pixels, connectivity=8)
    reach = line_height // 3
    found: list[list[int]] = [[] for _ in slots]
    for n in range(1, count):
        left, top, width, height = (int(v) for v in stats[n, :4])
        cx, cy = left + width / 2, top + height / 2
        where = [i for i, (x0, y0, x1, y1) in enumerate(slots) if x0 - reach <= cx <= x1 + reach and y0 <= cy <= y1]
        if len(where) != 1:
            return None
        found[where[0]].append(n)
    if not any(found):
        return None
    boxes: list[tuple[int, int, int, int] | None] = []
    for members in found:
        if not members:
            boxes.append(None)
            continue
        x0 = min(int(stats[n, 0]) for n in members)
        y0 = min(int(stats[n, 1]) for n in members)
        x1 = max(int(stats[n, 0] + stats[n, 2]) for n in members)
        y1 = max(int(stats[n, 1] + stats[n, 3]) for n in members)
        boxes.append((x0, y0, x1, y1))
    return boxes


def fraction_key(forms: list[str]) -> bool:
    """The key's answer is a fraction: a pupil may write it stacked, its numerator above the row."""
    return any("/" in form for form in forms)


def raised(box: tuple[int, int, int, int], line_height: int) -> tuple[int, int, int, int]:
    """A fraction question's region raised by FRACTION_RISE lines: a stacked fraction's numerator
    stands above the question's printed row, where the region begins."""
    left, top, right, bottom = box
    return left, max(0, top - round(FRACTION_RISE * line_height)), right, bottom


def writing(region: Image.Image, line_height: int, short: bool = False) -> tuple[Image.Image, int]:
    """The student's ink in a region of the print-free page, a pencil's pale stretches kept, its
    specks, page edge and struck-through tries left out (with `short`, those struck with one short
    line too); and how many tries were struck."""
    return without_struck(
        student_ink(with_faint(region, ink_mask(region), line_height), line_height), line_height, region, short
    )


def short_strikes_apply(kind: QuestionType | None, forms: list[str]) -> bool:
    """Whether a short strike through a region's first characters is a struck try: not among a
    question's blanks (a minus before one blank, the next blank after it), nor where the answer
    holds a + or a ± (a level line through a 1)."""
    return kind != QuestionType.blanks and not any(sign in form for form in forms for sign in "+±")


_LEADING_ZERO = re.compile(r"^[-+−]?0\d")


def _left_with_a_leading_zero(text: str) -> bool:
    """A number no pupil writes (`085`): left by a strike found through the answer's own first
    character (a 4's bar taken for a line through a try), not through a try before it."""
    return _LEADING_ZERO.match(normalise_text(text)) is not None


def _read_fraction(page: Image.Image, box: tuple[int, int, int, int], line_height: int) -> Stacked | None:
    """The raised region's writing read as a stacked fraction."""
    taller = page.crop(raised(box, line_height))
    return read_stacked(taller, writing(taller, line_height)[0], line_height)


def _read_region(
    page: Image.Image,
    number: int,
    box: tuple[int, int, int, int],
    qid: str,
    kind: QuestionType | None,
    line_height: int,
    forms: list[str],
    slots: list[tuple[int, int, int, int]] | None = None,
) -> AnswerReading:
    """One question's writing read from its region of the print-free page; `forms`: the key's
    answer as it may be written, whose likelihood in the writing the verdict may use; `slots`: a
    blanks question's blanks on the blank paper, in the region's pixels, where they were found."""
    crop = page.crop(box)
    mask, struck = writing(crop, line_height, short_strikes_apply(kind, forms))
    ink = mask.histogram()[255]
    struck_notes = [f"{struck} struck-through tr{'y' if struck == 1 else 'ies'} left out"] if struck else []
    # Only the student's ink is read: the faint ghost of the print painted out, the paper's grain
    # and show-through are below the ink threshold but the recogniser still reads them.
    crop = Image.composite(crop, Image.new("L", crop.size, 255), mask.filter(ImageFilter.MaxFilter(INK_KEPT)))
    where = {"page": number, "region": box, "line_height": line_height}
    if ink < MIN_INK_PIXELS and struck:  # everything written was struck out: a teacher looks
        return AnswerReading(qid, "blank", "", 0.5, **where, note=struck_notes[0] + ", nothing else written")
    if ink < MIN_INK_PIXELS:
        return AnswerReading(qid, "blank", "", 0.95, **where, note="nothing but the print in the answer region")
    lines = in_reading_order(ocr.read_lines(crop))
    if kind == QuestionType.word and lines:
        # The final answer is the last row (its printed 答： is gone); the working above is kept
        # in the region for review, not read into the verdict.
        last = max(lines, key=lambda line: line.centre_y)
        lines = [line for line in lines if line.box[3] > last.box[1] + last.height // 3]
        mask.paste(0, (0, 0, mask.width, max(0, lines[0].box[1] - REGION_PAD)))  # the working is not read
        ink = mask.histogram()[255]
    separator = "；" if kind == QuestionType.blanks else " "
    det_text = clean_reading(separator.join(line.text for line in lines))
    det_score = min((line.score for line in lines), default=0.0)
    readings = [(det_text, det_score)]
    ink_box = mask.getbbox()
    one_line = ink_box is not None and ink_box[3] - ink_box[1] <= ONE_LINE * line_height
    boxes = _apart(mask, line_height) if one_line and kind == QuestionType.blanks else []
    # a blank left empty: each blank's writing found by the blank paper's blanks; else by its runs
    filled = _in_slots(mask, slots, line_height) if slots and len(boxes) < len(slots) else None
    for places, how in (
        (filled, "each blank read in its place"),
        (boxes if len(boxes) >= 2 else None, "each blank read alone"),
    ):
        if places is not None and (apart := _read_apart(crop, mask, lines, places, line_height)) is not None:
            return AnswerReading(
                qid, "read", apart.text, round(apart.confidence, 4), **where,
                note="; ".join(["with the template", how, *struck_notes, *apart.notes]),
                agreeing=apart.agreeing,
            )  # fmt: skip
    if (
        kind not in (QuestionType.blanks, QuestionType.word, QuestionType.choice)
        and fraction_key(forms)
        and (stacked := _read_fraction(page, box, line_height)) is not None
    ):
        return AnswerReading(
            qid, "read", stacked.text, round(stacked.confidence, 4), **(where | {"region": raised(box, line_height)}),
            note="; ".join(["with the template", "a stacked fraction, its rows read apart", *struck_notes]),
            agreeing=stacked.agreeing,
        )  # fmt: skip
    key_likelihood = minus_odds = None
    if one_line and kind != QuestionType.blanks:
        whole, key_likelihood, minus_odds = whole_readings_against(crop, mask, ink_box, line_height, forms)
        readings += whole
    if not any(text for text, _score in readings):
        return AnswerReading(qid, "illegible", "", 0.0, **where, note="writing the offline reader cannot read")
    voted = vote(readings)
    text, confidence, notes = voted.text, voted.confidence, voted.notes
    if ink_box is not None and (apart := remainder_apart(text, crop.crop(ink_box), mask.crop(ink_box))):
        confidence = max(confidence, apart)
        notes.append(REMAINDER_APART)
    if struck and _left_with_a_leading_zero(text):
        confidence *= 0.5
        notes.append("what is left after the struck try begins 0 and a digit: the strike may be a stroke of the answer")
    covered = sum(mask.crop(line.box).histogram()[255] for line in lines)
    if lines and covered < 0.75 * ink and not read_whole(readings[1:], text):
        confidence *= 0.7
        notes.append(f"only {covered / ink:.0%} of the writing was read")
    return AnswerReading(
        qid,
        "read",
        text,
        round(confidence, 4),
        **where,
        note="; ".join(["with the template", *struck_notes, *notes]),
        agreeing=voted.agreeing,
        key_likelihood=key_likelihood,
        minus_odds=minus_odds,
    )
