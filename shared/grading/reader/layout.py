"""Layout: where each key question and its answer area are on the scanned pages.

Each key question is found by its printed number ("3.", "3、", "(3)") at the left of a line, in
key order across the pages, and, when the key has a prompt, only where the text after the number
resembles it. The question's answer area runs from under its printed line to the next question's
number, or to a section heading (二、填空题, Part B) between them. Printed text inside it is left
out: a wrapped prompt, recognised by matching the key's prompt, and a heading; so are the edges of
a photographed sheet. What remains of the area's ink is the answer's.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image, ImageDraw

from shared import ocr
from shared.grading.answer_key import AnswerKey, KeyQuestion
from shared.grading.reader.scanning import PageScan

_ANCHOR = re.compile(r"^\s*[(（]?\s*(?:第\s*)?(?P<id>[0-9]{1,3}[a-zA-Z]?)\s*(?:[)）.．。、,，:：]|题)")
# The printed label 第3题 ("question 3"), spelled once: a question's number at the start of a line
# here, another question's label inside a reading in `marking`. Its group is the number.
NTH_QUESTION = r"第\s*([0-9]{1,3})\s*题"
# Forms that cannot be a decimal or a time: （3）, 第3题, ③. Found anywhere on a line, in any column.
_UNAMBIGUOUS = re.compile(rf"^\s*(?:[(（]\s*[0-9]{{1,3}}[a-zA-Z]?\s*[)）]|{NTH_QUESTION})")
_CIRCLED = {chr(0x2460 + n): f"{n + 1}." for n in range(20)}  # ① .. ⑳, which NFKC would glue to what follows
# What a printed question holds after its number: an operation, a bracket or blank, or Chinese text.
_QUESTION_TEXT = re.compile(r"[+\-−×÷=＝<>（(_]|[\u4e00-\u9fff]")
# A key id numbered within its section ("2.3": section 2, question 3) is printed as its last part.
_SECTION_NUMBERED = re.compile(r"^(?P<section>[0-9]{1,2})[.．-](?P<number>[0-9]{1,3}[a-zA-Z]?)$")


def printed_number(question_id: str) -> str:
    """The number printed on the paper for a key question: '3' for '3', and for '2.3' too."""
    if match := _SECTION_NUMBERED.match(question_id):
        return match.group("number").lower()
    return question_id.lower()


# A mark read before 第3题 from the margin's dashed or sealing line beside it (~第16题, 密第3题).
_MARGIN_MARK = re.compile(rf"^\s*[~|¦\-—–:·'\".,、密封线内不要答题]{{1,2}}\s*(?={NTH_QUESTION})")


def _anchor_text(text: str) -> str:
    return _MARGIN_MARK.sub("", unicodedata.normalize("NFKC", "".join(_CIRCLED.get(ch, ch) for ch in text)))


END_MARKS = "。.,，;；:：!！?？"  # end punctuation normalise_text strips from a text's ends


def normalise_text(text: str) -> str:
    """For comparing readings and answers: width-folded, case-folded, without spaces, underscores,
    quotes or end punctuation (handwriting loses spaces; OCR reads a blank line as underscores)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\s_'\"‘’“”`]+", "", text)
    return text.strip(END_MARKS)


def row_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Vertical overlap of two boxes, as a share of the shorter one."""
    top, bottom = max(a[1], b[1]), min(a[3], b[3])
    return max(0, bottom - top) / max(1, min(a[3] - a[1], b[3] - b[1]))


def _prompt_similarity(rest: str, prompt: str) -> float:
    rest, prompt = normalise_text(rest), normalise_text(prompt)
    if not prompt:
        return 1.0
    if not rest:
        return 0.0
    # the text may run on past the prompt (an answer written on the row): compare its head
    rest = rest[: len(prompt) + 2]
    return difflib.SequenceMatcher(None, rest, prompt[: max(len(rest), 1) + 4]).ratio()


@dataclass(frozen=True)
class Anchor:
    page: int  # index into the scans
    line: ocr.TextLine
    rest: str  # the line's text after the question number


def _row_text(page: PageScan, line: ocr.TextLine, rest: str) -> str:
    """What follows a question's number on its row: the rest of its line and, where the detector
    boxed the number alone ("（1）" | "3+9="), the boxes just right of it, up to another question."""
    text = rest
    right = line.box[2]
    for other in sorted(page.lines, key=lambda l: l.box[0]):
        if other is line or other.box[0] <= (line.box[0] + line.box[2]) // 2 or row_overlap(other.box, line.box) < 0.5:
            continue
        if other.box[0] - right > 3 * line.height or _UNAMBIGUOUS.match(_anchor_text(other.text)):
            break
        text, right = text + other.text, max(right, other.box[2])
    return text


def find_anchors(pages: list[PageScan], key: AnswerKey) -> dict[str, Anchor]:
    """Each key question's printed number, in key order across the pages."""
    candidates: list[tuple[int, ocr.TextLine, str, str]] = []
    for index, page in enumerate(pages):
        for line in sorted(page.lines, key=lambda l: (l.box[1], l.box[0])):
            text = _anchor_text(line.text)
            if match := _ANCHOR.match(text):
                candidates.append((index, line, match.group("id").lower(), text[match.end() :]))
    margins = {}
    for index in range(len(pages)):
        xs = [line.box[0] for i, line, _id, _rest in candidates if i == index]
        margins[index] = min(xs) if xs else 0
    anchors: dict[str, Anchor] = {}
    previous: tuple[int, ocr.TextLine] | None = None
    headings = [(index, line) for index, page in enumerate(pages) for line in page.lines if is_heading(line)]
    section = None
    order = list(dict.fromkeys(["", *(_section(question) for question in key.questions)]))
    for question in key.questions:
        number = printed_number(question.id)
        # Where the paper has headings: the first question of a new section comes after one, and
        # after no more than the key has sections from the last question found to this one
        # (section 2's (1), unread, is not section 3's); a question of a named section the last
        # one found shares comes before any (section 2's ②, read as 2, is not section 3's ②).
        new_section = headings and previous is not None and _section(question) != section
        same_section = headings and previous is not None and _section(question) == section != ""
        # Before any question is found, a question numbered in its section ('2.3') comes after no
        # more headings than its section's number (section 1's ①, unread, is not section 2's ①).
        numbered = _SECTION_NUMBERED.match(question.id) if headings and previous is None else None
        for index, line, qid, rest in candidates:
            if qid != number or (previous is not None and not _comes_after(index, line, *previous)):
                continue
            if numbered and _headings_between(headings, None, (index, line)) > int(numbered["section"]):
                continue
            if new_section or same_section:
                passed = _headings_between(headings, previous, (index, line))
                sections = order.index(_section(question)) - order.index(section or "")
                if (new_section and not passed) or passed > sections:
                    continue
            at_margin = line.box[0] <= margins[index] + 0.12 * pages[index].image.width
            # Away from the margin (a second column), only a number that cannot be an answer like
            # "3.5" counts: (3), 第3题, or a number followed by the question's own text.
            in_a_column = (
                _UNAMBIGUOUS.match(_anchor_text(line.text)) is not None or _QUESTION_TEXT.search(rest[:12]) is not None
            )
            if not at_margin and not in_a_column:
                continue
            if question.prompt and _prompt_similarity(_row_text(pages[index], line, rest), question.prompt) < 0.4:
                continue
            anchors[question.id] = Anchor(index, line, rest)
            previous, section = (index, line), _section(question)
            break
    return _fill_gaps(pages, key, anchors)


def _headings_between(
    headings: list[tuple[int, ocr.TextLine]], after: tuple[int, ocr.TextLine] | None, before: tuple[int, ocr.TextLine]
) -> int:
    """How many headings come after the line `after` (None: the paper's start) and before `before`."""
    return sum((after is None or _comes_after(i, h, *after)) and _comes_after(*before, i, h) for i, h in headings)


def _section(question: KeyQuestion) -> str:
    """The section a key question is printed under: its `section`, or the first part of an id
    numbered within its section ('2' of '2.3'); '' when neither says."""
    return question.section or (question.id.split(".")[0] if _SECTION_NUMBERED.match(question.id) else "")


# A misread question number at the head of a line: a circled one (OCR reads ⑤ as ③ or 5), or a
# digit set apart by a space.
_MISREAD_NUMBER = re.compile(r"^\s*(?:[\u2460-\u2473]|[0-9]\s+)\s*[.．、]?")


def _fill_gaps(pages: list[PageScan], key: AnswerKey, anchors: dict[str, Anchor]) -> dict[str, Anchor]:
    """Questions between two found ones whose numbers OCR misread (⑤ as ③, ⑥ as 6 or not at all):
    the printed lines that start a row in a column the found questions use, between those two, in
    order, taken only when there are exactly as many as questions missing there (and, with
    prompts, each resembles its question's). Lines as tall as the found numbers' only: print, not
    handwriting."""
    found = [(i, q) for i, q in enumerate(key.questions) if q.id in anchors]
    if len(found) < 2 or len(found) == len(key.questions):
        return anchors
    heights = sorted(a.line.height for a in anchors.values())
    tallest = 1.3 * heights[len(heights) // 2]
    used = {id(a.line) for a in anchors.values()}
    found_on = {index: [a for a in anchors.values() if a.page == index] for index in range(len(pages))}
    rows = [
        (index, line)
        for index, page in enumerate(pages)
        for line in in_reading_order(page.lines)
        if id(line) not in used and _starts_a_column(page, line, found_on[index], tallest)
    ]
    filled = dict(anchors)
    bounds = [(-1, None)] + [(i, anchors[q.id]) for i, q in found] + [(len(key.questions), None)]
    for (start, before), (end, after) in zip(bounds, bounds[1:], strict=False):
        missing = key.questions[start + 1 : end]
        if not missing or before is None and after is None:
            continue
        candidates = [(index, line) for index, line in rows if _between(index, line, before, after)]
        if len(candidates) != len(missing):
            continue
        rests = [
            _misread_rest(_anchor_text(line.text), printed_number(question.id))
            for question, (_index, line) in zip(missing, candidates, strict=True)
        ]
        if any(
            q.prompt and _prompt_similarity(_row_text(pages[index], line, rest), q.prompt) < 0.4
            for q, (index, line), rest in zip(missing, candidates, rests, strict=True)
        ):
            continue
        for question, (index, line), rest in zip(missing, candidates, rests, strict=True):
            filled[question.id] = Anchor(index, line, rest)
    return filled


def _misread_rest(text: str, number: str) -> str:
    """A row's text after its misread number: a circled one or a digit set apart, or the question's
    own number glued to what follows (⑤ read as "5" in "57×"); after a label of another form
    (第6题, （6）), whatever its number was read as."""
    if match := _MISREAD_NUMBER.match(text) or _UNAMBIGUOUS.match(text):
        return text[match.end() :]
    stripped = text.lstrip()
    return stripped[len(number) :] if stripped.startswith(number) else text


def _between(index: int, line: ocr.TextLine, before: Anchor | None, after: Anchor | None) -> bool:
    return (before is None or _comes_after(index, line, before.page, before.line)) and (
        after is None or _comes_after(after.page, after.line, index, line)
    )


def _starts_a_column(page: PageScan, line: ocr.TextLine, found: list[Anchor], tallest: float) -> bool:
    """A printed line that begins where the page's found questions begin (their margin, or a second
    column's), not a heading, footer, options line or 答： line. A line taller than the found
    numbers is handwriting, unless it begins with a circled number: then it is print and the
    writing boxed with it ("③ 5x8= 40")."""
    if not found or is_heading(line) or is_options_line(line, page.lines):
        return False
    if line.height > tallest and line.text.lstrip()[:1] not in _CIRCLED:
        return False
    if is_footer(line, page.image.height, page.image.width) or ANSWER_MARK.match(line.text):
        return False
    # OCR may box a circled number from its inside (⑧ read as "）"): a line starting a little right
    # of a column still starts it. Its row, not the line alone, holds the question's text ("⑤7×" | "=56").
    near = max(12, round(0.02 * page.image.width))
    return (
        any(abs(line.box[0] - a.line.box[0]) <= near for a in found)
        and _QUESTION_TEXT.search(_row_text(page, line, line.text)) is not None
    )


def _comes_after(index: int, line: ocr.TextLine, before_index: int, before: ocr.TextLine) -> bool:
    """Reading order: a later page, a lower row, or further right on the same row."""
    if index != before_index:
        return index > before_index
    if row_overlap(line.box, before.box) >= 0.5:
        return line.box[0] > before.box[2] - 5
    return line.box[1] > before.box[1]


def in_reading_order(lines: Iterable[ocr.TextLine]) -> list[ocr.TextLine]:
    """Lines in reading order: top to bottom by row, left to right within a row."""
    ordered = sorted(lines, key=lambda l: l.centre_y)
    rows: list[list[ocr.TextLine]] = []
    for line in ordered:
        if rows and any(row_overlap(line.box, other.box) >= 0.3 for other in rows[-1]):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda l: l.box[0])]


# A section heading between questions: 二、填空题, 第二部分, Part B, Section 2, III. Fill in ...
# (after a printed mark or two, which OCR may read as a 1: ■二、, 1三、, ★ Part B; its 、 may be read
# as another mark: 四~应用题, 四，应用题; or after a character of the sealing line 密封线内不要答题
# printed sideways beside it, boxed with it: 不二、填一填)
_HEADING = re.compile(
    r"^(?:[^\w(（]|[1Il|]|[密封线内不要答题]){0,2}\s*(?:[一二三四五六七八九十]+\s*[、.．丶~～,，·\-—]|第[一二三四五六七八九十]+部分|"
    r"(?:part|section)\s+[a-z0-9]+\b|[ivx]+\s*[.．、]\s*[a-z])",
    re.IGNORECASE,
)


def is_heading(line: ocr.TextLine) -> bool:
    return _HEADING.match(unicodedata.normalize("NFKC", line.text)) is not None


# A word problem's printed answer line, 答： : the final answer follows it, the working is above.
ANSWER_MARK = re.compile(r"答\s*[:：]")

# A page footer or header: 第1页（共2页）, 共2页, - 1 -, 1/2, Page 1 of 2.
_FOOTER = re.compile(
    r"^\s*(?:第\s*\d+\s*页.*|.*共\s*\d+\s*页.*|[-—–]\s*\d+\s*[-—–]|\d+\s*/\s*\d+|page\s+\d+(?:\s+of\s+\d+)?)\s*$",
    re.IGNORECASE,
)
FOOTER_BAND = 0.1  # footers and running headers sit in the top or bottom tenth of the page


# A page number alone, as OCR may read '- 1 -': its digits, perhaps a dash or a dot.
_PAGE_NUMBER = re.compile(r"^\W{0,3}\d{1,2}\W{0,3}$")
CENTRED = 0.08  # a page number's centre is within this share of the page width of the page's


def is_footer(line: ocr.TextLine, page_height: int, page_width: int | None = None) -> bool:
    """A printed page number or running footer at the top or foot of the page: never an answer.
    With the page's width, a number alone centred in the footer band is its page number too."""
    near_edge = line.box[1] > (1 - FOOTER_BAND) * page_height or line.box[3] < FOOTER_BAND * page_height
    text = unicodedata.normalize("NFKC", line.text).strip()
    if near_edge and page_width and _PAGE_NUMBER.match(text):
        return abs((line.box[0] + line.box[2]) / 2 - page_width / 2) <= CENTRED * page_width
    return near_edge and _FOOTER.match(text) is not None


# The printed options of a choice question: A.41  B.4000  C.4  D.40 (at least two of them).
_OPTIONS = re.compile(r"^\s*[(（]?A\s*[)）.．、:：].*[(（]?B\s*[)）.．、:：]", re.IGNORECASE)


_ONE_OPTION = re.compile(r"^\s*[(（]?[A-H]\s*[)）.．、:：]\s*\S", re.IGNORECASE)


def is_options_line(line: ocr.TextLine, lines: list[ocr.TextLine] | None = None) -> bool:
    """Printed options: 'A.41 B.4000 ...' on one line, or 'A.12' beside another option on its row."""
    text = unicodedata.normalize("NFKC", line.text)
    if _OPTIONS.match(text):
        return True
    if lines is None or not _ONE_OPTION.match(text):
        return False
    return any(
        other is not line and row_overlap(other.box, line.box) >= 0.5 and _ONE_OPTION.match(other.text)
        for other in lines
    )


def ink_beside(page: PageScan, line: ocr.TextLine, right: int | None) -> int:
    """Ink pixels on a question's row to the right of its printed text: writing the reader missed."""
    limit = right if right is not None else page.image.width
    pad = max(4, line.height // 5)
    band = (min(limit, line.box[2] + pad), line.box[1], max(line.box[2] + pad, limit - pad), line.box[3])
    if band[2] <= band[0]:
        return 0
    return page.ink.crop(band).histogram()[255]


def is_printed(line: ocr.TextLine, anchor: ocr.TextLine, prompt: str, page_width: int) -> bool:
    """A line under the question that is print, not the answer: a section heading at or left of
    the question's margin, or the prompt wrapping on (its text is part of the prompt, and it is
    long, or starts where the question's text does: a short word like "play" that the prompt also
    contains is more likely the answer)."""
    if is_heading(line) and line.box[0] <= anchor.box[0] + 0.03 * page_width:  # at or left of the margin
        return True
    said = normalise_text(line.text)
    if not prompt or len(said) < 4 or said not in prompt or line.height > 1.3 * anchor.height:
        return False  # short, or taller than print: handwriting that repeats part of the prompt
    return len(said) >= 0.5 * len(prompt) or abs(line.box[0] - anchor.box[0]) <= 0.03 * page_width


def question_line(page: PageScan, anchor: Anchor, right: int | None = None) -> list[ocr.TextLine]:
    """The question's printed line: the number's line, what continues it to the right, and an
    answer written after it (handwriting sits a little above or below the printed baseline), up to
    `right`, where the next question of the same row begins (a second column), or where a
    question label that is no number (③, （3）, 第3题) begins on the row: the next question's,
    though its number was misread (⑥ read as ⑤) and it was not found."""
    box = anchor.line.box
    limit = right if right is not None else page.image.width + 1
    labels = [
        l.box[0]
        for l in page.lines
        if l is not anchor.line
        and l.box[0] > box[0] + 2 * anchor.line.height
        and row_overlap(l.box, box) >= 0.5
        and (l.text.lstrip()[:1] in _CIRCLED or _UNAMBIGUOUS.match(l.text))
    ]
    limit = min([limit, *labels])
    return [
        l
        for l in page.lines
        if l is anchor.line
        or l.box[0] < limit - 5
        and (
            (row_overlap(l.box, box) >= 0.5 and l.box[0] >= box[0])
            or (row_overlap(l.box, box) >= 0.2 and l.box[0] >= box[2] - 10)
        )
    ]


def next_in_row(anchor: Anchor, anchors: list[Anchor]) -> int | None:
    """Where the next question printed on the same row begins, if one does."""
    starts = [
        other.line.box[0]
        for other in anchors
        if other.page == anchor.page
        and other is not anchor
        and row_overlap(other.line.box, anchor.line.box) >= 0.5
        and other.line.box[0] > anchor.line.box[0]
    ]
    return min(starts) if starts else None


def answer_ink(
    page: PageScan, top: int, bottom: int, printed: list[ocr.TextLine], margin: int = 0, right: int | None = None
) -> Image.Image:
    """The ink of an answer area (rows `top` to `bottom`, right of `margin` and left of `right`,
    where the next question on the row begins), without print and sheet edges."""
    mask = page.ink.crop((0, top, page.image.width, max(top + 1, bottom))).copy()
    draw = ImageDraw.Draw(mask)
    # Writing lies between the questions' margin and a little past the printed text; outside that
    # band, and along the foot of the page, is what is left of a photographed sheet's edges.
    left = max(0, margin, min(l.box[0] for l in page.lines) - round(0.03 * mask.width))
    right = min(mask.width, right or mask.width, max(l.box[2] for l in page.lines) + round(0.05 * mask.width))
    draw.rectangle((0, 0, left, mask.height), fill=0)
    draw.rectangle((right, 0, mask.width, mask.height), fill=0)
    foot = page.image.height - round(0.02 * page.image.height) - top
    if foot < mask.height:
        draw.rectangle((0, foot, mask.width, mask.height), fill=0)
    for line in printed:
        draw.rectangle((line.box[0], line.box[1] - top, line.box[2], line.box[3] - top), fill=0)
    return mask
