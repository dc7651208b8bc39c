"""Offline marking: read each student's answer with the local OCR engine and mark it against the
answer key, with a confidence per answer. No provider, no key, no cost.

How a page is read:
1. The page is turned upright (EXIF), scaled to at most LONG_SIDE pixels, and its uneven light
   divided out (the same `flatten` the vision path uses), then every text line is detected and
   recognised.
2. Layout: each key question is found by its printed number ("3.", "3、", "(3)") at the left of a
   line, in key order across the pages. The question's answer area runs from under its printed
   line to the next question's number. Printed text inside it (a wrapped prompt) is recognised by
   matching the key's prompt and left out.
3. The answer is read twice: from the detector's lines in the area, and by recognising the crop
   around the area's ink as one line. Two agreeing readings are trusted more than one; readings
   that disagree, ink the text does not cover, and misses by a single character all lower the
   confidence. An area with no ink is a blank answer.
4. Marking: mathematics through the equivalence check (numbers, fractions, units, remainders),
   other subjects by normalised text; knowledge points come from the answer key.

Where the confidence is below the exam's threshold the answer goes to a teacher (provider `local`)
or to the vision model (provider `cascade`). Without an answer in the key nothing can be marked.
"""

from __future__ import annotations

import difflib
import io
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Literal

from PIL import Image, ImageDraw, ImageOps

from shared import ocr
from shared.grading.answer_key import AnswerKey, KeyQuestion
from shared.grading.equivalence import equivalent, parse_value
from shared.grading.marks import QuestionMark
from shared.images import ACCEPTED_FORMATS, flatten, ink_mask, sheet_box

LONG_SIDE = 2000  # OCR reads a 150-300 dpi page well at this size; a 12 MP photo is halved
_ANCHOR = re.compile(r"^\s*[(（]?\s*(?:第\s*)?(?P<id>[0-9]{1,3}[a-zA-Z]?)\s*(?:[)）.．、,，:：]|题)")
MIN_INK_PIXELS = 40  # fewer ink pixels than this in an answer area is a speck, not writing
ReadingState = Literal["read", "blank", "illegible", "not_found"]


@dataclass
class PageScan:
    number: int
    image: Image.Image  # greyscale, flattened, at most LONG_SIDE
    ink: Image.Image  # white where there is ink
    lines: list[ocr.TextLine]

    @cached_property
    def line_height(self) -> int:
        """The page's typical text line: the median height of the lines found."""
        return sorted(line.height for line in self.lines)[len(self.lines) // 2]


@dataclass(frozen=True)
class AnswerReading:
    """What the offline reader made of one question on the paper."""

    question_id: str
    state: ReadingState
    text: str
    confidence: float
    page: int | None = None  # page number, from 1
    region: tuple[int, int, int, int] | None = None  # question line and answer area, scan pixels
    line_height: int | None = None  # the page's typical text line, scan pixels
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AnswerReading:
        region = value.get("region")
        return cls(**{**value, "region": tuple(region) if region else None})


def upright_sheet(data: bytes) -> Image.Image:
    """The page upright, cut to the sheet when it is a photo with a desk around it, at most
    LONG_SIDE pixels, with uneven light divided out: what is read, and what crops are cut from."""
    with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        gray = ImageOps.exif_transpose(image).convert("L")
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
        flat = flat.rotate(tilt, resample=Image.Resampling.BICUBIC, fillcolor=255)
        lines = [_turned(line, tilt, flat.width / 2, flat.height / 2) for line in lines]
    return PageScan(number, flat, ink_mask(flat), lines)


def _turned(line: ocr.TextLine, degrees: float, cx: float, cy: float) -> ocr.TextLine:
    """The line as it lies on the page turned by `degrees` (counter-clockwise, as Pillow turns)."""
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    quad = tuple((cx + (x - cx) * cos + (y - cy) * sin, cy - (x - cx) * sin + (y - cy) * cos)
                 for x, y in line.quad)
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    return ocr.TextLine((int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1), line.text,
                        line.score, quad)


def normalise_text(text: str) -> str:
    """For comparing readings and answers: width-folded, case-folded, without spaces, underscores,
    quotes or end punctuation (handwriting loses spaces; OCR reads a blank line as underscores)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\s_'\"‘’“”`]+", "", text)
    return text.strip("。.,，;；:：!！?？")


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Vertical overlap of two boxes, as a share of the shorter one."""
    top, bottom = max(a[1], b[1]), min(a[3], b[3])
    return max(0, bottom - top) / max(1, min(a[3] - a[1], b[3] - b[1]))


def _prompt_similarity(rest: str, prompt: str) -> float:
    rest, prompt = normalise_text(rest), normalise_text(prompt)
    if not prompt:
        return 1.0
    if not rest:
        return 0.0
    return difflib.SequenceMatcher(None, rest, prompt[: max(len(rest), 1) + 4]).ratio()


@dataclass(frozen=True)
class _Anchor:
    page: int  # index into the scans
    line: ocr.TextLine
    rest: str  # the line's text after the question number


def find_anchors(pages: list[PageScan], key: AnswerKey) -> dict[str, _Anchor]:
    """Each key question's printed number, in key order across the pages."""
    candidates: list[tuple[int, ocr.TextLine, str, str]] = []
    for index, page in enumerate(pages):
        for line in sorted(page.lines, key=lambda l: (l.box[1], l.box[0])):
            if match := _ANCHOR.match(unicodedata.normalize("NFKC", line.text)):
                candidates.append((index, line, match.group("id").lower(), line.text[match.end():]))
    margins = {}
    for index in range(len(pages)):
        xs = [line.box[0] for i, line, _id, _rest in candidates if i == index]
        margins[index] = min(xs) if xs else 0
    anchors: dict[str, _Anchor] = {}
    position = (-1, -1)
    for question in key.questions:
        for index, line, qid, rest in candidates:
            if qid != question.id.lower() or (index, line.box[1]) <= position:
                continue
            if line.box[0] > margins[index] + 0.12 * pages[index].image.width:
                continue  # not at the left margin: an answer like "3.5", not a question number
            if question.prompt and _prompt_similarity(rest, question.prompt) < 0.4:
                continue
            anchors[question.id] = _Anchor(index, line, rest)
            position = (index, line.box[1])
            break
    return anchors


def _rows(lines: Iterable[ocr.TextLine]) -> list[ocr.TextLine]:
    """Lines in reading order: top to bottom by row, left to right within a row."""
    ordered = sorted(lines, key=lambda l: l.centre_y)
    rows: list[list[ocr.TextLine]] = []
    for line in ordered:
        if rows and any(_overlap(line.box, other.box) >= 0.3 for other in rows[-1]):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda l: l.box[0])]


def _inserted_text(line_text: str, prompt: str) -> str:
    """What a question's printed line holds beyond the key's prompt: an answer written in a blank."""
    said, printed = normalise_text(line_text), normalise_text(prompt)
    if not printed:
        return ""
    matcher = difflib.SequenceMatcher(None, said, printed, autojunk=False)
    extra = "".join(said[i1:i2] for tag, i1, i2, _j1, _j2 in matcher.get_opcodes() if tag in ("delete", "replace"))
    return extra if re.search(r"\w", extra) else ""  # a misread sign is not an answer


def read_answers(pages: list[PageScan], key: AnswerKey) -> dict[str, AnswerReading]:
    anchors = find_anchors(pages, key)
    ordered = sorted(anchors.items(), key=lambda item: (item[1].page, item[1].line.box[1]))
    on_lines = {qid: _question_line(pages[anchor.page], anchor) for qid, anchor in ordered}
    claimed = {id(line) for lines in on_lines.values() for line in lines}
    heights = sorted(anchor.line.height for _qid, anchor in ordered)
    print_height = heights[len(heights) // 2] if heights else 0
    readings = {}
    for position, (qid, anchor) in enumerate(ordered):
        page = pages[anchor.page]
        following = ordered[position + 1][1] if position + 1 < len(ordered) else None
        question = next(q for q in key.questions if q.id == qid)
        bottom = following.line.box[1] if following and following.page == anchor.page else page.image.height
        readings[qid] = _read_area(page, anchor, on_lines[qid], claimed, question, bottom, print_height)
    for question in key.questions:
        if question.id not in readings:
            readings[question.id] = AnswerReading(question.id, "not_found", "", 0.0,
                                                  note="the question's number was not found on the pages")
    return {q.id: readings[q.id] for q in key.questions}


# A section heading between questions: 二、填空题, 第二部分, Part B, Section 2, III. Fill in ...
_HEADING = re.compile(r"^\s*(?:[一二三四五六七八九十]+\s*[、.．]|第[一二三四五六七八九十]+部分|"
                      r"(?:part|section)\s+[a-z0-9]+\b|[ivx]+\s*[.．、]\s*[a-z])", re.IGNORECASE)


def _is_heading(line: ocr.TextLine) -> bool:
    return _HEADING.match(unicodedata.normalize("NFKC", line.text)) is not None


def _is_printed(line: ocr.TextLine, anchor: ocr.TextLine, prompt: str, page_width: int) -> bool:
    """A line under the question that is print, not the answer: a section heading at the questions'
    margin, or the prompt wrapping on (its text is part of the prompt, and it is long, or starts
    where the question's text does: a short word like "play" that the prompt also contains is
    more likely the answer)."""
    if _is_heading(line) and abs(line.box[0] - anchor.box[0]) <= 0.03 * page_width:
        return True
    said = normalise_text(line.text)
    if not prompt or len(said) < 4 or said not in prompt or line.height > 1.3 * anchor.height:
        return False  # short, or taller than print: handwriting that repeats part of the prompt
    return len(said) >= 0.5 * len(prompt) or abs(line.box[0] - anchor.box[0]) <= 0.03 * page_width


_DOTS = re.compile(r"(?<=\d)\s*[.·…⋯・?]{3,}\s*(?=\d)")


def clean_reading(text: str) -> str:
    """OCR reads the remainder dots of 23÷4=5……3 as any run of dots, middle dots and the odd '?'."""
    return _DOTS.sub("……", text.strip())


def _question_line(page: PageScan, anchor: _Anchor) -> list[ocr.TextLine]:
    """The question's printed line: the number's line, what continues it to the right, and an
    answer written after it (handwriting sits a little above or below the printed baseline)."""
    box = anchor.line.box
    return [l for l in page.lines if l is anchor.line
            or (_overlap(l.box, box) >= 0.5 and l.box[0] >= box[0])
            or (_overlap(l.box, box) >= 0.2 and l.box[0] >= box[2] - 10)]


def _read_area(page: PageScan, anchor: _Anchor, on_line: list[ocr.TextLine], claimed: set[int],
               question: KeyQuestion, bottom: int, print_height: int) -> AnswerReading:
    """Read one question's answer area: blank, one reading or two, with the confidence earned."""
    typical = page.line_height
    # Below the printed line and clear of its descenders, which its box may leave out.
    top = max(l.box[3] for l in on_line) + max(2, typical // 6)
    in_area = [l for l in page.lines if id(l) not in claimed and top - 2 <= l.centre_y < bottom]
    printed_prompt = normalise_text(question.prompt)
    printed = [l for l in in_area if _is_printed(l, anchor.line, printed_prompt, page.image.width)]
    headings = [l for l in printed if _is_heading(l)]
    if headings:  # the answer area ends where the next section begins
        bottom = min(bottom, min(l.box[1] for l in headings))
        in_area = [l for l in in_area if l.centre_y < bottom]
        printed = [l for l in printed if l.centre_y < bottom]
    written = _rows(l for l in in_area if l not in printed)
    where = {"page": page.number, "region": (0, max(0, anchor.line.box[1] - 4), page.image.width, bottom),
             "line_height": typical}
    mask = _answer_ink(page, top, bottom, printed)
    ink_pixels = mask.histogram()[255]
    box = mask.getbbox() if ink_pixels >= MIN_INK_PIXELS else None

    if box is None and not written:
        line_text = anchor.rest + "".join(l.text for l in on_line if l is not anchor.line)
        if inline := _inserted_text(line_text, question.prompt):  # written into the question's blank
            return AnswerReading(question.id, "read", inline, min(min(l.score for l in on_line), 0.85), **where,
                                 note="read from the question's own line")
        if printed:  # text was found here, and taken for the prompt: perhaps wrongly
            return AnswerReading(question.id, "blank", "", 0.6, **where,
                                 note="only text resembling the question was found under it")
        if any(l.height > 1.3 * print_height for l in on_line):  # print and something taller
            return AnswerReading(question.id, "blank", "", 0.6, **where,
                                 note="the question's line holds more than its print, unread")
        return AnswerReading(question.id, "blank", "", 0.95, **where)

    det_text = clean_reading(" ".join(l.text for l in written))
    det_score = min((l.score for l in written), default=0.0)
    rec_text, rec_score = "", 0.0
    if box is not None and box[3] - box[1] <= 2.2 * typical:  # one line of writing: read it whole
        pad = max(4, typical // 6)
        crop = page.image.crop((max(0, box[0] - pad), top + max(0, box[1] - pad),
                                min(page.image.width, box[2] + pad), top + min(mask.height, box[3] + pad)))
        rec_text, rec_score = ocr.recognise(crop)
        rec_text = clean_reading(rec_text)
    if not det_text and not rec_text:
        return AnswerReading(question.id, "illegible", "", 0.0, **where,
                             note="there is writing here that the offline reader cannot read")
    text, confidence, notes = _two_readings(det_text, det_score, rec_text, rec_score)
    if box is not None and (match := _REMAINDER_READ.match(text)):
        # The dots of 5……3 drag a line's score down; read the two numbers on their own instead.
        parts = _remainder_parts(page.image.crop((box[0], top + box[1], box[2], top + box[3])),
                                 mask.crop(box))
        if parts is not None and parts[0][0] == match.group(1) and parts[1][0] == match.group(2):
            confidence = max(confidence, min(parts[0][1], parts[1][1]))
            notes = [n for n in notes if n != "read once"] + ["the numbers read again apart from the dots"]
    if box is not None and written:
        share = _share_read(mask, written, top, ink_pixels)
        if share < 0.75:
            confidence *= 0.7
            notes.append(f"only {share:.0%} of the writing was read")
    return AnswerReading(question.id, "read", text, round(confidence, 4), **where, note="; ".join(notes))


_REMAINDER_READ = re.compile(r"^(\d+)……(\d+)$")


def _remainder_parts(image: Image.Image, mask: Image.Image) -> tuple[tuple[str, float], tuple[str, float]] | None:
    """The quotient and the remainder of an answer like 5……3, each recognised alone: the ink's
    columns split into runs, the short runs in the middle being the dots. None when the ink does
    not look like number, dots, number."""
    pixels, (width, height) = mask.load(), mask.size
    spans = []  # (first column, last column + 1, ink height) of each run of inked columns
    start = top = bottom = None
    for x in range(width + 1):
        rows = [y for y in range(height) if x < width and pixels[x, y]]
        if rows:
            if start is None:
                start, top, bottom = x, rows[0], rows[-1]
            top, bottom = min(top, rows[0]), max(bottom, rows[-1])
        elif start is not None:
            spans.append((start, x, bottom - top + 1))
            start = None
    tallest = max((s[2] for s in spans), default=0)
    kinds = "".join("d" if s[2] >= 0.5 * tallest else "." for s in spans)
    if not (match := re.fullmatch(r"(d+)(\.{2,})(d+)", kinds)):
        return None
    left, right = spans[: match.end(1)], spans[match.start(3):]
    parts = []
    for group in (left, right):
        pad = max(4, height // 5)
        crop = Image.new("L", (group[-1][1] - group[0][0] + 2 * pad, height + 2 * pad), 255)
        crop.paste(image.crop((group[0][0], 0, group[-1][1], height)), (pad, pad))
        text, score = ocr.recognise(crop)
        if not text.strip().isdigit():
            return None
        parts.append((text.strip(), score))
    return parts[0], parts[1]


def _answer_ink(page: PageScan, top: int, bottom: int, printed: list[ocr.TextLine]) -> Image.Image:
    """The ink of an answer area (rows `top` to `bottom`), without print and sheet edges."""
    mask = page.ink.crop((0, top, page.image.width, max(top + 1, bottom))).copy()
    draw = ImageDraw.Draw(mask)
    # Writing lies between the questions' margin and a little past the printed text; outside that
    # band, and along the foot of the page, is what is left of a photographed sheet's edges.
    left = max(0, min(l.box[0] for l in page.lines) - round(0.03 * mask.width))
    right = min(mask.width, max(l.box[2] for l in page.lines) + round(0.05 * mask.width))
    draw.rectangle((0, 0, left, mask.height), fill=0)
    draw.rectangle((right, 0, mask.width, mask.height), fill=0)
    foot = page.image.height - round(0.02 * page.image.height) - top
    if foot < mask.height:
        draw.rectangle((0, foot, mask.width, mask.height), fill=0)
    for line in printed:
        draw.rectangle((line.box[0], line.box[1] - top, line.box[2], line.box[3] - top), fill=0)
    return mask


def _two_readings(det_text: str, det_score: float, rec_text: str, rec_score: float) -> tuple[str, float, list[str]]:
    """One answer from the detector's lines and the whole-crop recognition: agreeing readings keep
    the better score; disagreeing ones, or a single one, are trusted less."""
    if det_text and rec_text:
        if normalise_text(det_text) == normalise_text(rec_text):
            return det_text, max(det_score, rec_score), []
        text = det_text if det_score >= rec_score else rec_text
        return text, min(det_score, rec_score) * 0.6, [f"two readings disagree ({det_text!r} and {rec_text!r})"]
    if det_text:
        return det_text, det_score * 0.9, ["read once"]
    return rec_text, rec_score * 0.85, ["read once"]


def _share_read(mask: Image.Image, written: list[ocr.TextLine], top: int, ink_pixels: int) -> float:
    """How much of the area's ink lies inside the lines that were read."""
    covered = Image.new("L", mask.size, 0)
    for line in written:
        covered.paste(mask.crop((line.box[0], line.box[1] - top, line.box[2], line.box[3] - top)),
                      (line.box[0], line.box[1] - top))
    return covered.histogram()[255] / max(1, ink_pixels)


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _text_equal(answer: str, question: KeyQuestion) -> bool:
    said = normalise_text(answer)
    return any(said == normalise_text(form) for form in (question.answer or "", *question.accepted))


def _unit_error(answer: str, key: str) -> bool:
    """The right number with a missing, extra or wrong unit."""
    said, wanted = parse_value(answer), parse_value(key)
    if said is None or wanted is None or said.remainder is not None:
        return False
    digits = lambda text: re.sub(r"[^0-9./]", "", unicodedata.normalize("NFKC", text))  # noqa: E731
    return said.dimension != wanted.dimension and digits(answer) == digits(key)


def _not_like_the_key(answer: str, key: str) -> bool:
    """The key is a number (or quantity) and the reading is not one: letters where digits belong
    ("5b" for 56) are far more often a misreading than what a pupil wrote."""
    wanted, said = parse_value(key), parse_value(answer)
    if wanted is None:
        return False
    return said is None or bool(said.amount.free_symbols and not wanted.amount.free_symbols)


def mark_reading(reading: AnswerReading, question: KeyQuestion, subject: str, language: str) -> QuestionMark:
    """The verdict on one reading, with the confidence the verdict deserves."""
    zh = language == "zh"
    points = list(question.knowledge_points)
    if question.answer is None:
        return QuestionMark(
            student_answer=reading.text, is_correct=False, score=0, knowledge_points=points,
            error_type="illegible", confidence=0.0, correction="",
            explanation="答案表没有给出这道题的答案，离线批改无法判分。" if zh else
            "The answer key gives no answer for this question, so offline marking cannot mark it.")
    key = question.answer
    if reading.state in ("illegible", "not_found"):
        return QuestionMark(
            student_answer=reading.text, is_correct=False, score=0, knowledge_points=points,
            error_type="illegible", confidence=0.0, correction=f"答案：{key}" if zh else f"Answer: {key}",
            explanation=("离线识别读不出这道题的答案，需要老师查看。" if zh else
                         "The offline reader could not read this answer; a teacher must look at it."))
    if reading.state == "blank":
        return QuestionMark(
            student_answer="", is_correct=False, score=0, knowledge_points=points, error_type="blank",
            confidence=reading.confidence, correction=f"答案：{key}" if zh else f"Answer: {key}",
            explanation="没有作答。" if zh else "No answer was given.")
    check = equivalent(reading.text, key, tuple(question.accepted)) if subject == "math" else None
    correct = check if check is not None else _text_equal(reading.text, question)
    if correct:
        # A misreading that lands exactly on the key is far less likely than one that misses it.
        return QuestionMark(student_answer=reading.text, is_correct=True, score=question.points,
                            knowledge_points=points, error_type="none", explanation="", correction="",
                            confidence=round(0.5 + 0.5 * reading.confidence, 4))
    confidence = reading.confidence
    said = normalise_text(reading.text)
    near = any(_edit_distance(said, normalise_text(form)) <= max(1, len(normalise_text(form)) // 5)
               for form in (key, *question.accepted))
    if near and reading.confidence < 0.98:
        confidence *= 0.8  # a character or two from the key, read unsurely: perhaps a misreading
    if subject == "math" and _not_like_the_key(reading.text, key):
        confidence *= 0.6  # the key is a value and the reading is not: probably misread
    unit = subject == "math" and _unit_error(reading.text, key)
    error_type = "unit" if unit else "calculation" if subject == "math" else "concept"
    if zh:
        explanation = (f"单位不对：你写的是 {reading.text}，应为 {key}。" if unit
                       else f"你的答案是 {reading.text}，正确答案是 {key}。")
    else:
        explanation = (f"Wrong unit: you wrote {reading.text}; the answer is {key}." if unit
                       else f"You wrote {reading.text}; the answer is {key}.")
    return QuestionMark(student_answer=reading.text, is_correct=False, score=0, knowledge_points=points,
                        error_type=error_type, explanation=explanation,
                        correction=f"正确答案：{key}" if zh else f"Correct answer: {key}",
                        confidence=round(confidence, 4))


def scan_pages(pages: list[bytes]) -> list[PageScan]:
    """A paper's pages (original uploads, in order), each read."""
    return [scan_page(data, number) for number, data in enumerate(pages, start=1)]


def read_paper(pages: list[bytes], key: AnswerKey) -> dict[str, AnswerReading]:
    """Read every key question's answer from a paper's pages (original uploads, in order)."""
    return read_answers(scan_pages(pages), key)


def crop_sheet(scans: list[PageScan], readings: list[AnswerReading], line_px: int = 16) -> Image.Image:
    """The questions of `readings` cut from the pages as they were read (upright, level, flattened:
    the readings' regions are in those pixels) and stacked into one greyscale image, each labelled
    with its number: what the cascade sends the vision model instead of whole pages."""
    crops = []
    for reading in readings:
        if reading.page is None or reading.region is None:
            continue
        scan = scans[reading.page - 1]
        crop = scan.image.crop(reading.region)
        if (ink := scan.ink.crop(reading.region).getbbox()) is not None:  # the line down to its last ink
            crop = crop.crop((max(0, ink[0] - 10), 0, min(crop.width, ink[2] + 10), min(crop.height, ink[3] + 10)))
        crops.append((reading.question_id, crop, reading.line_height or line_px))
    if not crops:
        raise ValueError("no question could be located on the pages")
    label_width = 90
    scaled = [(qid, _scaled(crop, min(1.0, line_px / height))) for qid, crop, height in crops]
    width = label_width + max(c.width for _q, c in scaled)
    height = sum(c.height + 12 for _q, c in scaled)
    sheet = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(sheet)
    y = 0
    for qid, crop in scaled:
        draw.text((6, y + 4), f"Q{qid}", fill=0, font_size=24)
        sheet.paste(crop, (label_width, y))
        y += crop.height
        draw.line((0, y + 6, width, y + 6), fill=160, width=2)
        y += 12
    return sheet


def _scaled(image: Image.Image, scale: float) -> Image.Image:
    """Scaled so a text line is as tall as asked: enough for handwriting, few tiles."""
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)
