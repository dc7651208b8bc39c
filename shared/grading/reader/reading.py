"""Reading: the answer in each question's area, with the confidence the reading earns.

The answer is read twice: from the detector's lines in the area, and by recognising the crop
around the area's ink as one line. Two agreeing readings are trusted more than one; readings that
disagree, and ink the text does not cover, lower the confidence. An area with no ink is a blank
answer, unless the answer was written into the question's own line (a blank in the prompt). The
dots of a remainder (5……3) drag a reading's score down, so its two numbers are read again apart
from them. Also here: the crops of chosen questions, cut from the pages as they were read, that a
cascade sends the vision model instead of whole pages.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from shared import ocr
from shared.grading.answer_key import AnswerKey, KeyQuestion, QuestionType, choice_letters
from shared.grading.reader.layout import (
    ANSWER_MARK,
    END_MARKS,
    Anchor,
    answer_ink,
    find_anchors,
    in_reading_order,
    ink_beside,
    is_footer,
    is_heading,
    is_options_line,
    is_printed,
    next_in_row,
    normalise_text,
    question_line,
    row_overlap,
)
from shared.grading.reader.scanning import PageScan, scan_pages

MIN_INK_PIXELS = 40  # fewer ink pixels than this in an answer area is a speck, not writing
AGREED_MIN_SCORE, AGREED_CONFIDENCE = 0.5, 0.92  # all readings agreeing, the best at least this sure
AGREED_READINGS = 4  # the detector's lines and the three whole-line readings
PAGE_FOOT = 0.05  # the foot of the page, where its number is printed, is no question's area
MARGIN_GAP = 0.01  # a binding margin ends this share of the page width left of the question numbers
ReadingState = Literal["read", "blank", "illegible", "not_found"]


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
    agreeing: int = 0  # how many readings of the writing (cut and cleaned differently) gave this text
    # The likeliest the recogniser found any of the key's forms to be the writing, over its whole
    # readings (None: not measured): near nought, a reading that misses the key is no misreading of it.
    key_likelihood: float | None = None
    # How likely the key's answer is with a minus before it, over without (where it has none), in
    # the reading that finds it likeliest so: near 1, a minus it did not read may be there.
    minus_odds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AnswerReading:
        region = value.get("region")
        return cls(**{**value, "region": tuple(region) if region else None})


_TIMES = str.maketrans({"×": "x", "*": "x"})


def _beyond_print(line_text: str, prompt: str) -> list[str]:
    """The runs of a question's line that are not its printed prompt, in order."""
    # the recogniser reads a printed times sign as x: the same print, not an answer's letter
    said, printed = normalise_text(line_text).translate(_TIMES), normalise_text(prompt).translate(_TIMES)
    matcher = difflib.SequenceMatcher(None, said, printed, autojunk=False)
    return [said[i1:i2] for tag, i1, i2, _j1, _j2 in matcher.get_opcodes() if tag in ("delete", "replace")]


def _inserted_text(line_text: str, prompt: str, separator: str = "") -> str:
    """What a question's printed line holds beyond the key's prompt: an answer written in a blank.
    For a blanks question, answers with print between them are kept apart by `separator`."""
    if not normalise_text(prompt):
        return ""
    parts = [part.strip("()（）[]【】") for part in _beyond_print(line_text, prompt) if re.search(r"\w", part)]
    return separator.join(part for part in parts if part)  # a misread sign is not one


def _extra_marks(line_text: str, prompt: str) -> str:
    """What a question's line holds beyond its printed prompt, signs and brackets included (which
    `_inserted_text` leaves out as no answer): a mark the recogniser may have made of writing."""
    return "".join(_beyond_print(line_text, prompt))


# An answer found inside a printed line, read once, is never trusted as a verdict on its own.
INLINE_ONCE = 0.85


def _inline_reading(
    page: PageScan,
    on_line: list[ocr.TextLine],
    question: KeyQuestion,
    text: str,
    where: dict[str, Any],
    note: str,
    score: float | None = None,
) -> AnswerReading:
    """An answer found inside the question's line, read a second time on its own (cut from where it
    sits in the line): two readings that agree are trusted as any two are; one is not. `score`:
    the first reading's, by default the line's, never more than INLINE_ONCE. Where they agree,
    the second reading also weighs the key's answer in its place (the print around it kept)."""
    if score is None:
        score = min(min(l.score for l in on_line), INLINE_ONCE)
    second = _read_again(page, on_line, text, written_forms(question))
    text = clean_reading(text)  # found in the line as read; its remainder dots as one form
    if second is not None and normalise_text(second.text) == normalise_text(text):
        alike = all(normalise_text(other) == normalise_text(text) for other, _score in second.others)
        if alike and min(s for _t, s in second.others) >= AGREED_MIN_SCORE:
            # the line's reading and its place read three ways more, all alike: as sure as the
            # four readings of a region agreeing
            return AnswerReading(
                question.id, "read", text, round(max(score, second.score, AGREED_CONFIDENCE), 4), **where,
                note=f"{note}; read four times alike", agreeing=AGREED_READINGS, key_likelihood=second.key_likelihood,
            )  # fmt: skip
        return AnswerReading(
            question.id,
            "read",
            text,
            round(max(score, second.score), 4),
            **where,
            note=f"{note}; read twice",
            key_likelihood=second.key_likelihood,
        )
    return AnswerReading(question.id, "read", text, round(score, 4), **where, note=note)


@dataclass(frozen=True)
class ReadAgain:
    """An answer found in its line, recognised again from its place in the line."""

    text: str  # without the print beside it that the cut took in
    score: float
    key_likelihood: float | None
    # its place read with a wide white border, and as its ink alone, where `text` agrees with the
    # line's reading (else not read: never weighed)
    others: list[tuple[str, float]]


def _read_again(page: PageScan, on_line: list[ocr.TextLine], text: str, forms: list[str]) -> ReadAgain | None:
    """Recognise `text` again from the part of its line where it sits, with a little margin; None
    when it cannot be placed. Also the likeliest of the key's `forms` in the answer's place in what
    was read again (None where it cannot be known: no forms, the answer not found in it, or a
    character the recogniser does not know), and, where it agrees with `text`, the place read two
    ways more: with a wide white border, and as its ink alone in black on white.

    Several blanks' answers (`6；7`) are each read again from their own place, in order along the
    line, and agree only where every one does."""
    parts = text.split("；")
    if len(parts) > 1:
        return _read_parts_again(page, on_line, parts)
    wanted = normalise_text(text).translate(_TIMES)
    for line in on_line:
        found = _place_in_line(page, line, wanted)
        if found is not None:
            return _read_place(page, line, found, text, forms)
    return None


@dataclass(frozen=True)
class _Place:
    """Where an answer stands in its line: its left and right x on the page, and the line's text
    (normalised) before and after it."""

    left: float
    right: float
    before: str
    after: str


def _line_characters(page: PageScan, line: ocr.TextLine) -> list[tuple[str, float, float]]:
    """The line read again on its own, each character (normalised; those normalising to nothing
    dropped) with the x span it stands over on the page: from half way to the character before to
    half way to the one after (the recogniser's column for each)."""
    said, places = ocr.recognise_places(page.image.crop(line.box))
    # a point or a comma inside the line stays (normalise_text strips them only at the ends)
    kept = [
        (normalise_text(char) if char.strip(END_MARKS) else unicodedata.normalize("NFKC", char), x)
        for char, x in zip(said, places)
    ]
    kept = [(char, x) for char, x in kept if char]
    chars = []
    for n, (char, x) in enumerate(kept):
        before = kept[n - 1][1] if n else x - line.height / 2
        after = kept[n + 1][1] if n + 1 < len(kept) else x + line.height / 2
        chars.append((char, line.box[0] + (before + x) / 2, line.box[0] + (x + after) / 2))
    return chars


def _place_in_line(
    page: PageScan,
    line: ocr.TextLine,
    wanted: str,
    start: int = 0,
    last: bool = True,
    chars: list[tuple[str, float, float]] | None = None,
) -> _Place | None:
    """Where `wanted` (normalised, a times sign as x) stands in `line`: placed by the recogniser's
    own columns where the line read again on its own holds it, else by its characters' share of
    the line's width as first read; the last such place (the first at or after `start` where not
    `last`). `chars`: the line's characters where they were already read again."""
    if not wanted:
        return None
    chars = _line_characters(page, line) if chars is None else chars
    said = "".join(char for char, _l, _r in chars).translate(_TIMES)
    if len(said) == len(chars):  # one character each: the columns place it
        at = said.rfind(wanted) if last else said.find(wanted, start)
        if at >= 0:
            end = at + len(wanted)
            return _Place(chars[at][1], chars[end - 1][2], said[:at], said[end:])
    said = normalise_text(line.text).translate(_TIMES)
    at = said.rfind(wanted) if last else said.find(wanted, start)
    if at < 0:
        return None
    width = line.box[2] - line.box[0]
    end = at + len(wanted)
    return _Place(line.box[0] + width * at / len(said), line.box[0] + width * end / len(said), said[:at], said[end:])


def _read_place(page: PageScan, line: ocr.TextLine, place: _Place, text: str, forms: list[str]) -> ReadAgain:
    """`text`, found at `place` in `line`, recognised again from there (see _read_again)."""
    pad = max(6, line.height // 3)
    box = (
        max(0, round(place.left - pad)),
        max(0, line.box[1] - pad // 2),
        min(page.image.width, round(place.right + pad)),
        min(page.image.height, line.box[3] + pad // 2),
    )
    crop = page.image.crop(box)
    again, score, likely = ocr.recognise_likely(
        crop, lambda read: [read.replace(text, form, 1) for form in forms] if text in read else []
    )
    said = normalise_text(clean_reading(text))

    def as_said(read: str) -> str:  # a times sign read as x where `text` has the other: the same
        read = _trimmed(clean_reading(read), place.before, place.after)
        return said if read.translate(_TIMES) == said.translate(_TIMES) else read

    again = as_said(again)
    others: list[tuple[str, float]] = []
    if again == said:  # read further only where it agrees
        others = [
            ocr.recognise(ImageOps.expand(crop, border=line.height // 2, fill=255)),
            ocr.recognise(ImageOps.expand(ImageOps.invert(page.ink.crop(box)), border=line.height // 3, fill=255)),
        ]
    return ReadAgain(again, score, _likeliest(list(likely.values())), [(as_said(t), s) for t, s in others])


def _read_parts_again(page: PageScan, on_line: list[ocr.TextLine], parts: list[str]) -> ReadAgain | None:
    """Each blank's answer read again from its own place, the places in order along the line (a
    `6` and a `6` are two places, not one read twice); None unless every one is placed."""
    lines = sorted(on_line, key=lambda line: line.box[0])
    again: list[ReadAgain] = []
    at_line, start = 0, 0
    read: dict[int, list[tuple[str, float, float]]] = {}  # each line's characters, read again once
    for part in parts:
        wanted = normalise_text(part).translate(_TIMES)
        while at_line < len(lines):
            if at_line not in read:
                read[at_line] = _line_characters(page, lines[at_line])
            place = _place_in_line(page, lines[at_line], wanted, start, last=False, chars=read[at_line])
            if place is not None:
                again.append(_read_place(page, lines[at_line], place, part, []))
                start = len(place.before) + len(wanted)
                break
            at_line, start = at_line + 1, 0
        else:
            return None
    others: list[tuple[str, float]] = []
    if all(len(one.others) == 2 for one in again):
        others = [
            ("；".join(one.others[k][0] for one in again), min(one.others[k][1] for one in again)) for k in (0, 1)
        ]
    return ReadAgain("；".join(one.text for one in again), min(one.score for one in again), None, others)


def _trimmed(read: str, before: str, after: str) -> str:
    """What was read again in an answer's place in its line, without the print beside it there
    that the cut took in: the end of the line's text `before` the answer at its start, the start
    of the text `after` it at its end (`3000克` cut from `3千克=3000克` is `3000`)."""
    said = normalise_text(read)
    for n in range(min(len(before), len(said) - 1), 0, -1):
        if said.startswith(before[-n:]):
            said = said[n:]
            break
    for n in range(min(len(after), len(said) - 1), 0, -1):
        if said.endswith(after[:n]):
            said = said[:-n]
            break
    return said


_BRACKETS = re.compile(r"[(（]\s*([^（()）]*?)\s*[)）]")
_BLANK_MARK = re.compile(r"[(（]\s*[)）]|_{2,}")  # an empty blank: the answer is not after the '='


_OPERATION = re.compile(r"[=＝+\-−×÷<>]")


def _answer_boxes(anchor: Anchor, on_line: list[ocr.TextLine]) -> str:
    """The text of boxes on the question's row, besides its number's, that hold no operation."""
    parts = [l.text for l in on_line if l is not anchor.line and not _OPERATION.search(l.text)]
    parts = [normalise_text(part) for part in parts if re.search(r"\w", part)]
    return "；".join(parts) if len(parts) > 1 else "".join(parts)


def _bracket_contents(line_text: str) -> list[str]:
    """What is written inside the brackets of a line, when every bracket holds something and the
    brackets are not a calculation's signed operands ("(-15) + 25 =": print, the answer is after =)."""
    text = unicodedata.normalize("NFKC", line_text)
    # a point before the first digit stays: a 0 the recogniser dropped from 0.6 is not 6
    contents = [("." if _POINT_FIRST.match(c) else "") + normalise_text(c) for c in _BRACKETS.findall(text)]
    if not contents or not all(contents):
        return []
    last_bracket = max(text.rfind(")"), text.rfind("）"))
    if all(_SIGNED.match(c) for c in contents) and "=" in text[last_bracket:]:
        return []
    return contents


_SIGNED = re.compile(r"^[-+−]\d")
_POINT_FIRST = re.compile(r"^\s*[.．·]\s*\d")


_EQUALS_ANSWER = re.compile(r"[=＝]\s*(?P<answer>[^=＝]*\w[^=＝]*)$")


def _after_equals(line_text: str) -> str:
    """What is written after a calculation's last '=' (on a line without the key's prompt)."""
    match = _EQUALS_ANSWER.search(unicodedata.normalize("NFKC", line_text).strip())
    return normalise_text(match.group("answer")) if match else ""


def _blank_before_equals(line_text: str, forms: list[str]) -> bool:
    """Whether a calculation line's answer may stand before its last '=': an operation there has
    no number after its sign (`6+=10`: the 4 between them unread), or one of the key's `forms`
    stands there on its own, not inside a longer number (`6+4=10`, key 4)."""
    before = normalise_text(line_text).rpartition("=")[0].rstrip()
    if before and before[-1] in "+-−×÷*/":  # not x: `3x=` is algebra, not a times sign read as x
        return True
    return any(re.search(rf"(?<![\d.]){re.escape(form)}(?![\d.])", before) for form in forms if form)


# A choice answer: a letter (or letters) written inside the question's brackets: （ B ）.
_BRACKETED = re.compile(r"[(（]\s*([A-Ha-h]{1,4})\s*[)）]")


def _bracketed_letter(anchor: Anchor, on_line: list[ocr.TextLine]) -> tuple[str, float] | None:
    """The option letter(s) written in the brackets on a choice question's own line."""
    for line in [anchor.line, *[l for l in on_line if l is not anchor.line]]:
        text = line.text[len(line.text) - len(anchor.rest) :] if line is anchor.line else line.text
        found = _BRACKETED.findall(unicodedata.normalize("NFKC", text))
        if found:
            return choice_letters(found[-1]), line.score
    return None


_UNCLOSED = re.compile(r"[(（]\s*$")  # the line cut off after "（"
_EMPTY_BRACKETS = re.compile(rf"[(（]\s*[)）]|{_UNCLOSED.pattern}")  # read empty, or cut off
_BRACKETS_READ = re.compile(r"[(（]\s*[^()（）]{0,2}?\s*(?:[)）]|$)")
LETTER_LEADS = 10.0  # the likeliest option letter, this many times likelier than any other
LETTER_LEAST = 0.01  # and at least this share of the likelihood of the brackets left empty
EMPTY_LEADS = 1000.0  # the brackets left empty this many times likelier than every letter: left empty
EMPTY_BRACKETS = 0.9  # how sure a choice left blank is, its brackets weighed so
UNCLOSED_REACH = 4  # line heights read on past a line that ends at its opening bracket


def _weighed_letter(page: PageScan, anchor: Anchor, question: KeyQuestion) -> str | None:
    """A choice letter the recogniser dropped from its brackets ("3千克=（）克" where a curly C is
    written, or the line cut off at "（"): the question's line read again, each option letter
    weighed in its last brackets (the print around kept); the one far likelier than every other
    letter and than nothing; "" where nothing in them is EMPTY_LEADS times likelier than every
    letter (the brackets left empty); else None."""
    line = anchor.line
    text = unicodedata.normalize("NFKC", line.text)
    if not _EMPTY_BRACKETS.search(text):
        return None
    pad = max(6, line.height // 3)
    reach = UNCLOSED_REACH * line.height if _UNCLOSED.search(text) else pad
    crop = page.image.crop(
        (
            max(0, line.box[0] - pad),
            max(0, line.box[1] - pad // 2),
            min(page.image.width, line.box[2] + reach),
            min(page.image.height, line.box[3] + pad // 2),
        )
    )
    letters = sorted(question.options) if question.options else list("ABCD")
    tried: list[tuple[str, str]] = []  # (what is in the brackets, the line so)

    def forms(read: str) -> list[str]:
        read = unicodedata.normalize("NFKC", read)
        found = list(_BRACKETS_READ.finditer(read))
        if not found:
            return []
        before, after = read[: found[-1].start()], read[found[-1].end() :]
        tried.extend((inside, f"{before}{o}{inside}{c}{after}") for inside in [*letters, ""] for o, c in ("()", "（）"))
        return [form for _inside, form in tried]

    _text, _score, likely = ocr.recognise_likely(crop, forms)
    if not tried or any(value is None for value in likely.values()):
        return None  # no brackets read again, or print the recogniser does not know
    chance: dict[str, float] = {}
    for inside, form in tried:
        chance[inside] = max(chance.get(inside, 0.0), likely.get(form) or 0.0)
    nothing = chance.pop("")
    ranked = sorted(chance, key=chance.__getitem__, reverse=True)
    best = chance[ranked[0]]
    runner_up = chance[ranked[1]] if len(ranked) > 1 else 0.0
    if best > 0 and best >= LETTER_LEAST * nothing and best >= LETTER_LEADS * runner_up:
        return ranked[0]
    if nothing > 0 and nothing >= EMPTY_LEADS * best and not _ink_in_brackets(page, line):
        return ""
    return None


def _ink_in_brackets(page: PageScan, line: ocr.TextLine) -> bool:
    """Whether there is writing between the line's last opening bracket and the closing one after
    it, from the column the recogniser emitted one at to the other's: ink there that touches
    neither end (a bracket's stroke the span cuts does). A letter the recogniser weighs as nothing
    (a B written like ß) is still writing, and brackets that hold it are not empty. Where no
    closing bracket follows (the line cut off at the opening one), the weighing alone decides: no
    ink is known."""
    chars = _line_characters(page, line)
    opening = [n for n, (char, _l, _r) in enumerate(chars) if char == "("]
    if not opening:
        return True  # the brackets cannot be placed: not known to be empty
    first = opening[-1]
    closing = next((n for n in range(first + 1, len(chars)) if chars[n][0] == ")"), None)
    if closing is None:
        return False
    left, right = (round((chars[n][1] + chars[n][2]) / 2) for n in (first, closing))  # their columns
    if right - left < 3:
        return False
    inside = np.asarray(page.ink.crop((left, line.box[1], right, line.box[3]))) > 0
    count, _labels, stats, _centres = cv2.connectedComponentsWithStats(inside.astype(np.uint8), connectivity=8)
    apart = [
        stats[n, cv2.CC_STAT_AREA]
        for n in range(1, count)
        if stats[n, cv2.CC_STAT_LEFT] > 0 and stats[n, cv2.CC_STAT_LEFT] + stats[n, cv2.CC_STAT_WIDTH] < inside.shape[1]
    ]
    return sum(apart) >= MIN_INK_PIXELS


def read_answers(pages: list[PageScan], key: AnswerKey) -> dict[str, AnswerReading]:
    anchors = find_anchors(pages, key)
    ordered = sorted(anchors.items(), key=lambda item: (item[1].page, item[1].line.box[1]))
    every = [anchor for _qid, anchor in ordered]
    rights = {qid: next_in_row(anchor, every) for qid, anchor in ordered}
    on_lines = {qid: question_line(pages[anchor.page], anchor, rights[qid]) for qid, anchor in ordered}
    claimed = {id(line) for lines in on_lines.values() for line in lines}
    heights = sorted(anchor.line.height for _qid, anchor in ordered)
    print_height = heights[len(heights) // 2] if heights else 0
    # Left of every question number on a page is its binding margin (密封线, the pupil's details
    # printed sideways), never an answer.
    margins = {
        number: _margin([a for a in every if a.page == number], pages[number]) for number in {a.page for a in every}
    }
    readings = {}
    for qid, anchor in ordered:
        page = pages[anchor.page]
        question = next(q for q in key.questions if q.id == qid)
        # The area ends at the next row's question (a question beside it on its row ends it no
        # lower), and a second column's question starts its area at its own number.
        lower = [a.line.box[1] for a in every if a.page == anchor.page and a.line.box[1] > anchor.line.box[3] - 2]
        bottom = min(lower) if lower else round((1 - PAGE_FOOT) * page.image.height)
        left = margins[anchor.page]
        if any(rights[q] == anchor.line.box[0] and a.page == anchor.page for q, a in ordered if a is not anchor):
            left = max(left, anchor.line.box[0] - round(MARGIN_GAP * page.image.width))
        readings[qid] = _read_area(
            page, anchor, on_lines[qid], claimed, question, (bottom, left), print_height, rights[qid]
        )
    for question in key.questions:
        if question.id not in readings:
            readings[question.id] = AnswerReading(
                question.id, "not_found", "", 0.0, note="the question's number was not found on the pages"
            )
    return {q.id: readings[q.id] for q in key.questions}


MARGIN_OUTLIER = 0.02  # of the page width: a question line starting further left of most took in the margin


def _margin(anchors: list[Anchor], page: PageScan) -> int:
    """Where a page's binding margin ends: a little left of its leftmost question line, leaving
    out a line the detector ran on into the margin (a 密 printed beside the number boxed with it:
    the dashed line left of it then lay in the answer areas and read as a 1)."""
    lefts = sorted(anchor.line.box[0] for anchor in anchors)
    usual = lefts[len(lefts) // 4]  # most question lines start at or right of this
    leftmost = min(left for left in lefts if left >= usual - MARGIN_OUTLIER * page.image.width)
    return leftmost - round(MARGIN_GAP * page.image.width)


_DOTS = re.compile(r"(?<=\d)\s*[.·…⋯・?]{3,}\s*(?=\d)")


def clean_reading(text: str) -> str:
    """OCR reads the remainder dots of 23÷4=5……3 as any run of dots, middle dots and the odd '?'."""
    return _DOTS.sub("……", text.strip())


def _read_area(
    page: PageScan,
    anchor: Anchor,
    on_line: list[ocr.TextLine],
    claimed: set[int],
    question: KeyQuestion,
    below: tuple[int, int],
    print_height: int,
    right: int | None = None,
) -> AnswerReading:
    """Read one question's answer area (down to `bottom`, right of the page's `margin`): blank,
    one reading or two, with the confidence earned."""
    bottom, margin = below
    typical = page.line_height
    # Below the printed line and clear of its descenders, which its box may leave out.
    top = max(l.box[3] for l in on_line) + max(2, typical // 6)
    limit = right if right is not None else page.image.width + 1  # a second column's question starts there
    in_area = [
        l
        for l in page.lines
        if id(l) not in claimed and top - 2 <= l.centre_y < bottom and l.box[2] > margin and l.box[0] < limit
    ]
    # A line mostly left of the margin is the margin's print, reaching past it (密 or 线 of a
    # sealing line printed sideways, beside the numbers): never read, its ink left out.
    in_margin = [l for l in in_area if (l.box[0] + l.box[2]) / 2 < margin]
    in_area = [l for l in in_area if l not in in_margin]
    printed_prompt = normalise_text(question.prompt)
    printed = [
        l
        for l in in_area
        if is_printed(l, anchor.line, printed_prompt, page.image.width)
        or is_footer(l, page.image.height, page.image.width)
        or is_options_line(l, in_area)
    ]
    headings = [l for l in printed if is_heading(l)]
    if headings:  # the answer area ends where the next section begins
        bottom = min(bottom, min(l.box[1] for l in headings))
        in_area = [l for l in in_area if l.centre_y < bottom]
        printed = [l for l in printed if l.centre_y < bottom]
    written = in_reading_order(l for l in in_area if l not in printed)
    where = {
        "page": page.number,
        "region": (0, max(0, anchor.line.box[1] - 4), page.image.width, bottom),
        "line_height": typical,
    }
    mask = answer_ink(page, top, bottom, printed + in_margin, margin, right)
    ink_pixels = mask.histogram()[255]
    box = mask.getbbox() if ink_pixels >= MIN_INK_PIXELS else None

    if question.type == QuestionType.choice and (letter := _bracketed_letter(anchor, on_line)) is not None:
        text, score = letter
        return _inline_reading(page, on_line, question, text, where, "the letter in the brackets", score)
    if question.type == QuestionType.choice and box is None and not written:
        if (weighed := _weighed_letter(page, anchor, question)) == "":
            return AnswerReading(
                question.id, "blank", "", EMPTY_BRACKETS, **where,
                note="the brackets read empty; nothing in them far likelier than every option letter",
            )  # fmt: skip
        if weighed is not None:
            return AnswerReading(
                question.id, "read", weighed, INLINE_ONCE, **where,
                note="the brackets read empty; the option letters weighed in them, one far likelier",
            )  # fmt: skip
    if box is None and not written:
        line_text = _row_read(anchor, on_line)
        separator = "；" if question.type == QuestionType.blanks else ""
        if inline := _inserted_text(line_text, question.prompt, separator):  # written into the question's blank
            return _inline_reading(page, on_line, question, inline, where, "read from the question's own line")
        if printed:  # text was found here, and taken for the prompt: perhaps wrongly
            return AnswerReading(
                question.id, "blank", "", 0.6, **where, note="only text resembling the question was found under it"
            )
        last = max(on_line, key=lambda l: l.box[2])
        taller = any(l.height > 1.3 * print_height for l in on_line)  # print and something taller
        unread = last.text != last.text.rstrip() or _OPEN_END.search(last.text)  # the answer's place, empty
        if (taller or unread) and (tail := _read_beside(page, last, right, tail=True)):
            # The detector boxed the writing with the print and the recogniser dropped it: the
            # last run of ink in the line, after a gap, read on its own.
            return AnswerReading(
                question.id, "read", tail.text, round(tail.confidence, 4), **where,
                note="; ".join(["read from the end of the question's line", *tail.notes]), agreeing=tail.agreeing,
            )  # fmt: skip
        if taller:
            return AnswerReading(
                question.id, "blank", "", 0.6, **where, note="the question's line holds more than its print, unread"
            )
        if not question.prompt and (filled := _bracket_contents(line_text)):
            # No prompt to subtract: what is written inside the line's brackets is the answer.
            answer = separator.join(filled)
            return _inline_reading(page, on_line, question, answer, where, "read inside the brackets")
        if not question.prompt and (apart := _answer_boxes(anchor, on_line)):
            # Written apart from the print (the detector boxed it alone), with no operation in it.
            return _inline_reading(page, on_line, question, apart, where, "read beside the question")
        if not question.prompt and not _BLANK_MARK.search(line_text) and (after := _after_equals(line_text)):
            # No prompt to subtract: a calculation's answer is what follows its last '='.
            forms = written_forms(question)
            if after not in forms and _blank_before_equals(line_text, forms):
                # The blank may be before the '=' (`6+=10`, or `6+4=10` with the key 4), filled so
                # the recogniser saw no blank, and what follows the '=' the print.
                return AnswerReading(
                    question.id, "read", after, 0.5, **where,
                    note="read after the question's '='; the answer may stand before it",
                )  # fmt: skip
            return _inline_reading(page, on_line, question, after, where, "read after the question's '='")
        if (beside := _read_beside(page, last, right)) is not None:
            return AnswerReading(
                question.id, "read", beside.text, round(beside.confidence, 4), **where,
                note="; ".join(["read from the ink beside the printed line", *beside.notes]), agreeing=beside.agreeing,
            )  # fmt: skip
        if not question.prompt and (anchor.rest.strip() or len(on_line) > 1):
            # Without the question's text, print and an answer written into the line look alike.
            return AnswerReading(
                question.id, "blank", "", 0.5, **where, note="the question's line has text the key does not give"
            )
        unread_tail = any(l.text != l.text.rstrip() for l in on_line)  # the detector saw more than it read
        if unread_tail or ink_beside(page, max(on_line, key=lambda l: l.box[2]), right) >= MIN_INK_PIXELS:
            return AnswerReading(
                question.id, "blank", "", 0.5, **where, note="there is writing beside the question, unread"
            )
        if question.type == QuestionType.choice:  # the letter sits inside the printed line: unseen is not blank
            return AnswerReading(question.id, "blank", "", 0.6, **where, note="no letter was read in the brackets")
        if _BLANK_MARK.search(question.prompt):  # the answer goes inside the line, where the recogniser may drop it
            return AnswerReading(
                question.id, "blank", "", 0.6, **where, note="nothing was read in the question's blank, inside its line"
            )
        if marks := _extra_marks(line_text, question.prompt):
            # The recogniser saw more than the print (`tan45°=)`: a written 1 read as a bracket).
            return AnswerReading(
                question.id, "blank", "", 0.6, **where, note=f"the line holds {marks!r} beyond its print, unread"
            )
        return AnswerReading(question.id, "blank", "", 0.95, **where)

    det_text = clean_reading(" ".join(l.text for l in written))
    det_score = min((l.score for l in _scored_lines(written, question)), default=0.0)
    readings = [(det_text, det_score)]
    key_likelihood = minus_odds = None
    if box is not None and box[3] - box[1] <= 2.2 * typical:  # one line of writing: read it whole
        area = page.image.crop((0, top, page.image.width, top + mask.height))
        whole, key_likelihood, minus_odds = whole_readings_against(area, mask, box, typical, written_forms(question))
        readings += whole
    if not any(text for text, _score in readings):
        return AnswerReading(
            question.id, "illegible", "", 0.0, **where, note="there is writing here that the offline reader cannot read"
        )
    voted = vote(readings)
    text, confidence, notes = voted.text, voted.confidence, voted.notes
    if box is not None and (
        apart := remainder_apart(text, page.image.crop((box[0], top + box[1], box[2], top + box[3])), mask.crop(box))
    ):
        confidence = max(confidence, apart)
        notes = [n for n in notes if n != "read once"] + [REMAINDER_APART]
    if box is not None and written and not read_whole(readings[1:], text):
        share = _share_read(mask, written, top, ink_pixels)
        if share < 0.75:
            confidence *= 0.7
            notes.append(f"only {share:.0%} of the writing was read")
    return AnswerReading(
        question.id,
        "read",
        text,
        round(confidence, 4),
        **where,
        note="; ".join(notes),
        agreeing=voted.agreeing,
        key_likelihood=key_likelihood,
        minus_odds=minus_odds,
    )


def _row_read(anchor: Anchor, on_line: list[ocr.TextLine]) -> str:
    """The question's line as read: the text after its number, then the other boxes of its line
    in the order found, a character that two boxes side by side and overlapping both read given
    once (the detector boxed `1.3千克=3` and `3000克` for 3 千克 = 3000 克: not 33000)."""
    text, before = anchor.rest, anchor.line
    for line in (l for l in on_line if l is not anchor.line):  # in the order found (a stacked fraction's rows)
        said = line.text
        side_by_side = row_overlap(before.box, line.box) >= 0.5 and before.box[0] < line.box[0] < before.box[2]
        if side_by_side and said:
            width = (line.box[2] - line.box[0]) / len(said)
            shared = min(len(said), round((before.box[2] - line.box[0]) / max(1.0, width)))
            while shared and not text.endswith(said[:shared]):
                shared -= 1
            said = said[shared:]
        text, before = text + said, line
    return text


def _read_beside(page: PageScan, line: ocr.TextLine, right: int | None, tail: bool = False) -> Vote | None:
    """Writing right of a question's printed line that the detector left out (faint pencil): its
    ink cut from the row, up to the next question on the row, and recognised whole three ways;
    with `tail`, the last run of ink inside the line's own box, after a gap, and what follows it.
    None when there is none, or nothing is read."""
    pad = max(4, line.height // 5)
    start = line.box[2] + pad
    if tail:
        if (start := _last_run(page, line)) is None:
            return None
    elif ink_beside(page, line, right) < MIN_INK_PIXELS:
        return None
    limit = right if right is not None else page.image.width
    band = (
        start,
        max(0, line.box[1] - line.height // 3),
        max(line.box[2] + pad + 1, limit - pad),
        min(page.image.height, line.box[3] + line.height // 3),
    )
    mask = page.ink.crop(band)
    if mask.histogram()[255] < MIN_INK_PIXELS or (box := mask.getbbox()) is None:
        return None
    readings = whole_readings(page.image.crop(band), mask, box, page.line_height)
    # the blank's brackets are print, and so is a calculation up to its '='
    readings = [(re.split(r"[=＝]", text)[-1].strip(_PRINTED_ENDS), score) for text, score in readings]
    if not any(text for text, _score in readings):
        return None
    return vote(readings)


_PRINTED_ENDS = "()（）。，, "


# a blank's bracket opened and nothing read in it, or a calculation's '=' with nothing after it
_OPEN_END = re.compile(r"[(（=＝]\s*$")
TAIL_GAP = 0.4  # of the page's printed line: the gap between print and an answer written after it


def _last_run(page: PageScan, line: ocr.TextLine) -> int | None:
    """Where the last run of ink in a line's box begins, after a gap of at least TAIL_GAP of a
    printed line; None when the line has no such gap (or its ink is all one run)."""
    columns = np.asarray(page.ink.crop(line.box)).max(axis=0) > 0
    gap, needed, start = 0, max(4, round(TAIL_GAP * page.line_height)), None
    for x, inked in enumerate(columns):
        if not inked:
            gap += 1
        else:
            if gap >= needed and x > gap:  # ink before the gap too
                start = x
            gap = 0
    return None if start is None else line.box[0] + start - max(2, page.line_height // 8)


def read_whole(whole: list[tuple[str, float]], text: str) -> bool:
    """A reading of the writing's whole ink box gave `text`: no part of the ink went unread,
    whatever the detector's lines cover."""
    return any(normalise_text(said) == normalise_text(text) for said, _score in whole if said)


def _scored_lines(written: list[ocr.TextLine], question: KeyQuestion) -> list[ocr.TextLine]:
    """The lines whose reading the verdict rests on: for a word problem, its 答： line and what
    follows (the working above is kept for review, never compared), else every line."""
    if question.type != QuestionType.word:
        return written
    answer_lines = [n for n, line in enumerate(written) if ANSWER_MARK.search(line.text)]
    return written[answer_lines[-1] :] if answer_lines else written


_REMAINDER_READ = re.compile(r"^(\d+)……(\d+)$")
REMAINDER_APART = "the numbers read again apart from the dots"


def remainder_apart(text: str, image: Image.Image, mask: Image.Image) -> float | None:
    """The dots of 5……3 drag a line's score down: where `text` is a remainder, its two numbers
    read again on their own (`image` and `mask`: the writing's box); the lower of their scores
    where both read as in `text`, else None."""
    if not (match := _REMAINDER_READ.match(text)):
        return None
    parts = _remainder_parts(image, mask)
    if parts is None or parts[0][0] != match.group(1) or parts[1][0] != match.group(2):
        return None
    return min(parts[0][1], parts[1][1])


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
    left, right = spans[: match.end(1)], spans[match.start(3) :]
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


def whole_readings(
    crop: Image.Image, mask: Image.Image, ink_box: tuple[int, int, int, int], line_height: int
) -> list[tuple[str, float]]:
    """One line of writing recognised whole three ways: cut close, with a wide white border, and
    as its ink alone in black on white (a faint pencil or a shadow read apart from its paper)."""
    return whole_readings_against(crop, mask, ink_box, line_height, [])[0]


def whole_readings_against(
    crop: Image.Image, mask: Image.Image, ink_box: tuple[int, int, int, int], line_height: int, forms: list[str]
) -> tuple[list[tuple[str, float]], float | None, float | None]:
    """`whole_readings`, the likeliest any of the key's `forms` is in any of the three (the
    recogniser's own P(form | image), None where it cannot be known: no forms, or a character the
    recogniser does not know), and the most, over the three, that the key's answer with a minus
    before it is as likely as without (P(-form) / P(form); None where every form is signed, or
    the key is not weighed)."""
    signed = [f"-{form}" for form in forms if form[:1] not in "-−+±"]
    pad = max(4, line_height // 6)
    close = crop.crop(
        (
            max(0, ink_box[0] - pad),
            max(0, ink_box[1] - pad),
            min(crop.width, ink_box[2] + pad),
            min(crop.height, ink_box[3] + pad),
        )
    )
    bordered = ImageOps.expand(crop.crop(ink_box), border=line_height // 2, fill=255)
    ink_only = ImageOps.expand(ImageOps.invert(mask.crop(ink_box)), border=line_height // 3, fill=255)
    readings, likeliest, odds = [], [], []
    for image in (close, bordered, ink_only):
        text, score, likely = ocr.recognise_likely(image, forms + signed)
        readings.append((clean_reading(text), score))
        weighed = [likely[form] for form in forms]
        likeliest.extend(weighed)
        plain, minus = _likeliest(weighed), _likeliest([likely[form] for form in signed])
        odds.append(minus / plain if plain and minus is not None else None)
    return readings, _likeliest(likeliest), _likeliest(odds)


def _likeliest(likely: list[float | None]) -> float | None:
    """The largest, where every one is known."""
    known = [p for p in likely if p is not None]
    return max(known) if known and len(known) == len(likely) else None


def written_forms(question: KeyQuestion) -> list[str]:
    """The key's answer as a pupil may write it on one line: the answer and its accepted forms,
    without spaces (none for blanks, read one blank at a time, or a question without an answer)."""
    if question.type == QuestionType.blanks or not question.answer:
        return []
    return list(dict.fromkeys("".join(form.split()) for form in (question.answer, *question.accepted) if form.strip()))


@dataclass(frozen=True)
class Vote:
    text: str
    confidence: float
    notes: list[str]
    agreeing: int  # readings that gave this text


def vote(readings: list[tuple[str, float]]) -> Vote:
    """One answer from several readings of the same writing: the one most of them agree on (two
    or more: its best score), else the best-scored one trusted less (read once, or disagreeing)."""
    groups: dict[str, list[tuple[str, float]]] = {}
    for text, score in readings:
        if text:
            groups.setdefault(normalise_text(text), []).append((text, score))
    best = max(groups.values(), key=lambda group: (len(group), sum(score for _text, score in group)))
    text, score = max(best, key=lambda reading: reading[1])
    if len(best) >= AGREED_READINGS and len(best) == len(readings) and score >= AGREED_MIN_SCORE:
        # Every reading of the writing, cut and cleaned differently, landing on one text: the
        # engine's own score undersells that (measured: 28 of 60 answers, none misread). Three of
        # four agreeing is not enough: "12……3" was read "12." three times.
        return Vote(text, max(score, AGREED_CONFIDENCE), [f"{len(best)} of {len(readings)} readings agree"], len(best))
    if len(best) >= 2:
        return Vote(text, score, [f"{len(best)} of {len(readings)} readings agree"], len(best))
    if len(groups) == 1:
        return Vote(text, score * 0.85, ["read once"], 1)
    others = " / ".join(repr(t) for t, _s in readings if t)
    return Vote(text, min(s for _t, s in readings if _t) * 0.6, [f"the readings disagree ({others})"], 1)


def _share_read(mask: Image.Image, written: list[ocr.TextLine], top: int, ink_pixels: int) -> float:
    """How much of the area's ink lies inside the lines that were read."""
    covered = Image.new("L", mask.size, 0)
    for line in written:
        covered.paste(
            mask.crop((line.box[0], line.box[1] - top, line.box[2], line.box[3] - top)),
            (line.box[0], line.box[1] - top),
        )
    return covered.histogram()[255] / max(1, ink_pixels)


def read_paper(pages: list[bytes], key: AnswerKey) -> dict[str, AnswerReading]:
    """Read every key question's answer from a paper's pages (original uploads, in order)."""
    return read_answers(scan_pages(pages), key)


def question_crop(scans: list[PageScan], reading: AnswerReading) -> Image.Image | None:
    """A question's region cut from its page as it was read, down to its last ink; None when the
    question was not found."""
    if reading.page is None or reading.region is None:
        return None
    scan = scans[reading.page - 1]
    crop = scan.image.crop(reading.region)
    if (ink := scan.ink.crop(reading.region).getbbox()) is not None:  # the line down to its last ink
        crop = crop.crop((max(0, ink[0] - 10), 0, min(crop.width, ink[2] + 10), min(crop.height, ink[3] + 10)))
    return crop


CROP_LABEL_FONT_PX, CROP_GAP_PX = 22, 12  # a crop's label (taller than its print), the space between two
CROP_ROW_PX = 30  # a row is at least as tall as its label
CROP_LINE_PX = 16  # a crop's printed text is scaled to this height: handwriting stays legible


def crop_sheet(scans: list[PageScan], readings: list[AnswerReading], line_px: int = CROP_LINE_PX) -> Image.Image:
    """The questions of `readings` cut from the pages as they were read (upright, level, flattened:
    the readings' regions are in those pixels) and stacked into one greyscale image, each labelled
    with its number: what the cascade sends the vision model instead of whole pages."""
    crops = []
    for reading in readings:
        if (crop := question_crop(scans, reading)) is not None:
            crops.append((reading.question_id, crop, min(1.0, line_px / (reading.line_height or line_px))))
    if not crops:
        raise ValueError("no question could be located on the pages")
    return stack_crops(crops)


def label_width(question_ids: Iterable[str]) -> int:
    """The label column of a sheet of these questions' crops: as wide as its widest label (every
    pixel of width may cost a tile, or the low detail a small sheet could go at)."""
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    return 16 + max(round(draw.textlength(f"Q{qid}", font_size=CROP_LABEL_FONT_PX)) for qid in question_ids)


def stack_crops(crops: list[tuple[str, Image.Image, float]]) -> Image.Image:
    """Crops, each scaled as given, one under another, each labelled with its question's number on
    the left and ruled off from the next: one greyscale image."""
    scaled = [(qid, _scaled(crop, scale)) for qid, crop, scale in crops]
    label = label_width(qid for qid, _c in scaled)
    width = label + max(c.width for _q, c in scaled)
    height = sum(max(c.height, CROP_ROW_PX) + CROP_GAP_PX for _q, c in scaled)
    sheet = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(sheet)
    y = 0
    for qid, crop in scaled:
        draw.text((6, y + 4), f"Q{qid}", fill=0, font_size=CROP_LABEL_FONT_PX)
        sheet.paste(crop, (label, y))
        y += max(crop.height, CROP_ROW_PX)
        draw.line((0, y + 6, width, y + 6), fill=160, width=2)
        y += CROP_GAP_PX
    return sheet


def _scaled(image: Image.Image, scale: float) -> Image.Image:
    """Scaled so a text line is as tall as asked: enough for handwriting, few tiles."""
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)
