"""Marking: the verdict on each reading against the answer key, with a confidence per answer.

Mathematics is compared through the equivalence check (numbers, fractions, units, remainders),
other subjects by normalised text; knowledge points come from the answer key. A misreading that
lands exactly on the key is far less likely than one that misses it, so a right answer is trusted
more than the reading, and a wrong one less when it is a character or two from the key and was
read unsurely, or is not even a value where the key is one. Without an answer in the key nothing
can be marked.

Where the confidence is below the exam's threshold the answer goes to a teacher (provider `local`)
or to the vision model (provider `cascade`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from shared.grading.answer_key import Blank, KeyQuestion, QuestionType, choice_letters
from shared.grading.equivalence import equivalent, parse_value
from shared.grading.marks import QuestionMark
from shared.grading.reader.layout import ANSWER_MARK, NTH_QUESTION, normalise_text, printed_number
from shared.grading.reader.reading import AGREED_CONFIDENCE, AGREED_READINGS, AnswerReading


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
    signs = "±+-"
    if key.startswith("±") or answer.startswith("±"):  # "±3": a pair of values, each a value
        key, answer = key.lstrip(signs), answer.lstrip(signs)
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
            student_answer=reading.text,
            is_correct=False,
            score=0,
            knowledge_points=points,
            error_type="illegible",
            confidence=0.0,
            correction="",
            explanation="答案表没有给出这道题的答案，离线批改无法判分。"
            if zh
            else "The answer key gives no answer for this question, so offline marking cannot mark it.",
        )
    key = question.answer
    if reading.state in ("illegible", "not_found"):
        return QuestionMark(
            student_answer=reading.text,
            is_correct=False,
            score=0,
            knowledge_points=points,
            error_type="illegible",
            confidence=0.0,
            correction=f"答案：{key}" if zh else f"Answer: {key}",
            explanation=(
                "离线识别读不出这道题的答案，需要老师查看。"
                if zh
                else "The offline reader could not read this answer; a teacher must look at it."
            ),
        )
    # A word problem whose whole reading is its printed 答： (every way alike, the writing all read):
    # nothing written after it, and no working: blank, not an answer "答：".
    nothing_after = question.type == QuestionType.word and ANSWER_MARK.fullmatch(reading.text.strip()) is not None
    if reading.state == "blank" or nothing_after:
        confidence = reading.confidence
        if nothing_after and reading.agreeing < KEY_AGREED_READINGS:
            confidence = min(confidence, NOT_LIKE_THE_KEY)  # read so once or twice: a teacher looks
        return QuestionMark(
            student_answer="",
            is_correct=False,
            score=0,
            knowledge_points=points,
            error_type="blank",
            confidence=confidence,
            correction=f"答案：{key}" if zh else f"Answer: {key}",
            explanation="没有作答。" if zh else "No answer was given.",
        )
    if question.type == QuestionType.blanks:
        return _mark_blanks(reading, question, subject, zh)
    # the region ran on into the next question (its number unfound): what is compared may be that
    # question's answer, so the verdict is never sure, right or wrong
    ran_on = _ran_on(reading.text, question)
    # what is compared: for a word problem, the answer after 答： (the working stays in the reading)
    written_answer_line = ANSWER_MARK.search(reading.text) is not None and "答" not in key
    compared = final_answer(reading.text) if question.type == QuestionType.word or written_answer_line else reading.text
    unit_unread = working_agrees = glued = False
    if question.type == QuestionType.word and subject == "math":
        sentence, compared = compared, quantity_in(compared, key)
        unit_unread = _unit_unread(sentence, compared)
        glued = _glued_to_words(sentence, compared, (key, *question.accepted))
        if (working_agrees := _working_agrees(reading.text, as_digits(compared, question))) and not ran_on:
            # the working's result and the 答 line say the same number: written twice, read alike twice
            reading = replace(reading, confidence=max(reading.confidence, WORKING_AGREES))
    digits = _joined(as_digits(compared, question), key) if subject == "math" else compared
    # A reading that needed letters taken for digits (or a gap closed) is less sure: a little where
    # it then lands on the key, much where it still misses it (then it is most likely misread).
    lookalikes, compared = _lookalikes_taken(compared, digits), digits
    if subject == "math" and not _is_right(compared, question, subject) and (powers := _as_powers(compared, key)):
        if _is_right(powers, question, subject):  # "x2-81" written for x²-81: the 2 was raised
            lookalikes, compared = True, powers
    if _is_right(compared, question, subject):
        # letters taken for digits land on the key: less sure, unless the recogniser itself gave
        # the key's answer a real chance in the writing ("Z" read where it weighs "2" at 0.4)
        doubted = lookalikes and (reading.key_likelihood is None or reading.key_likelihood < KEY_LIKELY)
        confidence = _key_agreed(reading) * (LOOKALIKE_DISCOUNT if doubted else 1.0)
        if question.type not in (QuestionType.word, QuestionType.choice, QuestionType.text) and _minus_lost(reading):
            confidence = min(confidence, SIGN_DOUBT)
        if question.type == QuestionType.choice and _unmistakable_letter(compared, question, reading):
            confidence = max(confidence, KEY_AGREED)
        if ran_on:
            confidence = min(confidence, RAN_ON)
        # A misreading that lands exactly on the key is far less likely than one that misses it.
        return QuestionMark(
            student_answer=reading.text,
            is_correct=True,
            score=question.points,
            knowledge_points=points,
            error_type="none",
            explanation="",
            correction="",
            confidence=round(0.5 + 0.5 * confidence, 4),
        )
    confidence = reading.confidence * (NOT_LIKE_THE_KEY if lookalikes else 1.0)
    said = normalise_text(compared)
    # a near miss of the key, or of the key with its notation lost (11.23 read 123: point and a 1)
    near = (
        _confusable_letters(said, normalise_text(key))
        if question.type == QuestionType.choice
        else any(
            _near_miss(said, normalise_text(form)) or _near_notation_lost(said, normalise_text(form))
            for form in (key, *question.accepted)
        )
    )
    # Every reading of the writing agreeing is not a misreading to doubt; fewer may be (a digit
    # lost the same way twice, "11/30" read "1/3 0", or three times, "27人" read "7人" at 0.99).
    # Two writings of the number (the working's result and the 答 line) read alike are as good: a
    # misreading would have to change both the same way.
    agreed = reading.agreeing >= AGREED_READINGS and reading.confidence >= AGREED_CONFIDENCE or working_agrees
    key_absent = _not_the_key(reading, said, (key, *question.accepted))
    if key_absent:
        # other digits where the key has digits, and the recogniser gives the key no chance: three
        # readings agreeing on them are as sure a wrong answer as three giving the key a right one
        if reading.agreeing >= KEY_AGREED_READINGS:
            confidence = max(confidence, 0.5 + 0.5 * KEY_AGREED)
    elif near and not agreed:
        confidence *= 0.8  # a character or two from the key: as likely a misreading as a mistake
    elif any(_confusable_digit(said, normalise_text(form)) for form in (key, *question.accepted)):
        confidence *= 0.8  # a digit from the key that the reader takes for it, however many readings agree
    elif reading.key_likelihood is not None and reading.key_likelihood >= KEY_ABSENT:
        confidence *= 0.8  # the recogniser itself gives the key a real chance: as likely a misreading
    if any(
        said == normalise_text(form) or said in _notation_lost(normalise_text(form))
        for form in (key, *question.accepted)
    ):
        confidence *= (
            0.5  # it looks like the key and does not mean it: notation the reader lost (x² read x2, 7/10 read 7110)
        )
    elif not key_absent and any(_one_slipped(said, normalise_text(form)) for form in (key, *question.accepted)):
        confidence *= 0.8  # a 1 lost or found, however many readings agree
    elif (
        not agreed
        and not (key_absent and reading.agreeing >= KEY_AGREED_READINGS)  # its zeros written so, read so thrice
        and any(_part_lost(said, normalise_text(form)) for form in (key, *question.accepted))
    ):
        confidence *= 0.8  # only one end of the key's answer, not read so every way: the rest perhaps lost
    if question.type == QuestionType.choice and not set(choice_letters(compared)) <= set(question.options or "ABCD"):
        confidence *= 0.5  # not one of the options' letters: a misreading, not a choice
    if question.type == QuestionType.choice and not choice_letters(compared):
        confidence *= 0.5
    if subject == "math" and _not_like_the_key(compared, key):
        confidence *= NOT_LIKE_THE_KEY  # the key is a value and the reading is not: probably misread
    if subject == "math" and _power_lost(compared, (key, *question.accepted)):
        confidence *= 0.8  # the key's power unread: the raised digit is what the reader loses most (x² read x+)
    if any(_key_with_more(said, normalise_text(form)) for form in (key, *question.accepted)):
        confidence *= 0.5  # the key's answer is there with more around it: a crossed-out try, or print
    if glued:
        confidence *= 0.5  # the key's answer with a digit before it, right after words: 了 read as 7
    unit = subject == "math" and _unit_error(compared, key)
    if unit and unit_unread:
        confidence *= 0.5  # letters after the number that are no unit: the key's unit misread (千米 read 干米)
    if ran_on:
        confidence = min(confidence, RAN_ON)
    error_type = "unit" if unit else "calculation" if subject == "math" else "concept"
    if zh:
        explanation = (
            f"单位不对：你写的是 {reading.text}，应为 {key}。"
            if unit
            else f"你的答案是 {reading.text}，正确答案是 {key}。"
        )
    else:
        explanation = (
            f"Wrong unit: you wrote {reading.text}; the answer is {key}."
            if unit
            else f"You wrote {reading.text}; the answer is {key}."
        )
    return QuestionMark(
        student_answer=reading.text,
        is_correct=False,
        score=0,
        knowledge_points=points,
        error_type=error_type,
        explanation=explanation,
        correction=f"正确答案：{key}" if zh else f"Correct answer: {key}",
        confidence=round(confidence, 4),
    )


# A word problem's printed 答： (or "Answer:") starts the final answer; the working above it is kept
# for review but never compared.
_ANSWER_LINE = re.compile(r"(?:答|Answer|A)\s*[:：]\s*", re.IGNORECASE)
# Between the blanks of one question a pupil writes a comma, a semicolon or a wide gap.
_BLANK_SEPARATOR = re.compile(r"\s*[,，;；、]\s*|\s{2,}")


# Handwritten digits the reader takes for letters; where the key holds no letter, a letter among
# digits is one of these ("18C元" is 180元, "GO" is 60, "C.q" is 0.9, "18℃元" is 180元).
_DIGIT_LOOKALIKES = str.maketrans(
    {"O": "0", "o": "0", "C": "0", "c": "0", "D": "0", "I": "1", "l": "1", "|": "1", "Z": "2", "z": "2",
     "S": "5", "s": "5", "G": "6", "b": "6", "q": "9", "g": "9", "a": "9", "℃": "0"}
)  # fmt: skip
LOOKALIKE_DISCOUNT = 0.9
NOT_LIKE_THE_KEY = 0.6
_LATIN = re.compile(r"[A-Za-z]")
_LEADING_SLASH = re.compile(r"(?<![0-9A-Za-z)）])/(?=[0-9])")
_TIMES_AS_X = re.compile(r"(?<=[0-9)）])\s*[xX]\s*(?=[0-9(（])")


def as_digits(text: str, question: KeyQuestion) -> str:
    """A reading of a value with the letters that look like digits taken as digits, where the key
    (a value, or each blank's) has no letter in it; where it has letters, all small, the reading's
    capitals of those letters as small ones (`6A` for 6a); a choice's lone 6 as the letter b it
    was written as, where no option is the value 6; else as read."""
    if question.type == QuestionType.choice:
        return _b_for_six(text, question)
    if question.type == QuestionType.text:
        return text
    keys = [question.answer or "", *question.accepted, *(b.answer for b in question.blanks)]
    text = _LEADING_SLASH.sub("1", text)  # a handwritten 1 read as '/': '/4' is no fraction
    if any(_LATIN.search(k) or "℃" in k for k in keys):  # a temperature's ℃ is the answer's own
        return _small_letters_as_keyed(text, keys)
    text = _TIMES_AS_X.sub("×", text)  # '7x6' for 7×6: handwriting's times sign is an x
    return text.translate(_DIGIT_LOOKALIKES)


_LONE_SIX = re.compile(r"[(（]?6[)）]?")


def _b_for_six(text: str, question: KeyQuestion) -> str:
    """A choice's reading that is a lone 6, as B: a pupil's small b (its stem curled into the bowl)
    reads as a 6. Not where B is no option, nor where an option's value is 6 (then the pupil may
    have written the value instead of its letter)."""
    if not _LONE_SIX.fullmatch(normalise_text(text)) or "B" not in (question.options or "ABCD"):
        return text
    if any(normalise_text(value) == "6" for value in question.options.values()):
        return text
    return "B"


def _small_letters_as_keyed(text: str, keys: list[str]) -> str:
    """The reading's capitals as small letters where the key writes those letters small and has no
    capital letter: a handwritten a, x or m read as A, X or M is the key's letter (a pupil's
    capital means the same unknown, a teacher would not mark it down)."""
    keyed = {ch for k in keys for ch in _LATIN.findall(k)}
    if any(ch.isupper() for ch in keyed):
        return text
    return "".join(ch.lower() if ch.isupper() and ch.lower() in keyed else ch for ch in text)


def _lookalikes_taken(as_read: str, as_value: str) -> bool:
    """The value needed letters taken for digits (or a gap closed): not only a handwritten times
    sign read as x ('7x9' is 7×9 however surely it was read)."""
    return as_value != as_read and as_value != _TIMES_AS_X.sub("×", as_read)


# Handwritten capitals the reader takes for one another; any other two letters are told apart.
_CONFUSABLE_LETTERS = ({"B", "D"}, {"B", "E"}, {"C", "G"}, {"D", "O"}, {"A", "R"})
# A number in a sentence, and what may follow it as its unit ("行驶了145.5千米" holds "145.5千米").
_NUMBER = re.compile(r"[-−]?\d+(?:\.\d+)?(?:/\d+)?")


WORKING_AGREES = 0.92  # a word problem's working ends in the number its 答 line gives
_RESULT = re.compile(r"=\s*(-?\d+(?:\.\d+)?)")


def _working_agrees(text: str, answer: str) -> bool:
    """The last result in a word problem's working (the number after its last '=', above the 答
    line) is the number the 答 line gives: two writings of it, read the same."""
    parts = _ANSWER_LINE.split(text)
    if len(parts) < 2:
        return False
    results = _RESULT.findall(as_digits_plain(parts[-2]))
    stated = _NUMBER.findall(answer)
    return bool(results) and len(stated) == 1 and _same_number(results[-1], stated[0])


def as_digits_plain(text: str) -> str:
    """Letters that handwriting makes of digits, as digits, wherever they touch a digit."""
    return re.sub(
        r"(?<=\d)[OoCcDIl|ZzSsGbqg℃]|[OoCcDIl|ZzSsGbqg](?=\d)", lambda m: m.group().translate(_DIGIT_LOOKALIKES), text
    )


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _joined(text: str, key: str) -> str:
    """A value read with gaps inside it ("1.4 4", "3 /4"): the gaps closed, where the key has none
    (a gap between digits reads as multiplication otherwise)."""
    if any(ch.isspace() for ch in key.strip()):
        return text
    return re.sub(r"(?<=[0-9./])\s+(?=[0-9./])", "", text.strip())


_RAISED = re.compile(r"([a-z])([23])(?![0-9])")


_POWER = re.compile(r"[²³^]")


def _power_lost(text: str, forms: tuple[str, ...]) -> bool:
    """Every form of the key has a power (x², a^3) and the reading none: a wrong reading of it
    may be the raised digit read as a sign or lost (`x+49x9` for x²-49)."""
    return all(_POWER.search(form) for form in forms) and not _POWER.search(text)


def _as_powers(text: str, key: str) -> str | None:
    """Where the key has a power (x², a^3) and the reading none, the reading with a digit right
    after a letter taken as raised ("X2-81" -> "x^2-81"); None where that does not apply."""
    if not _POWER.search(key) or _POWER.search(text):
        return None
    lowered = text.lower() if not re.search(r"[A-Z]", key) else text
    raised = _RAISED.sub(r"\1^\2", lowered)
    return raised if raised != text else None


def _near_miss(said: str, form: str) -> bool:
    """A character or two from an answer, or the answer with its zeros lost or doubled
    (7000 read 700, 30000 read 3): what a misreading of the right answer looks like."""
    return _edit_distance(said, form) <= max(1, len(form) // 5) or _zeros_slipped(said, form)


RAN_ON = 0.5
_OTHER_LABEL = re.compile(NTH_QUESTION)


def _ran_on(text: str, question: KeyQuestion) -> bool:
    """The reading holds another question's printed label (第16题 in question 15's) or, for a word
    problem, a second 答: line: its region ran on past the next question's number, which the
    layout did not find (a sealing line's dash read before it)."""
    number = printed_number(question.id)
    if any(label.lstrip("0") != number.lstrip("0") for label in _OTHER_LABEL.findall(text)):
        return True
    return question.type == QuestionType.word and len(ANSWER_MARK.findall(text)) >= 2


def _one_slipped(said: str, form: str) -> bool:
    """The reading is the answer with one 1 left out or one put in (±17 read ±7 every way): a 1 is
    one thin stroke, lost with the specks, joined to a sign, or a stray stroke read as one."""
    longer, shorter = (form, said) if len(form) > len(said) else (said, form)
    return len(longer) == len(shorter) + 1 and any(
        longer[i] == "1" and longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer))
    )


def _notation_lost(form: str) -> set[str]:
    """What the reader makes of an answer whose fraction bar, decimal point or sign it loses or
    takes for a 1 ('7/10' read '7110' or '710', '1.8' read '18', '-6' read '6': a minus is a short
    stroke, cut off with a blank's edge or taken for a speck), or one row of whose stacked fraction
    it reads alone ('32/5' read '5'): never a confident wrong verdict."""
    lost = (
        {form.replace("/", "1"), form.replace("/", ""), form.replace(".", ""), form.lstrip("-−±+")}
        if any(c.isdigit() for c in form)
        else set()
    )
    if form.count("/") == 1:  # a stacked fraction with one row read (32 over 5 read 5 every way)
        lost |= {part for part in form.split("/") if part}
    return lost - {form}


def _near_notation_lost(said: str, form: str) -> bool:
    """A near miss of the answer with its notation lost (11.23 read 123: the point and a 1), for
    lost forms of three characters or more (shorter ones would make every short reading near); a
    reading with a bar or point of its own lost none."""
    if "/" in said or "." in said:
        return False
    return any(_near_miss(said, lost) for lost in _notation_lost(form) if len(lost) >= 3)


def _part_lost(said: str, form: str) -> bool:
    """The reading is the answer's first or last characters alone, the rest holding a digit or dots
    ('7……6' read '6', '11只' read '只'): lost in reading as likely as a pupil writing only that."""
    if not said or len(said) >= len(form):
        return False
    lost = form[len(said) :] if form.startswith(said) else form[: -len(said)] if form.endswith(said) else ""
    return any(c.isdigit() or c in ".…" for c in lost)  # thin strokes; a unit's character is rarely lost


# Handwritten digits the reader mistakes for one another, every reading alike (324 read 374 four
# times of four): a reading one of these from the key is never a confident wrong verdict.
_CONFUSABLE_DIGITS = (
    {"1", "7"}, {"2", "7"}, {"3", "8"}, {"4", "9"}, {"5", "6"}, {"0", "6"}, {"6", "8"}, {"0", "8"}, {"7", "9"},
    {"3", "5"},
)  # fmt: skip


def _confusable_digit(said: str, key: str) -> bool:
    """One digit of the reading differs from the key's, and it is one the reader mistakes for it."""
    differ = [(a, b) for a, b in zip(said, key, strict=False) if a != b]
    return len(said) == len(key) and len(differ) == 1 and set(differ[0]) in _CONFUSABLE_DIGITS


# Measured on the tuning papers: a reading with other digits than the key where the pupil wrote them
# gave the key at most 9e-4 in each whole reading (15 answers); the one right answer the recogniser
# misread so (25 read 75 four times) still gave the key 0.05-0.31.
KEY_ABSENT = 0.01
KEY_LIKELY = 0.1  # the recogniser's own chance of the key's answer in the writing: a real candidate


SIGN_LOST, SIGN_DOUBT = 0.02, 0.6


def _minus_lost(reading: AnswerReading) -> bool:
    """In one of its readings the recogniser finds the key's answer with a minus before it at
    least a fiftieth as likely as without: a short stroke it did not read may be a minus ("-24"
    read "24" by three readings of four; the fourth weighed "-24" likelier), so a right verdict
    is not sure. Not for a word problem's sentence, whose words before the number (一共) a
    minus resembles."""
    return reading.minus_odds is not None and reading.minus_odds >= SIGN_LOST


def _digits_slipped(said: str, form: str) -> bool:
    """`said` is `form` with one or more digits changed for other digits, nothing else."""
    return (
        len(said) == len(form)
        and said != form
        and all(a == b or (a.isdigit() and b.isdigit()) for a, b in zip(said, form, strict=True))
    )


def _zeros_slipped(said: str, form: str) -> bool:
    """`said` is `form` with zeros left out or added, nothing else (4 for 40, 900 for 90)."""
    return said != form and "0" in said + form and said.replace("0", "") == form.replace("0", "") != ""


def _not_the_key(reading: AnswerReading, said: str, forms: tuple[str, ...]) -> bool:
    """A reading that differs from the key only in digits, or in its zeros, where the recogniser
    itself gave the key less than KEY_ABSENT in every whole reading of the writing: not a
    misreading of the key (which the reader's doubts about near misses and confusable digits guard
    against), but other digits written. A zero the recogniser merges into its neighbour keeps the
    key likely (its columns are there to read); one cut off with the writing's edge would not, so
    the caller trusts this only where several readings, cut differently, agree. A unit or sign
    lost in reading is not covered: the ink it lost was never weighed."""
    return (
        reading.key_likelihood is not None
        and reading.key_likelihood < KEY_ABSENT
        and any(_digits_slipped(said, form) or _zeros_slipped(said, form) for form in map(normalise_text, forms))
    )


def _key_with_more(said: str, form: str) -> bool:
    """The key's answer inside the reading with two characters or more around it, after one more
    digit (a struck-through 5 the reader did not see as struck, read on with the 50 after it: 550;
    a 4 struck through with one short line reads as a 4, so a one-digit key read after a digit is
    no surer: 44, 86; a sign before it is the pupil's), or with a unit after it that the key does
    not give (the print after the blank read with it where the key has no prompt: 540秒)."""
    if len(said) >= len(form) + 2 and any(not _in_a_number(said, form, at) for at in _places(said, form)):
        return True
    if said.startswith(form) and said != form and _UNIT_ONLY.fullmatch(said[len(form) :]):
        return True
    return len(said) == len(form) + 1 and said.endswith(form) and said[0].isdigit()


_UNIT_ONLY = re.compile(r"[\u4e00-\u9fffA-Za-z]+")


def _places(said: str, form: str) -> list[int]:
    return [at for at in range(len(said) - len(form) + 1) if said.startswith(form, at)]


def _in_a_number(said: str, form: str, at: int) -> bool:
    """The key's answer at `at` is a part of a fraction or a decimal the pupil wrote (1/7 or 0.5
    for 7 or 5: the bar or point beside it), not what a struck try and the answer read on make.
    A bar and a point in one reading are no number a pupil writes: a struck fraction, a gap read
    as a point, and the answer (`1/4.1` for 1)."""
    if "/" in said and "." in said:
        return False
    return said[at - 1 : at] in ("/", ".") or said[at + len(form) : at + len(form) + 1] in ("/", ".")


def _confusable_letters(said: str, key: str) -> bool:
    return len(said) == len(key) == 1 and {said.upper(), key.upper()} in _CONFUSABLE_LETTERS


def quantity_in(sentence: str, key: str) -> str:
    """A word problem's answer written as a sentence ("一共花了5460元"): its one quantity, with the
    longest unit after it that is a unit; the sentence as it is when it holds no number or several
    (then it is compared whole, and read by a teacher when that fails)."""
    if parse_value(key) is None or parse_value(sentence) is not None:
        return sentence
    numbers = list(_NUMBER.finditer(sentence))
    if len(numbers) != 1:
        return sentence
    number = numbers[0]
    rest = sentence[number.end() :].rstrip("。.!！")
    for end in range(min(len(rest), 4), -1, -1):
        candidate = number.group() + rest[:end]
        if parse_value(candidate) is not None:
            return candidate
    return sentence


_CJK = re.compile(r"[\u4e00-\u9fff]")


def _glued_to_words(sentence: str, quantity: str, forms: tuple[str, ...]) -> bool:
    """The quantity taken from a sentence is one of the key's answers with a digit or two before
    it, and words come right before those digits ("行驶7327.5千米" for 行驶了327.5千米): a
    character of the sentence read as a digit, as likely as a pupil's mistake."""
    at = sentence.find(quantity)
    if at <= 0 or not _CJK.match(sentence[at - 1]):
        return False
    return any(
        quantity.endswith(form) and 0 < len(quantity) - len(form) <= 2 and quantity[: -len(form)].isdigit()
        for form in (normalise_text(form) for form in forms)
        if form
    )


def _unit_unread(sentence: str, quantity: str) -> bool:
    """The quantity taken from a word problem's answer stops where letters still follow it: a
    unit the reader could not make out ("145干米" gives 145), not a unit left out."""
    at = sentence.find(quantity)
    after = sentence[at + len(quantity) :].lstrip() if at >= 0 else ""
    return bool(after) and after[0].isalpha()


def final_answer(text: str) -> str:
    """A word problem's answer: what follows the last 答： (or the last line, without one)."""
    parts = _ANSWER_LINE.split(text)
    last = parts[-1] if len(parts) > 1 else text.splitlines()[-1] if text.strip() else text
    return last.strip().rstrip("。.")


def _is_right(text: str, question: KeyQuestion, subject: str) -> bool:
    """The reading against the key, by the question's type."""
    key = question.answer or ""
    if question.type == QuestionType.choice:
        return bool(choice_letters(text)) and choice_letters(text) == key
    if question.type == QuestionType.text:
        return _text_equal(text, question)
    check = equivalent(text, key, tuple(question.accepted)) if subject == "math" else None
    return check if check is not None else _text_equal(text, question)


KEY_AGREED, KEY_AGREED_READINGS = 0.8, 3  # three readings giving the key's answer: a verdict to trust


def _key_agreed(reading: AnswerReading) -> float:
    """The reading's confidence where it gives the key's answer: three readings of the writing
    (cut and cleaned differently) agreeing on exactly the right answer are rarely three
    misreadings that land on it, however low the engine scores handwriting; a wrong answer is
    never lifted so (it may be a misreading of the right one)."""
    if reading.agreeing >= KEY_AGREED_READINGS:
        return max(reading.confidence, KEY_AGREED)
    return reading.confidence


CHOICE_READ = 0.5  # a choice letter read at least this surely
_LONE_LETTER = re.compile(r"[(]?[a-h][)]?")


def _unmistakable_letter(compared: str, question: KeyQuestion, reading: AnswerReading) -> bool:
    """The key's one letter, read fairly surely, where no other option's letter is one the reader
    mistakes for it (A among A-D: no R to misread): the engine scores a lone letter low, but
    another option cannot turn into it."""
    letters = choice_letters(compared)
    if not _LONE_LETTER.fullmatch(normalise_text(compared)) or reading.confidence < CHOICE_READ:
        return False
    options = set(question.options or "ABCD") - {letters}
    return not any({letters, other} in _CONFUSABLE_LETTERS for other in options)


def _blank_doubt(said: str, as_read: str, blank: Blank, reading: AnswerReading, right: bool) -> float:
    """How far one blank's reading lowers the question's confidence, by the rules a single answer
    is marked with: letters taken for digits; a wrong value a character from the blank's answer,
    read unsurely; a reading that is not a value where the answer is one."""
    doubt = LOOKALIKE_DISCOUNT if _lookalikes_taken(as_read, said) else 1.0
    if right or not said:
        return doubt
    forms = [normalise_text(form) for form in (blank.answer, *blank.accepted)]
    near = any(_near_miss(normalise_text(said), form) for form in forms)
    agreed = reading.agreeing >= AGREED_READINGS and reading.confidence >= AGREED_CONFIDENCE
    if near and not agreed or _confusable_digit(normalise_text(said), normalise_text(blank.answer)):
        doubt *= 0.8
    if any(normalise_text(said) in _notation_lost(form) for form in forms):
        doubt *= 0.5  # the blank's answer with its sign, bar or point lost: as likely a misreading
    elif any(_one_slipped(normalise_text(said), form) for form in forms):
        doubt *= 0.8  # a 1 lost or found, however many readings agree
    if _not_like_the_key(said, blank.answer):
        doubt *= NOT_LIKE_THE_KEY
    return doubt


def _mark_blanks(reading: AnswerReading, question: KeyQuestion, subject: str, zh: bool) -> QuestionMark:
    """Each blank against its own answer, for its own points; a reading that does not split into
    as many parts as there are blanks is only a guess at which part is which."""
    in_place = [part.strip() for part in reading.text.split("；")]
    if len(in_place) == len(question.blanks) and "" in in_place:
        read_parts = in_place  # each blank read in its place, one left empty: "5；" is 5 and nothing
    else:
        read_parts = [part for part in _BLANK_SEPARATOR.split(reading.text.strip()) if part]
    parts = [as_digits(part, question) for part in read_parts]
    right, doubts = [], []
    for number, blank in enumerate(question.blanks):
        said = parts[number] if number < len(parts) else ""
        check = equivalent(said, blank.answer, tuple(blank.accepted)) if subject == "math" and said else None
        same = (
            check
            if check is not None
            else any(normalise_text(said) == normalise_text(form) for form in (blank.answer, *blank.accepted))
        )
        right.append(bool(said) and same)
        doubts.append(_blank_doubt(said, read_parts[number] if number < len(parts) else "", blank, reading, same))
    score = sum(blank.points for blank, ok in zip(question.blanks, right, strict=True) if ok)
    confidence = reading.confidence if len(parts) == len(question.blanks) else reading.confidence * 0.5
    if all(right) and len(parts) == len(question.blanks):
        confidence = _key_agreed(reading)
    for doubt in doubts:
        confidence *= doubt
    wrong = [str(n) for n, ok in enumerate(right, 1) if not ok]
    key = "；".join(blank.answer for blank in question.blanks)
    if not wrong:
        explanation = ""
    elif zh:
        explanation = f"第 {'、'.join(wrong)} 空不对：你写的是 {reading.text}，正确答案是 {key}。"
    else:
        explanation = f"Blank(s) {', '.join(wrong)} wrong: you wrote {reading.text}; the answers are {key}."
    return QuestionMark(
        student_answer=reading.text,
        is_correct=not wrong,
        score=score,
        knowledge_points=list(question.knowledge_points),
        error_type="none" if not wrong else "calculation" if subject == "math" else "concept",
        explanation=explanation,
        correction="" if not wrong else (f"正确答案：{key}" if zh else f"Correct answers: {key}"),
        confidence=round(0.5 + 0.5 * confidence if not wrong else confidence, 4),
    )
