"""School-style mathematics test papers (grades 1-9) with known truth, for the offline reader.

Unlike bench.handwriting (one question a line, the answer under it), these look like the papers
Chinese schools print: a title block (学校 / 班级 / 姓名 / 得分), now and then a score table,
sections (一、计算题 / 二、填空题 / 三、选择题 / 四、解决问题) and a page footer, with five kinds of
question:

- calc_row: calculations, two to a printed line in most designs, answered right after the '=';
- choice: a question ending in （   ）, the letter written inside, the options printed under it;
- blanks: one question with two blanks, each filled in;
- fill: one blank (4千克=____克);
- word: a word problem, a line or two of working, then the answer after the printed 答：.

Answers are right (~60%), plausibly wrong (~32%) or blank (~8%); now and then a first attempt
is struck through and the final answer written beside it. The handwriting is drawn glyph by glyph
(bench.handwriting's fonts, Latin ones for digits and letters, CJK ones for Chinese), each glyph
with its own rotation, scale, baseline offset and spacing, so no two are the same.

Each paper also gives its blank template pages (what a teacher would upload), its typed answer key
(shared.grading.answer_key), and for every question the truth: what was finally written, whether
it is right, its score, and the answer region on the template page.

    python -m bench.school_papers --seed 100 --count 3 --out /tmp/school [--regions]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import random
import re
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from bench.handwriting import HAND_CJK, HAND_LATIN, _degrade
from client.samples import _font

# ---------------------------------------------------------------------------------------------
# Constants

UNITS = (1240, 1754)  # an A4 page at 150 dpi; every layout position is in these units
HIGH_DPI_SCALE = 2  # 300 dpi: 2480x3508 pixels
HIGH_DPI_SHARE = 0.2
PAPER_COLOUR = (250, 249, 245)  # as bench.handwriting._degrade fills a skewed scan
PRINT_COLOUR = (18, 18, 18)
FOOTER_BASELINE = UNITS[1] - 55
CONTENT_BOTTOM = UNITS[1] - 110  # questions stop above the footer
MAX_PAGES = 2
SCORE_TABLE_HEIGHT = 2 * 44 + 30  # two rows and the space under them
PRINT_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
    "/usr/share/fonts/truetype/arphic-gkai00mp/gkai00mp.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)
FALLBACK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/arphic/ukai.ttc")
PENS = {"blue": (25, 50, 150), "black": (25, 25, 35), "pencil": (60, 60, 68)}
LATIN_HAND_CHARS = frozenset(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+-=.()/%:,"
)  # the rest: CJK hand
UNUSED_HAND_FONTS = ("femkeklaver",)  # bubble letters, hollow: no pupil writes so
VARIANTS = ("scan", "skewed scan", "shadow", "phone photo", "pencil", "webp")
BLANK_SHARE, RIGHT_SHARE = 0.08, 0.60  # the rest (~32%) plausibly wrong
CROSS_OUT_SHARE = 0.12  # of answered calc_row and word questions
ACCEPTED_FORM_SHARE = 0.15  # a right answer written in one of its accepted forms
WORD_PHRASE_SHARE = 0.15  # 答：还剩26本。 rather than 答：26本
PROMPTS_SHARE = 0.5
PERTURBED_SHARE = 0.4  # pupils whose every stroke is moved on its own (perturb_strokes)
SHORT_QUIZ_SHARE = 0.25  # papers whose key gives the questions' prompts
WORKING_LINES = 2  # the space left for a word problem's working
SAME_SHAPE_MOST = {"calc_row": 3, "fill": 1, "blanks": 1, "choice": 1, "word": 1}  # questions alike but for numbers
KIND_SECTIONS = {"calc_row": "calc", "fill": "fill", "blanks": "fill", "choice": "choice", "word": "word"}
SECTION_NAMES = {
    "calc": ("计算题", "直接写出得数", "口算"),
    "fill": ("填空题", "填一填"),
    "choice": ("选择题", "选一选（把正确答案的序号填在括号里）"),
    "word": ("解决问题", "应用题"),
}
CN_NUMERALS = "一二三四五六七八九十"
NUMBERING_STYLES = ("dot", "paren", "di", "circled")
KNOWLEDGE_POINTS = Path(__file__).resolve().parents[1] / "shared" / "data" / "knowledge_points.json"


@dataclass(frozen=True)
class Design:
    """A page design: margins, spacing, title block and heading style, in 150-dpi units."""

    name: str
    left: int
    right: int
    top: int
    print_size: int  # printed question text
    line: int  # a printed line, blanks and 答 lines included
    row: int  # a calculation row
    gap: int  # between questions
    heading_size: int
    heading_bold: bool
    heading_mark: str
    title_block: str  # lines, boxes, sealed, left
    calc_columns: int
    answer_rule: bool  # 答：______ printed with a rule
    order: tuple[str, ...]  # the sections, in print order
    numbering: tuple[str, ...]  # the numbering styles this design uses

    @property
    def right_edge(self) -> int:
        return UNITS[0] - self.right


DESIGNS = (
    Design("classic", 90, 90, 70, 30, 68, 92, 20, 32, True, "", "lines", 2, False,
           ("calc", "fill", "choice", "word"), ("dot", "paren")),
    Design("boxed", 100, 100, 70, 28, 64, 86, 16, 30, False, "", "boxes", 2, True,
           ("fill", "choice", "calc", "word"), ("paren", "circled")),
    Design("sealed", 200, 80, 70, 30, 72, 96, 22, 31, True, "", "sealed", 1, False,
           ("calc", "fill", "choice", "word"), ("dot", "di")),
    Design("compact", 75, 75, 60, 27, 62, 80, 12, 29, True, "■ ", "left", 2, True,
           ("fill", "calc", "choice", "word"), ("circled", "dot", "di")),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Questions


@dataclass(frozen=True)
class Spec:
    """A question before it is numbered: its printed text ('{}' for each blank), its answers
    (one per blank; one for the other kinds) and plausible wrong answers."""

    kind: str  # calc_row, choice, blanks, fill, word
    qtype: str  # the answer key's type
    text: str
    answers: tuple[str, ...]
    wrongs: tuple[tuple[str, ...], ...]  # per answer
    knowledge_points: tuple[str, ...]
    points: float
    accepted: tuple[tuple[str, ...], ...] = ()  # per answer
    options: tuple[tuple[str, str], ...] = ()  # choice: (letter, option)
    working: tuple[str, ...] = ()  # word: working lines, '{r}' for the result
    unit: str = ""  # word
    phrase: str = ""  # word: 还剩 in 答：还剩26本


@functools.cache
def _math_knowledge_points() -> frozenset[str]:
    rows = json.loads(KNOWLEDGE_POINTS.read_text(encoding="utf-8"))["points"]
    return frozenset(row[0] for row in rows if row[1] == "math")


def _kps(*ids: str) -> tuple[str, ...]:
    unknown = [i for i in ids if i not in _math_knowledge_points()]
    assert not unknown, f"not in the packaged vocabulary: {unknown}"
    return ids


def show(value: int | Fraction | Decimal) -> str:
    """A number as a pupil writes it: 7, 3/4, 2.5, -3."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, Fraction) and value.denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    return str(int(value))


def wrong_numbers(answer: str, rng: random.Random) -> tuple[str, ...]:
    """Plausible wrong values: one digit off, a dropped zero (700 for 7000), two digits swapped."""
    found = []
    digits = [i for i, ch in enumerate(answer) if ch.isdigit()]
    for i in rng.sample(digits, min(2, len(digits))):
        changed = str((int(answer[i]) + rng.choice([1, -1, 2])) % 10)
        found.append(answer[:i] + changed + answer[i + 1 :])
    if re.fullmatch(r"-?\d*[1-9]\d*0", answer):
        found.append(answer[:-1])
    pairs = [i for i in digits if i + 1 in digits and answer[i] != answer[i + 1]]
    if pairs:
        i = rng.choice(pairs)
        found.append(answer[:i] + answer[i + 1] + answer[i] + answer[i + 2 :])
    plausible = [w for w in dict.fromkeys(found) if w != answer and not re.match(r"-?0\d", w)]
    return tuple(plausible) or (answer + "0",)


def really_wrong(
    answer: str, wrongs: tuple[str, ...], rng: random.Random, accepted: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The given wrong answers that are not right ((-2)² = 4 = 2×2), else plausible ones."""
    return tuple(w for w in wrongs if w != answer and w not in accepted) or wrong_numbers(answer, rng)


def calc(text: str, answer: str, kp: str, rng: random.Random, wrongs: tuple[str, ...] = (), **extra: object) -> Spec:
    accepted = tuple(extra.pop("accepted", ()))
    return Spec(
        "calc_row", str(extra.pop("qtype", "number")), text, (answer,), (really_wrong(answer, wrongs, rng, accepted),),
        _kps(kp), float(extra.pop("points", 2)), accepted=(accepted,),
    )  # fmt: skip


def fill(text: str, answer: str, kp: str, rng: random.Random, wrongs: tuple[str, ...] = (), **extra: object) -> Spec:
    accepted = tuple(extra.pop("accepted", ()))
    return Spec(
        "fill", str(extra.pop("qtype", "number")), text, (answer,), (really_wrong(answer, wrongs, rng, accepted),),
        _kps(kp), 2.0, accepted=(accepted,),
    )  # fmt: skip


def blanks(text: str, answers: tuple[str, str], kps: tuple[str, ...], rng: random.Random,
           wrongs: tuple[tuple[str, ...], ...] = (), accepted: tuple[tuple[str, ...], ...] = ()) -> Spec:  # fmt: skip
    wrongs = wrongs or tuple(wrong_numbers(a, rng) for a in answers)
    return Spec("blanks", "blanks", text, answers, wrongs, _kps(*kps), 2.0, accepted=accepted or ((), ()))


def choice(text: str, right: str, distractors: list[str], kp: str, rng: random.Random) -> Spec:
    options = [right, *dict.fromkeys(d for d in distractors if d != right)][:4]
    rng.shuffle(options)
    lettered = tuple(zip("ABCD", options, strict=False))
    letter = next(letter for letter, option in lettered if option == right)
    others = tuple(letter_ for letter_, _ in lettered if letter_ != letter)
    return Spec("choice", "choice", text, (letter,), (others,), _kps(kp), 2.0, options=lettered)


def word(text: str, value: str, unit: str, working: tuple[str, ...], kp: str, rng: random.Random,
         phrase: str = "", wrong_values: tuple[str, ...] = ()) -> Spec:  # fmt: skip
    wrongs = wrong_values or wrong_numbers(value, rng)
    return Spec(
        "word", "word", text, (value + unit,), (tuple(w + unit for w in wrongs) + (value,),),
        _kps(kp), float(rng.choice([4, 5])), working=working, unit=unit, phrase=phrase,
    )  # fmt: skip


# The question banks: per kind, per grade, functions of the paper's random generator.


def _calc_g1(rng: random.Random) -> Spec:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    if rng.random() < 0.4:
        return calc(
            f"{a}+{b}=", str(a + b), "math.g1.carry-addition" if a + b > 10 else "math.g1.add-sub-within-10", rng
        )
    if rng.random() < 0.6:
        c = rng.randint(11, 18)
        d = rng.randint(c - 9, 9)
        return calc(f"{c}-{d}=", str(c - d), "math.g1.borrow-subtraction", rng)
    a = rng.randint(1, 7)
    b = rng.randint(1, 9 - a)
    return calc(f"{a}0+{b}0=", str(10 * (a + b)), "math.g1.tens-within-100", rng)


def _calc_g2(rng: random.Random) -> Spec:
    a, b = rng.randint(3, 9), rng.randint(3, 9)
    roll = rng.random()
    if roll < 0.3:
        c, d = rng.randint(15, 68), rng.randint(12, 31)
        return calc(f"{c}+{d}=", str(c + d), "math.g2.add-sub-within-100", rng)
    if roll < 0.5:
        c, d = rng.randint(41, 96), rng.randint(12, 39)
        return calc(f"{c}-{d}=", str(c - d), "math.g2.add-sub-within-100", rng)
    if roll < 0.75:
        return calc(f"{a}×{b}=", str(a * b), "math.g2.times-tables", rng, (str(a * b + a), str(a * b - b), str(a + b)))
    if roll < 0.9:
        return calc(f"{a * b}÷{a}=", str(b), "math.g2.division-intro", rng)
    c, d, e = rng.randint(20, 50), rng.randint(11, 30), rng.randint(5, 19)
    return calc(f"{c}+{d}-{e}=", str(c + d - e), "math.g2.chained-add-sub", rng)


def _calc_g3(rng: random.Random) -> Spec:
    roll = rng.random()
    if roll < 0.3:
        a, b = rng.randint(120, 680), rng.randint(110, 300)
        return calc(f"{a}+{b}=", str(a + b), "math.g3.add-sub-within-10000", rng)
    if roll < 0.55:
        a, b = rng.randint(12, 48), rng.randint(2, 9)
        return calc(f"{a}×{b}=", str(a * b), "math.g3.multi-digit-multiplication", rng)
    if roll < 0.8:
        d = rng.randint(3, 9)
        q, r = rng.randint(3, 9), rng.randint(1, d - 1)
        wrong = (f"{q}……{r + 1}", f"{q + 1}……{r}", f"{q - 1}……{r + d}")
        return calc(f"{q * d + r}÷{d}=", f"{q}……{r}", "math.g3.division-remainder", rng, wrong, accepted=[f"{q}余{r}"])
    d, q = rng.randint(2, 6), rng.randint(12, 40)
    return calc(f"{q * d}÷{d}=", str(q), "math.g3.divide-by-one-digit", rng)


def _calc_g4(rng: random.Random) -> Spec:
    roll = rng.random()
    if roll < 0.3:
        a, b = rng.randint(105, 320), rng.randint(11, 35)
        return calc(f"{a}×{b}=", str(a * b), "math.g4.three-by-two-digit", rng)
    if roll < 0.55:
        a, b = Decimal(rng.randint(12, 89)) / 10, Decimal(rng.randint(105, 499)) / 100
        return calc(f"{show(a)}+{show(b)}=", show(a + b), "math.g4.decimal-add-sub", rng)
    if roll < 0.8:
        a, b, c = rng.randint(12, 60), rng.randint(3, 9), rng.randint(3, 9)
        return calc(f"{a}+{b * c}÷{c}=", str(a + b), "math.g4.order-of-operations", rng)
    d, q = rng.randint(12, 39), rng.randint(3, 25)
    return calc(f"{q * d}÷{d}=", str(q), "math.g4.divide-by-two-digit", rng)


def _calc_g5(rng: random.Random) -> Spec:
    roll = rng.random()
    if roll < 0.35:
        a, b = Decimal(rng.choice([25, 12, 36, 45, 15])) / 10, Decimal(rng.randint(2, 9)) / 10
        return calc(f"{show(a)}×{show(b)}=", show(a * b), "math.g5.decimal-multiplication", rng)
    if roll < 0.65:
        b, q = Decimal(rng.randint(2, 9)) / 10, rng.randint(3, 12)
        return calc(
            f"{show(b * q)}÷{show(b)}=", str(q), "math.g5.decimal-division", rng, (str(q * 10), show(Decimal(q) / 10))
        )
    d1, d2 = rng.sample([2, 3, 4, 5, 6, 8], 2)
    f = Fraction(1, d1) + Fraction(1, d2)
    return calc(
        f"1/{d1}+1/{d2}=", show(f), "math.g5.fraction-add-sub", rng, (f"2/{d1 + d2}", show(f + Fraction(1, d1 * d2)))
    )


def _calc_g6(rng: random.Random) -> Spec:
    roll = rng.random()
    n1, d1, n2, d2 = rng.randint(1, 4), rng.randint(5, 9), rng.randint(1, 4), rng.randint(5, 9)
    if roll < 0.35:
        f = Fraction(n1, d1) * Fraction(n2, d2)
        return calc(
            f"{n1}/{d1}×{n2}/{d2}=",
            show(f),
            "math.g6.fraction-multiplication",
            rng,
            (f"{n1 * n2}/{d1 + d2}", show(f * 2)),
        )
    if roll < 0.7:
        f = Fraction(n1, d1) / Fraction(n2, d2)
        return calc(
            f"{n1}/{d1}÷{n2}/{d2}=",
            show(f),
            "math.g6.fraction-division",
            rng,
            (show(Fraction(n1, d1) * Fraction(n2, d2)),),
        )
    p, n = rng.choice([10, 20, 25, 40, 50, 75]), rng.choice([40, 80, 120, 200, 160])
    return calc(f"{p}%×{n}=", show(Fraction(p * n, 100)), "math.g6.percentages", rng)


def _calc_g7(rng: random.Random) -> Spec:
    a, b = rng.randint(2, 15), rng.randint(2, 15)
    roll = rng.random()
    if roll < 0.3:
        return calc(f"(-{a})+{b}=", str(b - a), "math.g7.rational-numbers", rng, (str(a + b), str(a - b)))
    if roll < 0.55:
        return calc(f"(-{a})×(-{b})=", str(a * b), "math.g7.rational-numbers", rng, (str(-a * b), str(a + b)))
    if roll < 0.75:
        n = rng.randint(2, 5)
        return calc(f"(-{n})²=", str(n * n), "math.g7.powers-scientific-notation", rng, (str(-n * n), str(2 * n)))
    p, q = rng.randint(2, 9), rng.randint(2, 9)
    return calc(f"{p}a+{q}a=", f"{p + q}a", "math.g7.like-terms", rng, (f"{p + q}a^2", f"{p * q}a"), qtype="expression")


def _calc_g8(rng: random.Random) -> Spec:
    roll = rng.random()
    if roll < 0.35:
        n = rng.randint(4, 19)
        return calc(f"√{n * n}=", str(n), "math.g8.square-roots", rng, (f"±{n}", str(n + 1)))
    if roll < 0.7:
        a = rng.randint(2, 9)
        return calc(f"(x+{a})(x-{a})=", f"x^2-{a * a}", "math.g8.special-products", rng,
                    (f"x²-{a}", f"x²+{a * a}", f"x²-{2 * a}"), qtype="expression", accepted=[f"x²-{a * a}"])  # fmt: skip
    p, q = rng.randint(2, 3), rng.randint(2, 4)
    return calc(f"{p}³×{p}^{q}=".replace("^2", "²").replace("^3", "³").replace("^4", "⁴"), str(p ** (3 + q)),
                "math.g8.exponent-laws", rng, (str(p ** (3 * q)),))  # fmt: skip


def _calc_g9(rng: random.Random) -> Spec:
    if rng.random() < 0.5:
        text, answer, wrong = rng.choice(
            [("sin30°=", "1/2", "√3/2"), ("cos60°=", "1/2", "√3/2"), ("tan45°=", "1", "√2/2")]
        )
        return calc(text, answer, "math.g9.trigonometry", rng, (wrong, "√2/2" if wrong != "√2/2" else "0"),
                    accepted=["0.5"] if answer == "1/2" else [])  # fmt: skip
    a, k = rng.choice([2, 3, 5]), rng.randint(2, 4)
    return calc(f"√{a}×√{a * k * k}=", str(a * k), "math.g8.square-roots", rng, (str(k), str(a * k * k)))


def _fill_g1(rng: random.Random) -> Spec:
    if rng.random() < 0.5:
        a, b = rng.randint(5, 12), rng.randint(2, 8)
        return fill(f"比{a}多{b}的数是{{}}。", str(a + b), "math.g1.numbers-to-20", rng, (str(a - b), str(a + b + 1)))
    t = rng.randint(2, 9)
    return fill(f"{t}个十是{{}}。", str(10 * t), "math.g1.numbers-to-100", rng, (str(t), str(100 * t)))


def _fill_g1_more(rng: random.Random) -> Spec:
    a = rng.randint(2, 8)
    return fill(f"{a}+{{}}=10", str(10 - a), "math.g1.add-sub-within-10", rng, (str(10 - a + 1), str(10 + a)))


def _fill_g2(rng: random.Random) -> Spec:
    m, k, n = rng.randint(2, 9), rng.randint(3, 8), rng.randint(3, 9)
    if rng.random() < 0.3:
        return fill(f"{k}×{{}}={k * n}", str(n), "math.g2.times-tables", rng, (str(n + 1), str(k * n - k)))
    if rng.random() < 0.5:
        return fill(f"{m}米={{}}厘米", str(100 * m), "math.g2.length-units", rng, (str(10 * m), str(1000 * m)))
    return fill(
        f"{k}个{n}相加是{{}}。", str(k * n), "math.g2.multiplication-meaning", rng, (str(k + n), str(k * n + n))
    )


def _fill_g3(rng: random.Random) -> Spec:
    k = rng.randint(2, 9)
    roll = rng.random()
    if roll < 0.35:
        return fill(f"{k}千克={{}}克", str(1000 * k), "math.g3.mass-units", rng, (str(100 * k), str(10 * k)))
    if roll < 0.6:
        return fill(f"{k}分={{}}秒", str(60 * k), "math.g3.seconds", rng, (str(100 * k), str(60 * k + 10)))
    if roll < 0.8:
        return fill(f"{k}吨={{}}千克", str(1000 * k), "math.g3.mass-units", rng, (str(100 * k),))
    return fill(f"{k}平方分米={{}}平方厘米", str(100 * k), "math.g3.area-units", rng, (str(10 * k), str(1000 * k)))


def _fill_g4(rng: random.Random) -> Spec:
    k = rng.randint(2, 9)
    if rng.random() < 0.5:
        return fill(f"{k}公顷={{}}平方米", str(10000 * k), "math.g4.hectare-km2", rng, (str(1000 * k), str(100 * k)))
    return fill(f"0.{k}里面有{{}}个0.1。", str(k), "math.g4.decimals-meaning", rng, (str(10 * k), f"0.{k}"))


def _fill_g5(rng: random.Random) -> Spec:
    roll = rng.random()
    if roll < 0.35:
        v = Decimal(rng.choice([15, 25, 32, 45, 7])) / 10
        return fill(
            f"{show(v)}立方分米={{}}立方厘米",
            show(v * 1000),
            "math.g5.volume-units",
            rng,
            (show(v * 100), show(v * 10)),
        )
    if roll < 0.7:
        g, a, b = rng.choice([2, 3, 4, 6]), *rng.sample([2, 3, 5, 7], 2)
        return fill(f"{g * a}和{g * b}的最大公因数是{{}}。", str(g), "math.g5.gcf-lcm", rng, (str(g * a * b), "1"))
    k, m = rng.randint(2, 9), rng.randint(2, 9)
    return fill(f"a的{k}倍再加{m}，用式子表示是{{}}。", f"{k}a+{m}", "math.g5.simple-equations", rng,
                (f"{k}(a+{m})", f"{k + m}a", f"a+{k * m}"), qtype="expression", accepted=[f"{m}+{k}a"])  # fmt: skip


def _fill_g6(rng: random.Random) -> Spec:
    if rng.random() < 0.5:
        n, d = rng.choice([(3, 4), (1, 4), (2, 5), (3, 5), (7, 20), (9, 25)])
        pct = f"{n * 100 // d}"
        return fill(f"{n}/{d}={{}}%", pct, "math.g6.percentages", rng, (show(Decimal(n) / Decimal(d)), f"{n}{d}"))
    x = rng.choice([Decimal("0.25"), Decimal("0.2"), Decimal("0.5"), Decimal("0.125")])
    return fill(f"{show(x)}的倒数是{{}}。", show(1 / x), "math.g6.reciprocal", rng, (f"-{show(x)}", show(x * 10)))


def _fill_g7(rng: random.Random) -> Spec:
    a, b = rng.randint(2, 12), rng.randint(13, 30)
    roll = rng.random()
    if roll < 0.35:
        return fill(f"-{a}的相反数是{{}}。", str(a), "math.g7.rational-numbers", rng, (f"-{a}", f"1/{a}"))
    if roll < 0.6:
        return fill(f"|-{a}|={{}}", str(a), "math.g7.rational-numbers", rng, (f"-{a}", f"±{a}"))
    return fill(f"若x+{a}={b}，则x={{}}。", str(b - a), "math.g7.linear-equations-one", rng, (str(a + b),))


def _fill_g8(rng: random.Random) -> Spec:
    if rng.random() < 0.5:
        n = rng.randint(6, 15)
        return fill(f"√{n * n}={{}}", str(n), "math.g8.square-roots", rng, (f"±{n}", str(n * 2)))
    a, b, c = rng.choice([(3, 4, 5), (6, 8, 10), (5, 12, 13), (9, 12, 15)])
    return fill(
        f"直角三角形的两条直角边长为{a}和{b}，斜边长为{{}}。",
        str(c),
        "math.g8.pythagoras",
        rng,
        (str(a + b), str(c * c)),
    )


def _fill_g9(rng: random.Random) -> Spec:
    r, w = rng.randint(2, 6), rng.randint(1, 5)
    p = Fraction(r, r + w)
    return fill(f"袋中有{r}个红球、{w}个白球，任意摸一个，摸到红球的概率是{{}}。", show(p), "math.g9.probability", rng,
                (f"{r}/{w}", show(1 - p)))  # fmt: skip


def _blanks_g1(rng: random.Random) -> Spec:
    t, o = rng.randint(2, 9), rng.randint(1, 9)
    return blanks(f"{t}{o}里面有{{}}个十和{{}}个一。", (str(t), str(o)), ("math.g1.numbers-to-100",), rng,
                  ((str(o), str(10 * t)), (str(t), str(t + o))))  # fmt: skip


def _blanks_g1_more(rng: random.Random) -> Spec:
    n = rng.randint(12, 19)
    return blanks(f"与{n}相邻的两个数是{{}}和{{}}。", (str(n - 1), str(n + 1)), ("math.g1.numbers-to-20",), rng,
                  ((str(n - 2), str(n + 1)), (str(n + 2), str(n))))  # fmt: skip


def _blanks_g2(rng: random.Random) -> Spec:
    k, n = rng.randint(3, 8), rng.randint(3, 9)
    return blanks(f"{k}个{n}相加，写成乘法算式是{{}}，积是{{}}。", (f"{k}×{n}", str(k * n)),
                  ("math.g2.multiplication-meaning",), rng, ((f"{k}+{n}",), (str(k + n), str(k * n + 1))),
                  ((f"{n}×{k}",), ()))  # fmt: skip


def _blanks_g3(rng: random.Random) -> Spec:
    length, width = rng.randint(5, 12), rng.randint(2, 4)
    return blanks(f"一个长方形长{length}厘米，宽{width}厘米，周长是{{}}厘米，面积是{{}}平方厘米。",
                  (str(2 * (length + width)), str(length * width)), ("math.g3.perimeter", "math.g3.area"), rng,
                  ((str(length + width), str(length * width)), (str(2 * (length + width)), str(length * width + 2))))  # fmt: skip


def _blanks_g4(rng: random.Random) -> Spec:
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    return blanks(f"{a}.0{b}里面有{{}}个1和{{}}个0.01。", (str(a), str(b)), ("math.g4.decimals-meaning",), rng,
                  ((str(a * 10),), (str(b * 10), f"0{b}")))  # fmt: skip


def _blanks_g5(rng: random.Random) -> Spec:
    g, a, b = rng.choice([2, 3, 4, 6]), *rng.sample([2, 3, 5], 2)
    return blanks(f"{g * a}和{g * b}的最大公因数是{{}}，最小公倍数是{{}}。", (str(g), str(g * a * b)),
                  ("math.g5.gcf-lcm",), rng, ((str(g * a * b), "1"), (str(g), str(g * g * a * b))))  # fmt: skip


def _blanks_g6(rng: random.Random) -> Spec:
    a, b = rng.choice([(3, 4), (2, 5), (3, 5), (1, 4)])
    k, m = rng.randint(2, 4), rng.randint(3, 5)
    return blanks(f"{a}:{b}={a * k}:{{}}={{}}÷{b * m}", (str(b * k), str(a * m)), ("math.g6.ratio",), rng)


def _blanks_g7(rng: random.Random) -> Spec:
    c = rng.randint(2, 9)
    return blanks(f"单项式-{c}x²y的系数是{{}}，次数是{{}}。", (f"-{c}", "3"), ("math.g7.algebraic-expressions",), rng,
                  ((str(c), f"-{c}x"), ("2", "1")))  # fmt: skip


def _blanks_g8(rng: random.Random) -> Spec:
    n = rng.randint(11, 19)
    return blanks(f"x²={n * n}，x={{}}；√{n * n}={{}}。", (f"±{n}", str(n)), ("math.g8.square-roots",), rng,
                  ((str(n), f"±{n + 1}"), (f"±{n}", str(n + 1))))  # fmt: skip


def _blanks_g9(rng: random.Random) -> Spec:
    p, q = sorted(rng.sample(range(1, 8), 2))
    return blanks(f"方程x²-{p + q}x+{p * q}=0的两根为x₁={{}}，x₂={{}}（x₁<x₂）。", (str(p), str(q)),
                  ("math.g9.quadratic-equations",), rng, ((f"-{q}", str(p + 1)), (f"-{p}", str(q + 1))))  # fmt: skip


def _choice_g1(rng: random.Random) -> Spec:
    a, b = rng.randint(5, 12), rng.randint(2, 6)
    return choice(
        f"比{a}大{b}的数是{{}}。",
        str(a + b),
        [str(a - b), str(a + b + 1), str(a + b - 1)],
        "math.g1.numbers-to-20",
        rng,
    )


def _choice_g1_more(rng: random.Random) -> Spec:
    h = rng.randint(2, 11)
    return choice(
        f"分针指向12，时针指向{h}，是{{}}。", f"{h}时", [f"12时{h}分", f"{h + 1}时", f"{h}时30分"], "math.g1.clock", rng
    )


def _choice_g2(rng: random.Random) -> Spec:
    a, b = rng.randint(3, 9), rng.randint(3, 9)
    if rng.random() < 0.5:
        return choice(
            f"{a}×{b}={{}}",
            str(a * b),
            [str(a * b + a), str(a * b - b), str(a + b), str(a * b + 1)],
            "math.g2.times-tables",
            rng,
        )
    return choice("1米={}厘米", "100", ["10", "1000", "1"], "math.g2.length-units", rng)


def _choice_g3(rng: random.Random) -> Spec:
    k, s = rng.randint(2, 9), rng.randint(5, 9)
    if rng.random() < 0.5:
        return choice(f"{k}千克={{}}克", str(1000 * k), [str(10 * k), str(100 * k), str(k)], "math.g3.mass-units", rng)
    return choice(
        f"边长{s}厘米的正方形，周长是{{}}厘米。",
        str(4 * s),
        [str(s * s), str(2 * s), str(s + 4)],
        "math.g3.perimeter",
        rng,
    )


def _choice_g4(rng: random.Random) -> Spec:
    return choice("三角形的内角和是{}。", "180°", ["90°", "360°", "270°"], "math.g4.triangles", rng)


def _choice_g5(rng: random.Random) -> Spec:
    if rng.random() < 0.5:
        a, b = Decimal(rng.choice([25, 125, 15])) / 100, rng.choice([4, 8, 6])
        p = a * b
        return choice(
            f"{show(a)}×{b}的积是{{}}。",
            show(p),
            [show(p * 10), show(p / 10), show(p * 100)],
            "math.g5.decimal-multiplication",
            rng,
        )
    return choice("一个正方体有{}个面。", "6", ["4", "8", "12"], "math.g5.cuboid-cube", rng)


def _choice_g6(rng: random.Random) -> Spec:
    return choice("圆的半径扩大到原来的2倍，面积扩大到原来的{}倍。", "4", ["2", "8", "6"], "math.g6.circle", rng)


def _choice_g7(rng: random.Random) -> Spec:
    a = rng.randint(2, 9)
    return choice(f"-{a}的相反数是{{}}。", str(a), [f"-{a}", f"1/{a}", f"-1/{a}"], "math.g7.rational-numbers", rng)


def _choice_g8(rng: random.Random) -> Spec:
    return choice("下列各数中，是无理数的是{}。", "√2", ["√4", "1/3", "0.5"], "math.g7.real-numbers", rng)


def _choice_g9(rng: random.Random) -> Spec:
    n = rng.randint(2, 9)
    return choice(
        f"一元二次方程x²={n * n}的解是{{}}。",
        f"x=±{n}",
        [f"x={n}", f"x=-{n}", f"x={n * n}"],
        "math.g9.quadratic-equations",
        rng,
    )


def _word_g1(rng: random.Random) -> Spec:
    a, b = rng.randint(11, 18), rng.randint(3, 9)
    return word(
        f"小明有{a}个苹果，吃了{b}个，还剩几个？",
        str(a - b),
        "个",
        (f"{a}-{b}={{r}}（个）",),
        "math.g1.word-problems",
        rng,
        "还剩",
    )


def _word_g1_more(rng: random.Random) -> Spec:
    a, b = rng.randint(5, 9), rng.randint(3, 9)
    return word(f"树上有{a}只鸟，又飞来{b}只，现在树上有多少只鸟？", str(a + b), "只", (f"{a}+{b}={{r}}（只）",),
                "math.g1.word-problems", rng, "现在有", (str(a - b) if a > b else str(b - a), str(a + b + 1)))  # fmt: skip


def _word_g2(rng: random.Random) -> Spec:
    if rng.random() < 0.5:
        a, b = rng.randint(40, 90), rng.randint(12, 38)
        return word(f"书架上有{a}本书，借走{b}本，还剩多少本？", str(a - b), "本", (f"{a}-{b}={{r}}（本）",),
                    "math.g2.add-sub-within-100", rng, "还剩", (str(a + b), *wrong_numbers(str(a - b), rng)))  # fmt: skip
    a, b = rng.randint(3, 9), rng.randint(3, 9)
    return word(f"每盒有{a}支笔，买了{b}盒，一共有多少支笔？", str(a * b), "支", (f"{a}×{b}={{r}}（支）",),
                "math.g2.multiplication-meaning", rng, "一共有")  # fmt: skip


def _word_g3(rng: random.Random) -> Spec:
    if rng.random() < 0.5:
        length, width = rng.randint(10, 25), rng.randint(5, 9)
        return word(f"一个长方形花坛长{length}米，宽{width}米，它的周长是多少米？", str(2 * (length + width)), "米",
                    (f"({length}+{width})×2={{r}}（米）",), "math.g3.perimeter", rng, "周长是",
                    (str(length + width), str(length * width)))  # fmt: skip
    k, p = rng.randint(3, 9), rng.randint(6, 12)
    return word(f"妈妈买了{k}千克苹果，每千克{p}元，一共花了多少元？", str(k * p), "元", (f"{k}×{p}={{r}}（元）",),
                "math.g3.multi-digit-multiplication", rng, "一共花了")  # fmt: skip


def _word_g4(rng: random.Random) -> Spec:
    n, p = rng.randint(12, 45), rng.choice([120, 150, 180, 240, 260])
    return word(f"学校买了{n}套桌椅，每套{p}元，一共花了多少元？", str(n * p), "元", (f"{p}×{n}={{r}}（元）",),
                "math.g4.three-by-two-digit", rng, "一共花了")  # fmt: skip


def _word_g5(rng: random.Random) -> Spec:
    v, t = Decimal(rng.choice([655, 725, 485, 62])) / 10, rng.randint(2, 5)
    return word(f"一辆汽车每小时行驶{show(v)}千米，{t}小时行驶多少千米？", show(v * t), "千米", (f"{show(v)}×{t}={{r}}（千米）",),
                "math.g5.decimal-multiplication", rng, "行驶了")  # fmt: skip


def _word_g6(rng: random.Random) -> Spec:
    p, z = rng.choice([200, 240, 360, 150]), rng.choice([8, 9, 7])
    return word(f"一件衣服原价{p}元，打{CN_NUMERALS[z - 1]}折后是多少元？", show(Fraction(p * z, 10)), "元",
                (f"{p}×{z * 10}%={{r}}（元）",), "math.g6.percentage-uses", rng, "现价",
                (show(Fraction(p * (10 - z), 10)), *wrong_numbers(show(Fraction(p * z, 10)), rng)))  # fmt: skip


def _word_g7(rng: random.Random) -> Spec:
    girls, d = rng.randint(18, 24), rng.randint(2, 6)
    n, boys = 2 * girls + d, girls + d
    return word(f"某班有学生{n}人，男生比女生多{d}人，男生有多少人？", str(boys), "人",
                (f"设女生有x人，x+(x+{d})={n}", f"x={girls}，{girls}+{d}={{r}}（人）"), "math.g7.equation-word-problems",
                rng, "男生有", (str(girls), *wrong_numbers(str(boys), rng)))  # fmt: skip


def _word_g8(rng: random.Random) -> Spec:
    a, b, c = rng.choice([(3, 4, 5), (6, 8, 10), (5, 12, 13)])
    return word(f"一架梯子长{c}米，底端离墙{a}米，梯子顶端离地面多高？", str(b), "米", (f"√({c}²-{a}²)={{r}}（米）",),
                "math.g8.pythagoras", rng, "梯子顶端离地面", (str(c - a), str(c + a)))  # fmt: skip


def _word_g9(rng: random.Random) -> Spec:
    rate = rng.choice([10, 20])
    after = 100 * (100 - rate) ** 2 // 10000
    return word(f"某商品原价100元，连续两次降价后为{after}元，平均每次降价的百分率是多少？", str(rate), "%",
                (f"设百分率为x，100(1-x)²={after}", "x={r}%"), "math.g9.quadratic-applications", rng, "",
                (str(200 - rate), str(rate // 2)))  # fmt: skip


Bank = Callable[[random.Random], Spec]
BANKS: dict[str, list[tuple[Bank, ...]]] = {  # per kind, per grade
    "calc_row": [(b,) for b in (_calc_g1, _calc_g2, _calc_g3, _calc_g4, _calc_g5, _calc_g6, _calc_g7, _calc_g8, _calc_g9)],
    "fill": [(_fill_g1, _fill_g1_more), *((b,) for b in (_fill_g2, _fill_g3, _fill_g4, _fill_g5, _fill_g6, _fill_g7, _fill_g8, _fill_g9))],
    "blanks": [(_blanks_g1, _blanks_g1_more), *((b,) for b in (_blanks_g2, _blanks_g3, _blanks_g4, _blanks_g5, _blanks_g6, _blanks_g7, _blanks_g8, _blanks_g9))],
    "choice": [(_choice_g1, _choice_g1_more), *((b,) for b in (_choice_g2, _choice_g3, _choice_g4, _choice_g5, _choice_g6, _choice_g7, _choice_g8, _choice_g9))],
    "word": [(_word_g1, _word_g1_more), *((b,) for b in (_word_g2, _word_g3, _word_g4, _word_g5, _word_g6, _word_g7, _word_g8, _word_g9))],
}  # fmt: skip


def pick_question(kind: str, grade: int, rng: random.Random) -> Spec:
    """A question of this kind for this grade, now and then one from the grade before."""
    level = grade if grade == 1 or rng.random() < 0.75 else grade - 1
    return rng.choice(BANKS[kind][level - 1])(rng)


def question_shape(spec: Spec) -> str:
    """The question without its numbers: 'x²=#，x={}；√#={}。'."""
    return re.sub(r"\d+", "#", spec.text)


def pick_questions(grade: int, rng: random.Random, columns: int) -> dict[str, list[Spec]]:
    """The questions of each section, a question's shape (its text but for numbers) seldom twice;
    a short quiz (one page, mostly) now and then."""
    short = rng.random() < SHORT_QUIZ_SHARE
    counts = {
        "calc_row": rng.choice([4, 6, 8]) if columns == 2 else rng.randint(3, 5),
        "fill": rng.randint(3, 5),
        "blanks": rng.randint(1, 3),
        "choice": rng.randint(2, 4),
        "word": rng.randint(2, 3),
    }
    if short:
        counts = {kind: max(1, count // 2) for kind, count in counts.items()}
    sections: dict[str, list[Spec]] = {"calc": [], "fill": [], "choice": [], "word": []}
    for kind, count in counts.items():
        chosen: list[Spec] = []
        for _ in range(count * 6):
            if len(chosen) == count:
                break
            spec = pick_question(kind, grade, rng)
            shapes = [question_shape(c) for c in chosen]
            if spec.text not in {c.text for c in chosen} and shapes.count(question_shape(spec)) < SAME_SHAPE_MOST[kind]:
                chosen.append(spec)
        sections[KIND_SECTIONS[kind]] += chosen
    rng.shuffle(sections["fill"])
    return sections


# ---------------------------------------------------------------------------------------------
# What the pupil writes


@dataclass(frozen=True)
class Attempt:
    written: tuple[str, ...]  # per blank; ("",) for blank
    correct: bool
    score: float
    crossed_out: str | None = None
    working: tuple[str, ...] = ()  # word: the working lines written


def _blank_scores(spec: Spec, written: tuple[str, ...]) -> tuple[bool, float]:
    each = spec.points / len(spec.answers)
    right = [w != "" and (w == a or w in acc) for w, a, acc in zip(written, spec.answers, spec.accepted, strict=True)]
    return all(right), each * sum(right)


def attempt_blanks(spec: Spec, rng: random.Random, roll: float) -> Attempt:
    """Both blanks right, one or both wrong, or one left empty; scored blank by blank."""
    right = list(spec.answers)
    if roll < BLANK_SHARE:
        written = ["", ""]
    elif roll < BLANK_SHARE + RIGHT_SHARE:
        written = right
    else:
        which, pattern = rng.randrange(2), rng.random()
        written = list(right)
        written[which] = "" if pattern < 0.2 else rng.choice(spec.wrongs[which])
        if pattern > 0.75:
            written[1 - which] = rng.choice(spec.wrongs[1 - which])
    correct, score = _blank_scores(spec, tuple(written))
    return Attempt(tuple(written), correct, score)


def attempt_word(spec: Spec, rng: random.Random, roll: float) -> Attempt:
    """Working that matches the final answer; the wrong answers include a missing unit."""
    value = spec.answers[0].removesuffix(spec.unit)
    if roll < BLANK_SHARE:
        return Attempt(("",), False, 0.0)
    final = spec.answers[0] if roll < BLANK_SHARE + RIGHT_SHARE else rng.choice(spec.wrongs[0])
    result = final.removesuffix(spec.unit) if final.endswith(spec.unit) else value
    working = tuple(line.format(r=result) for line in spec.working)
    correct = final == spec.answers[0]
    if spec.phrase and rng.random() < WORD_PHRASE_SHARE:
        final = f"{spec.phrase}{final}。"
    return Attempt((final,), correct, spec.points if correct else 0.0, working=working)


def attempt_single(spec: Spec, rng: random.Random, roll: float) -> Attempt:
    """A calc_row, fill or choice answer: right (now and then in an accepted form), wrong or blank."""
    if roll < BLANK_SHARE:
        return Attempt(("",), False, 0.0)
    if roll < BLANK_SHARE + RIGHT_SHARE:
        forms = spec.accepted[0] if spec.accepted else ()
        text = rng.choice(forms) if forms and rng.random() < ACCEPTED_FORM_SHARE else spec.answers[0]
        if spec.kind == "choice" and rng.random() < 0.08:
            text = text.lower()
        return Attempt((text,), True, spec.points)
    return Attempt((rng.choice(spec.wrongs[0]),), False, 0.0)


def as_handwritten(text: str) -> str:
    """A key's x^2 as a pupil writes it: x²."""
    return text.replace("^2", "²").replace("^3", "³")


def decide_attempt(spec: Spec, rng: random.Random) -> Attempt:
    roll = rng.random()
    if spec.kind == "blanks":
        return attempt_blanks(spec, rng, roll)
    attempt = attempt_word(spec, rng, roll) if spec.kind == "word" else attempt_single(spec, rng, roll)
    if spec.kind in ("calc_row", "word") and attempt.written[0] and rng.random() < CROSS_OUT_SHARE:
        first = [w for w in (*spec.wrongs[0], spec.answers[0]) if w != attempt.written[0].rstrip("。")]
        attempt = dataclasses.replace(attempt, crossed_out=as_handwritten(rng.choice(first)))
    return dataclasses.replace(attempt, written=tuple(as_handwritten(w) for w in attempt.written))


# ---------------------------------------------------------------------------------------------
# Fonts and handwriting


@functools.cache
def cached_font(path: str, px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return _font([path], px)


@functools.cache
def has_glyph(path: str, ch: str) -> bool:
    """Whether the font draws this character (not its missing-glyph box, not nothing)."""
    font = cached_font(path, 40)
    missing = font.getmask("\U0010fffd")
    mask = font.getmask(ch)
    return mask.getbbox() is not None and (bytes(mask), mask.size) != (bytes(missing), missing.size)


def font_for(ch: str, chain: tuple[str, ...]) -> str:
    return next((path for path in chain if has_glyph(path, ch)), chain[-1])


@functools.cache
def print_fonts() -> tuple[str, ...]:
    """The CJK fonts installed (fc-list), those named above first."""
    try:
        listed = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        listed = ""
    found = [line.split(":")[0].strip() for line in listed.splitlines() if line.strip()]
    ordered = [p for p in PRINT_FONT_CANDIDATES if Path(p).exists()]
    return tuple(dict.fromkeys(ordered + sorted(f for f in found if f.endswith((".ttc", ".ttf", ".otf")))))


@dataclass(frozen=True)
class HandStyle:
    """A pupil's hand: fonts, pen, size and slant."""

    latin: str  # digits and letters
    cjk: str  # Chinese characters, units, full-width brackets
    pen: str
    size: float  # units
    slant: float
    stroke: int
    # Each stroke of each glyph moved and turned on its own (handright's method, below): the
    # shift's sigma as a share of the glyph's size, the turn's sigma in radians; 0: not moved.
    shift: float = 0.0
    turn: float = 0.0
    strokes_seed: int = 0

    @property
    def ink(self) -> tuple[int, int, int]:
        return PENS[self.pen]

    @property
    def name(self) -> str:
        return f"{Path(self.latin).stem}+{Path(self.cjk).stem}" + ("+strokes moved" if self.shift else "")


@dataclass(frozen=True)
class Handwriting:
    mask: Image.Image  # "L": the ink
    origin: tuple[int, int]  # the pen's start on the baseline, in the mask
    bbox: tuple[int, int, int, int]  # the ink, in the mask


def hand_font(ch: str, hand: HandStyle) -> str:
    chain = (hand.latin, hand.cjk, *HAND_CJK) if ch in LATIN_HAND_CHARS else (hand.cjk, *HAND_CJK)
    return font_for(ch, tuple(p for p in (*chain, *FALLBACK_FONTS) if Path(p).exists()))


def draw_glyph(ch: str, path: str, px: int, pressure: int, angle: float, stroke: int) -> tuple[Image.Image, int, int]:
    """One glyph's ink, rotated about its origin on the baseline, and that origin."""
    font = cached_font(path, px)
    left, top, right, bottom = font.getbbox(ch, anchor="ls", stroke_width=stroke)
    pad = px // 4 + 2
    mask = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ox, oy = pad - left, pad - top
    ImageDraw.Draw(mask).text(
        (ox, oy), ch, font=font, fill=pressure, anchor="ls", stroke_width=stroke, stroke_fill=pressure
    )
    if angle:
        mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, center=(ox, oy))
    return mask, ox, oy


def write_by_hand(text: str, hand: HandStyle, px: int, rng: random.Random, max_width: int | None = None) -> Handwriting:
    """Text in the pupil's hand, each glyph with its own rotation, scale, baseline and spacing."""
    canvas = Image.new("L", (int(px * (1.3 * len(text) + 3)), int(px * 2.4)), 0)
    x, baseline = px, int(px * 1.5)
    drift = rng.uniform(-0.012, 0.012)  # the line climbs or sinks a little
    for ch in text:
        if ch == " ":
            x += px * rng.uniform(0.25, 0.4)
            continue
        size = max(6, round(px * rng.uniform(0.85, 1.13) * (0.92 if not ch.isascii() else 1.0)))
        path = hand_font(ch, hand)
        glyph, ox, oy = draw_glyph(ch, path, size, rng.randint(200, 255), rng.uniform(-9, 9), hand.stroke)
        if hand.shift or hand.turn:
            glyph = perturb_strokes(glyph, size * hand.shift, hand.turn, stroke_rng(hand, text, size, x))
        y = baseline + round(max(-0.2 * px, min(0.2 * px, (x - px) * drift)) + rng.uniform(-0.08, 0.08) * px)
        box = (int(x) - ox, y - oy)
        region = canvas.crop((*box, box[0] + glyph.width, box[1] + glyph.height))
        canvas.paste(ImageChops.lighter(region, glyph), box)
        x += cached_font(path, size).getlength(ch) * rng.uniform(0.9, 1.12) + px * rng.uniform(-0.02, 0.06)
    canvas = slant(canvas, hand.slant, baseline)
    if hand.pen == "pencil":
        grain = Image.frombytes("L", canvas.size, rng.randbytes(canvas.width * canvas.height)).point(
            lambda v: 185 + v * 70 // 255
        )
        canvas = ImageChops.multiply(canvas, grain)
    bbox = canvas.getbbox() or (px, baseline - 1, px + 1, baseline)
    written = Handwriting(canvas, (px, baseline), bbox)
    return fit_width(written, max_width) if max_width else written


def stroke_rng(hand: HandStyle, text: str, size: int, x: float) -> random.Random:
    """The strokes' own random stream, so the paper's stream (and every paper whose pupil's strokes
    are not moved) stays as it was."""
    return random.Random(zlib.crc32(f"{hand.strokes_seed}:{text}:{size}:{x:.2f}".encode()))


def perturb_strokes(glyph: Image.Image, shift: float, turn: float, rng: random.Random) -> Image.Image:
    """Every stroke (a connected piece of ink) shifted by a Gaussian amount in x and y and turned
    about its box's centre: the perturbation of the handright handwriting simulator (which pins a
    Pillow older than markq's), kept grey rather than thresholded to one bit."""
    ink = np.asarray(glyph)
    count, labels, stats, _ = cv2.connectedComponentsWithStats((ink > 0).astype(np.uint8), connectivity=4)
    out = np.zeros_like(ink)
    for n in range(1, count):
        x, y, w, h = (int(v) for v in stats[n, :4])
        stroke = np.where(labels == n, ink, 0).astype(np.uint8)
        centre = (x + (w - 1) / 2, y + (h - 1) / 2)
        move = cv2.getRotationMatrix2D(centre, np.degrees(rng.gauss(0, turn)), 1.0)
        move[:, 2] += (rng.gauss(0, shift), rng.gauss(0, shift))
        np.maximum(out, cv2.warpAffine(stroke, move, (ink.shape[1], ink.shape[0]), flags=cv2.INTER_LINEAR), out=out)
    return Image.fromarray(out)


def slant(mask: Image.Image, amount: float, baseline: int) -> Image.Image:
    """Lean the writing right (amount > 0) or left, about the baseline."""
    matrix = (1, amount, -amount * baseline, 0, 1, 0)
    return mask.transform(mask.size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BICUBIC)


def fit_width(written: Handwriting, max_width: int) -> Handwriting:
    """Smaller, as a pupil writes smaller to fit the space, if wider than max_width."""
    width = written.bbox[2] - written.bbox[0]
    if width <= max_width:
        return written
    f = max_width / width
    mask = written.mask.resize((max(1, round(written.mask.width * f)), max(1, round(written.mask.height * f))))
    scaled = tuple(round(v * f) for v in written.bbox)
    return Handwriting(mask, (round(written.origin[0] * f), round(written.origin[1] * f)), scaled)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Pages


@dataclass
class Sheet:
    """A page being made: the printed paper and, apart, the pupil's ink."""

    paper: Image.Image
    ink: Image.Image
    number: int

    @property
    def draw(self) -> ImageDraw.ImageDraw:
        return ImageDraw.Draw(self.paper)


@dataclass
class Ctx:
    """What is fixed for one paper: design, fonts, scale, numbering, the pupil's hand, its rng."""

    grade: int
    design: Design
    font: str
    scale: int
    numbering: str
    blank_style: str  # paren: （   ）; line: ____
    spaced_ops: bool
    hand: HandStyle
    rng: random.Random

    def px(self, v: float) -> int:
        return round(v * self.scale)

    def chain(self) -> tuple[str, ...]:
        return (self.font, *(p for p in FALLBACK_FONTS if Path(p).exists()))

    def width(self, text: str, size: float) -> float:
        """Printed width in units."""
        return sum(cached_font(font_for(ch, self.chain()), self.px(size)).getlength(ch) for ch in text) / self.scale

    def print_text(self, sheet: Sheet, x: float, baseline: float, text: str, size: float, bold: bool = False) -> float:
        """Printed text, character by character (a font lacking ² falls back); returns its end x."""
        for ch in text:
            font = cached_font(font_for(ch, self.chain()), self.px(size))
            stroke = 1 if bold else 0
            sheet.draw.text((self.px(x), self.px(baseline)), ch, font=font, fill=PRINT_COLOUR, anchor="ls",
                            stroke_width=stroke, stroke_fill=PRINT_COLOUR)  # fmt: skip
            x += font.getlength(ch) / self.scale
        return x

    def hand_px(self, factor: float = 1.0) -> int:
        return self.px(self.hand.size * factor * self.rng.uniform(0.92, 1.08))


Box = tuple[float, float, float, float]


def band(top: float, height: float, x0: float, x1: float) -> Box:
    return (x0, top, x1, top + height)


def to_pixels(box: Box, scale: int) -> tuple[int, int, int, int]:
    return tuple(round(v * scale) for v in box)  # type: ignore[return-value]


def place_hand(ctx: Ctx, sheet: Sheet, written: Handwriting, x: float, baseline: float) -> tuple[int, int, int, int]:
    """The handwriting onto the page's ink, its origin at (x, baseline); its ink box in pixels."""
    left, top = ctx.px(x) - written.origin[0], ctx.px(baseline) - written.origin[1]
    layer = Image.new("RGBA", written.mask.size, (*ctx.hand.ink, 0))
    layer.putalpha(written.mask)
    crop_left, crop_top = max(0, -left), max(0, -top)
    layer = layer.crop((crop_left, crop_top, layer.width, layer.height))
    sheet.ink.alpha_composite(layer, (left + crop_left, top + crop_top))
    b = written.bbox
    return (left + b[0], top + b[1], left + b[2], top + b[3])


STACKED_SHARE = 0.7  # of fraction answers written stacked, as pupils mostly do; the rest as 3/8
_FRACTION = re.compile(r"(\d+)/(\d+)")


def write_answer(ctx: Ctx, sheet: Sheet, text: str, x: float, baseline: float, max_width: float,
                 factor: float = 1.0) -> tuple[int, int, int, int]:  # fmt: skip
    """A written answer starting at x on the baseline; its ink box in pixels. A fraction is mostly
    written stacked (drawn with an rng of its own: the rest of the paper is as it was)."""
    if (parts := _FRACTION.fullmatch(text)) is not None:
        own = random.Random(f"{text}:{x:.2f}:{baseline:.2f}:{ctx.font}:{ctx.hand.size}")
        if own.random() < STACKED_SHARE:
            return write_stacked(ctx, sheet, parts.group(1), parts.group(2), x, baseline, own, factor)
    written = write_by_hand(text, ctx.hand, ctx.hand_px(factor), ctx.rng, ctx.px(max_width))
    return place_hand(ctx, sheet, written, x, baseline + ctx.rng.uniform(-2, 4))


def write_stacked(ctx: Ctx, sheet: Sheet, numerator: str, denominator: str, x: float, baseline: float,
                  rng: random.Random, factor: float) -> tuple[int, int, int, int]:  # fmt: skip
    """A fraction written as pupils write it: the numerator over a hand-drawn bar over the
    denominator, the bar a little above the line's baseline (on a printed answer line, often on
    it); its ink box in pixels."""
    size = ctx.hand.size * factor * 0.8 * rng.uniform(0.92, 1.08)
    top, bottom = (write_by_hand(part, ctx.hand, ctx.px(size), rng) for part in (numerator, denominator))
    width = max(w.bbox[2] - w.bbox[0] for w in (top, bottom)) / ctx.scale
    centre = x + width / 2 + size * 0.2
    bar = baseline - size * rng.uniform(0.05, 0.3)
    boxes = []
    for written, row_baseline in ((top, bar - size * 0.22), (bottom, bar + size * 0.95)):
        ink_centre = (written.bbox[0] + written.bbox[2]) / 2 - written.origin[0]
        boxes.append(
            place_hand(ctx, sheet, written, centre - ink_centre / ctx.scale + rng.uniform(-1, 1), row_baseline)
        )
    half = width / 2 + size * rng.uniform(0.1, 0.3)
    points = [(ctx.px(centre - half + 2 * half * t / 4), ctx.px(bar + rng.uniform(-0.6, 0.6))) for t in range(5)]
    ImageDraw.Draw(sheet.ink).line(points, fill=(*ctx.hand.ink, 235), width=max(2, ctx.px(ctx.hand.size * 0.09)))
    boxes.append((points[0][0], min(p[1] for p in points) - 1, points[-1][0], max(p[1] for p in points) + 1))
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def strike_through(ctx: Ctx, sheet: Sheet, ink: tuple[int, int, int, int]) -> None:
    """A hand-drawn line (or two) through a first attempt."""
    draw = ImageDraw.Draw(sheet.ink)
    x0, y0, x1, y1 = ink
    width = max(2, ctx.px(2.5))
    for _ in range(ctx.rng.choice([1, 1, 2])):
        mid = (y0 + y1) / 2 + ctx.rng.uniform(-0.2, 0.2) * (y1 - y0)
        tilt = ctx.rng.uniform(-0.15, 0.15) * (y1 - y0)
        points = [
            (
                x0 - ctx.px(6) + (x1 - x0 + ctx.px(12)) * t / 5,
                mid - tilt + 2 * tilt * t / 5 + ctx.rng.uniform(-1.5, 1.5) * ctx.scale,
            )
            for t in range(6)
        ]
        draw.line(points, fill=(*ctx.hand.ink, 235), width=width, joint="curve")


def write_with_cross_out(ctx: Ctx, sheet: Sheet, final: str, crossed: str | None, x: float, baseline: float,
                         x_end: float) -> tuple[int, int, int, int] | None:  # fmt: skip
    """The final answer at x, after a struck-through first attempt when there is one."""
    if crossed:
        first = write_answer(ctx, sheet, crossed, x, baseline, (x_end - x) / 2.3)
        strike_through(ctx, sheet, first)
        x = first[2] / ctx.scale + ctx.rng.uniform(14, 28)
    if not final:
        return None
    return write_answer(ctx, sheet, final, x, baseline, x_end - x - 4)


# ---------------------------------------------------------------------------------------------
# Layout of question text with blanks


@dataclass(frozen=True)
class Slot:
    """A blank in the printed text, which the pupil fills in."""

    index: int
    inner: float  # units
    style: str = "paren"  # paren: （   ）; line: ____


@dataclass(frozen=True)
class Placed:
    line: int
    x: float
    piece: str | Slot


def pieces(text: str, inner: float) -> list[str | Slot]:
    out: list[str | Slot] = []
    for index, part in enumerate(text.split("{}")):
        if index:
            out.append(Slot(index - 1, inner))
        out.extend(part)
    return out


def piece_width(ctx: Ctx, piece: str | Slot) -> float:
    size = ctx.design.print_size
    if isinstance(piece, str):
        return ctx.width(piece, size)
    brackets = ctx.width("（）", size) if piece.style == "paren" else 8
    return piece.inner + brackets


def wrap(ctx: Ctx, parts: list[str | Slot], x: float, indent: float, x_end: float) -> list[Placed]:
    """Pieces placed on lines, breaking before one that would pass x_end (punctuation stays)."""
    placed, line = [], 0
    for piece in parts:
        w = piece_width(ctx, piece)
        if x + w > x_end and x > indent and not (isinstance(piece, str) and piece in "，。；）、"):
            line, x = line + 1, indent
        placed.append(Placed(line, x, piece))
        x += w
    return placed


def slot_inner(ctx: Ctx, spec: Spec, index: int) -> float:
    """A blank wide enough for the answer or any wrong one in the pupil's hand."""
    candidates = (spec.answers[index], *spec.wrongs[index], *(spec.accepted[index] if spec.accepted else ()))
    longest = max(sum(1.0 if ch.isascii() else 1.7 for ch in c) for c in candidates)
    least = 2.6 if ctx.blank_style == "paren" else 3.4
    return max(least * ctx.design.print_size, longest * ctx.hand.size * 0.62 + 24)


def draw_slot(ctx: Ctx, sheet: Sheet, placed: Placed, baseline: float, top: float) -> Box:
    """The printed blank; returns where the answer goes in it."""
    slot = placed.piece
    assert isinstance(slot, Slot)
    size, line = ctx.design.print_size, ctx.design.line
    if slot.style == "paren":
        opening = ctx.width("（", size)
        ctx.print_text(sheet, placed.x, baseline, "（", size)
        ctx.print_text(sheet, placed.x + opening + slot.inner, baseline, "）", size)
        return band(top, line, placed.x + opening * 0.7, placed.x + opening + slot.inner + opening * 0.3)
    x0, x1 = placed.x + 4, placed.x + 4 + slot.inner
    sheet.draw.line(
        (ctx.px(x0), ctx.px(baseline + 5), ctx.px(x1), ctx.px(baseline + 5)),
        fill=PRINT_COLOUR,
        width=max(1, ctx.px(1.5)),
    )
    return band(top, line, x0, x1)


def draw_wrapped(ctx: Ctx, sheet: Sheet, placed: list[Placed], top: float) -> dict[int, Box]:
    """Printed pieces, line by line from top; the blanks' answer boxes by index."""
    boxes = {}
    for p in placed:
        line_top = top + p.line * ctx.design.line
        baseline = line_top + ctx.design.line * 0.72
        if isinstance(p.piece, Slot):
            boxes[p.piece.index] = draw_slot(ctx, sheet, p, baseline, line_top)
        else:
            ctx.print_text(sheet, p.x, baseline, p.piece, ctx.design.print_size)
    return boxes


# ---------------------------------------------------------------------------------------------
# Blocks: the title, headings and questions, each with its height and how it is drawn


@dataclass
class Item:
    spec: Spec
    qid: str
    label: str
    section: str
    attempt: Attempt


@dataclass
class Placement:
    """Where a question landed: its page, answer region, blanks' boxes and the final answer's ink."""

    page: int
    region: tuple[int, int, int, int]
    blank_regions: list[tuple[int, int, int, int]] = field(default_factory=list)
    ink: tuple[int, int, int, int] | None = None


Placements = dict[str, Placement]


def number_label(style: str, n: int) -> str:
    if style == "paren":
        return f"（{n}）"
    if style == "di":
        return f"第{n}题"
    if style == "circled":
        return chr(0x2460 + n - 1) if n <= 20 else f"({n})"
    return f"{n}."


def printed_text(ctx: Ctx, spec: Spec) -> str:
    """The question's printed text ('{}' for blanks), its operators spaced on some papers."""
    if ctx.spaced_ops and spec.kind == "calc_row":
        return re.sub(r"(?<=[0-9a-z)²³°])\s*([+\-×÷=])\s*", r" \1 ", spec.text).rstrip() + " "
    return spec.text


def key_prompt(ctx: Ctx, spec: Spec) -> str:
    blank = "（ ）" if ctx.blank_style == "paren" or spec.kind == "choice" else "____"
    return printed_text(ctx, spec).strip().replace("{}", blank)


def text_start(ctx: Ctx, x: float, label: str) -> float:
    return x + ctx.width(label, ctx.design.print_size) + ctx.design.print_size * 0.35


def question_parts(ctx: Ctx, item: Item) -> list[str | Slot]:
    spec = item.spec
    text = printed_text(ctx, spec)
    parts = pieces(text, 0)
    if spec.kind == "choice":
        return [Slot(p.index, 2.6 * ctx.design.print_size) if isinstance(p, Slot) else p for p in parts]
    return [Slot(p.index, slot_inner(ctx, spec, p.index), ctx.blank_style) if isinstance(p, Slot) else p for p in parts]


def layout_question(ctx: Ctx, item: Item) -> list[Placed]:
    d = ctx.design
    start = text_start(ctx, d.left, item.label)
    return wrap(ctx, question_parts(ctx, item), start, start, d.right_edge)


def line_count(placed: list[Placed]) -> int:
    return max(p.line for p in placed) + 1


def draw_label(ctx: Ctx, sheet: Sheet, item: Item, top: float) -> None:
    ctx.print_text(sheet, ctx.design.left, top + ctx.design.line * 0.72, item.label, ctx.design.print_size)


def draw_title_block(ctx: Ctx, sheet: Sheet, title: str) -> None:
    """The title and the pupil's details (questions_top knows how tall each kind is)."""
    d = ctx.design
    size = 38.0
    while ctx.width(title, size) > d.right_edge - d.left and size > 24:
        size -= 1
    x = d.left if d.title_block == "left" else (d.left + d.right_edge - ctx.width(title, size)) / 2
    ctx.print_text(sheet, x, d.top + 45, title, size, bold=True)
    if d.title_block == "boxes":
        draw_detail_boxes(ctx, sheet, d.top + 75)
    elif d.title_block == "sealed":
        draw_score_box(ctx, sheet, d.right_edge - 150, d.top + 70)
    elif d.title_block == "left":
        ctx.print_text(sheet, d.left, d.top + 90, "（时间：60分钟   满分：100分）", 24)
        rule(ctx, sheet, d.left, d.right_edge, d.top + 108, 2)
        draw_detail_lines(ctx, sheet, d.top + 160)
    else:
        draw_detail_lines(ctx, sheet, d.top + 115)


def rule(ctx: Ctx, sheet: Sheet, x0: float, x1: float, y: float, width: float = 1.5) -> None:
    sheet.draw.line((ctx.px(x0), ctx.px(y), ctx.px(x1), ctx.px(y)), fill=PRINT_COLOUR, width=max(1, ctx.px(width)))


def draw_detail_lines(ctx: Ctx, sheet: Sheet, baseline: float) -> None:
    """学校：____ 班级：____ 姓名：____ 得分：____ on one line."""
    d = ctx.design
    labels = ("学校：", "班级：", "姓名：", "得分：")
    each = (d.right_edge - d.left) / len(labels)
    for n, label in enumerate(labels):
        x = ctx.print_text(sheet, d.left + n * each, baseline, label, 26)
        rule(ctx, sheet, x + 2, d.left + (n + 1) * each - 24, baseline + 6)


def draw_detail_boxes(ctx: Ctx, sheet: Sheet, top: float) -> None:
    """A one-row table: 学校 | | 班级 | | 姓名 | | 得分 | ."""
    d = ctx.design
    weights = (1, 2.4, 1, 1.6, 1, 1.8, 1, 1.2)
    unit = (d.right_edge - d.left) / sum(weights)
    x, height = d.left, 56
    for n, w in enumerate(weights):
        sheet.draw.rectangle(to_pixels((x, top, x + w * unit, top + height), ctx.scale), outline=PRINT_COLOUR,
                             width=max(1, ctx.px(1.5)))  # fmt: skip
        if n % 2 == 0:
            label = ("学校", "班级", "姓名", "得分")[n // 2]
            ctx.print_text(sheet, x + (w * unit - ctx.width(label, 26)) / 2, top + 38, label, 26)
        x += w * unit


def draw_score_box(ctx: Ctx, sheet: Sheet, x: float, top: float) -> None:
    sheet.draw.rectangle(
        to_pixels((x, top, x + 150, top + 50), ctx.scale), outline=PRINT_COLOUR, width=max(1, ctx.px(1.5))
    )
    sheet.draw.line(to_pixels((x + 65, top, x + 65, top + 50), ctx.scale), fill=PRINT_COLOUR, width=max(1, ctx.px(1.5)))
    ctx.print_text(sheet, x + 8, top + 35, "得分", 24)


def draw_score_table(ctx: Ctx, sheet: Sheet, top: float, sections: int) -> None:
    """题号 | 一 | 二 | … | 总分, and an empty 得分 row."""
    d = ctx.design
    heads = ["题号", *CN_NUMERALS[:sections], "总分"]
    each, height = min(140, (d.right_edge - d.left) / len(heads)), 44
    x0 = (d.left + d.right_edge - each * len(heads)) / 2
    for row, first in enumerate(("题号", "得分")):
        for col, head in enumerate(heads):
            box = (x0 + col * each, top + row * height, x0 + (col + 1) * each, top + (row + 1) * height)
            sheet.draw.rectangle(to_pixels(box, ctx.scale), outline=PRINT_COLOUR, width=max(1, ctx.px(1.5)))
            text = head if row == 0 else (first if col == 0 else "")
            ctx.print_text(sheet, box[0] + (each - ctx.width(text, 24)) / 2, box[1] + 31, text, 24)


def draw_sealing_strip(ctx: Ctx, sheet: Sheet, first_page: bool) -> None:
    """The binding margin: a dashed line, and on the first page the pupil's details, sideways."""
    x = 150
    for y in range(60, UNITS[1] - 60, 24):
        sheet.draw.line(to_pixels((x, y, x, y + 12), ctx.scale), fill=PRINT_COLOUR, width=max(1, ctx.px(1.5)))
    side = "密　　封　　线　　内　　不　　要　　答　　题"
    texts = [(side, 168, 22)]
    if first_page:
        texts.append(("学校：______________   班级：__________   姓名：__________   考号：______________", 100, 26))
    for text, centre, size in texts:
        strip = Image.new("L", (ctx.px(ctx.width(text, size) + 10), ctx.px(size * 1.5)), 0)
        font_path = font_for("学", ctx.chain())
        ImageDraw.Draw(strip).text(
            (0, ctx.px(size * 1.1)), text, font=cached_font(font_path, ctx.px(size)), fill=255, anchor="ls"
        )
        strip = strip.rotate(90, expand=True)
        where = (ctx.px(centre) - strip.width // 2, (sheet.paper.height - strip.height) // 2)
        sheet.paper.paste(Image.new("RGB", strip.size, PRINT_COLOUR), where, strip)


def draw_footer(ctx: Ctx, sheet: Sheet, style: str, pages: int) -> None:
    n = sheet.number
    text = {"page_of": f"第{n}页（共{pages}页）", "dash": f"- {n} -", "exam": f"数学试卷  第{n}页  共{pages}页"}[style]
    d = ctx.design
    ctx.print_text(sheet, (d.left + d.right_edge - ctx.width(text, 22)) / 2, FOOTER_BASELINE, text, 22)


def heading_text(section: str, items: list[Item], with_points: bool) -> str:
    if not with_points:
        return section
    points = [i.spec.points for i in items]
    if len(set(points)) == 1:
        return f"{section}（每题{points[0]:g}分，共{sum(points):g}分）"
    return f"{section}（共{sum(points):g}分）"


@dataclass
class Block:
    """A unit of the page: a heading, a question, or a row of calculations."""

    kind: str  # heading, calc_row, choice, blanks, fill, word
    items: list[Item] = field(default_factory=list)
    text: str = ""

    def height(self, ctx: Ctx) -> float:
        d = ctx.design
        if self.kind == "heading":
            return d.line * 1.15
        if self.kind == "calc_row":
            return d.row
        lines = line_count(layout_question(ctx, self.items[0]))
        if self.kind == "choice":
            return (lines + option_lines(ctx, self.items[0].spec)) * d.line + d.gap
        if self.kind == "word":
            return lines * d.line + WORKING_LINES * d.line * 1.05 + d.line + d.gap
        return lines * d.line + d.gap

    def draw(self, ctx: Ctx, sheet: Sheet, top: float, placements: Placements) -> None:
        draw = {"heading": draw_heading, "calc_row": draw_calc_row, "choice": draw_choice,
                "word": draw_word_problem}.get(self.kind, draw_fill)  # fmt: skip
        draw(ctx, sheet, top, self, placements)


def draw_heading(ctx: Ctx, sheet: Sheet, top: float, block: Block, placements: Placements) -> None:
    d = ctx.design
    ctx.print_text(
        sheet, d.left - 10, top + d.line * 0.8, d.heading_mark + block.text, d.heading_size, bold=d.heading_bold
    )


def calc_columns(ctx: Ctx) -> list[tuple[float, float]]:
    d = ctx.design
    if d.calc_columns == 1:
        return [(d.left, d.right_edge)]
    middle = d.left + (d.right_edge - d.left) / 2 + 30
    return [(d.left, middle - 30), (middle, d.right_edge)]


def draw_calc_row(ctx: Ctx, sheet: Sheet, top: float, block: Block, placements: Placements) -> None:
    """One or two calculations on a printed line, each answered right after its '='."""
    baseline = top + ctx.design.row * 0.66
    for (x, x_end), item in zip(calc_columns(ctx), block.items, strict=False):
        x = ctx.print_text(sheet, x, baseline, item.label, ctx.design.print_size)
        x = ctx.print_text(
            sheet, x + ctx.design.print_size * 0.35, baseline, printed_text(ctx, item.spec), ctx.design.print_size
        )
        region = band(top + 4, ctx.design.row - 8, x + 2, x_end - 10)
        final, crossed = item.attempt.written[0], item.attempt.crossed_out
        ink = write_with_cross_out(ctx, sheet, final, crossed, x + ctx.rng.uniform(6, 18), baseline, x_end - 12)
        placements[item.qid] = Placement(sheet.number, to_pixels(region, ctx.scale), ink=ink)


def option_lines(ctx: Ctx, spec: Spec) -> int:
    return 1 if option_tab(ctx, spec) * 4 <= ctx.design.right_edge - text_start(ctx, ctx.design.left, "（10）") else 2


def option_tab(ctx: Ctx, spec: Spec) -> float:
    widest = max(ctx.width(f"{letter}.{option}", ctx.design.print_size) for letter, option in spec.options)
    return max(widest + 50, (ctx.design.right_edge - ctx.design.left) / 4.6)


def draw_choice(ctx: Ctx, sheet: Sheet, top: float, block: Block, placements: Placements) -> None:
    """The question with （   ）, the letter written inside, and the options printed under it."""
    item, d = block.items[0], ctx.design
    placed = layout_question(ctx, item)
    draw_label(ctx, sheet, item, top)
    boxes = draw_wrapped(ctx, sheet, placed, top)
    lines, per_line, tab = line_count(placed), 4 // option_lines(ctx, item.spec), option_tab(ctx, item.spec)
    start = text_start(ctx, d.left, item.label)
    for n, (letter, option) in enumerate(item.spec.options):
        baseline = top + (lines + n // per_line) * d.line + d.line * 0.72
        ctx.print_text(sheet, start + (n % per_line) * tab, baseline, f"{letter}.{option}", d.print_size)
    box = boxes[0]
    ink = None
    if item.attempt.written[0]:
        written = write_by_hand(item.attempt.written[0], ctx.hand, ctx.hand_px(), ctx.rng, ctx.px(box[2] - box[0]))
        width = (written.bbox[2] - written.bbox[0]) / ctx.scale
        x = (box[0] + box[2] - width) / 2 + ctx.rng.uniform(-6, 6) - (written.bbox[0] - written.origin[0]) / ctx.scale
        ink = place_hand(ctx, sheet, written, x, box[1] + d.line * 0.72 + ctx.rng.uniform(-2, 3))
    placements[item.qid] = Placement(sheet.number, to_pixels(box, ctx.scale), ink=ink)


def draw_fill(ctx: Ctx, sheet: Sheet, top: float, block: Block, placements: Placements) -> None:
    """A question with one or two blanks, each filled in by hand where it is printed."""
    item, d = block.items[0], ctx.design
    draw_label(ctx, sheet, item, top)
    boxes = draw_wrapped(ctx, sheet, layout_question(ctx, item), top)
    inks = []
    for index, text in enumerate(item.attempt.written):
        box = boxes[index]
        if text:
            written = write_by_hand(text, ctx.hand, ctx.hand_px(), ctx.rng, ctx.px(box[2] - box[0] - 4))
            slack = (box[2] - box[0]) - (written.bbox[2] - written.bbox[0]) / ctx.scale
            x = (
                box[0]
                + ctx.rng.uniform(0.15, 0.6) * max(0.0, slack)
                - (written.bbox[0] - written.origin[0]) / ctx.scale
            )
            inks.append(place_hand(ctx, sheet, written, x, box[1] + d.line * 0.72 + ctx.rng.uniform(-3, 2)))
    regions = [to_pixels(boxes[i], ctx.scale) for i in sorted(boxes)]
    union = (
        min(r[0] for r in regions),
        min(r[1] for r in regions),
        max(r[2] for r in regions),
        max(r[3] for r in regions),
    )
    ink = union_box(inks)
    placements[item.qid] = Placement(sheet.number, union, regions if len(regions) > 1 else [], ink)


def union_box(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def draw_word_problem(ctx: Ctx, sheet: Sheet, top: float, block: Block, placements: Placements) -> None:
    """The prompt, the pupil's working under it, and the final answer after the printed 答：."""
    item, d = block.items[0], ctx.design
    placed = layout_question(ctx, item)
    draw_label(ctx, sheet, item, top)
    draw_wrapped(ctx, sheet, placed, top)
    start = text_start(ctx, d.left, item.label)
    work_top = top + line_count(placed) * d.line
    for n, line in enumerate(item.attempt.working):
        baseline = work_top + (n + 0.75) * d.line * 1.05
        write_answer(ctx, sheet, line, start + ctx.rng.uniform(0, 30), baseline, d.right_edge - start - 40)
    answer_top = work_top + WORKING_LINES * d.line * 1.05
    baseline = answer_top + d.line * 0.72
    x = ctx.print_text(sheet, start, baseline, "答：", d.print_size)
    if d.answer_rule:
        rule(ctx, sheet, x + 4, d.right_edge - 60, baseline + 6)
    region = band(answer_top, d.line + d.gap * 0.8, x + 2, d.right_edge)  # the gap under it: descenders
    final, crossed = item.attempt.written[0], item.attempt.crossed_out
    ink = write_with_cross_out(ctx, sheet, final, crossed, x + ctx.rng.uniform(8, 24), baseline, d.right_edge - 20)
    placements[item.qid] = Placement(sheet.number, to_pixels(region, ctx.scale), ink=ink)


# ---------------------------------------------------------------------------------------------
# The paper


@dataclass(frozen=True)
class Truth:
    question_id: str
    kind: str  # calc_row, choice, blanks, fill, word
    written: str | list[str]  # what the pupil finally wrote ("" blank); per blank for blanks
    correct: bool
    score: float
    points: float
    crossed_out: str | None
    page: int  # from 1
    region: tuple[int, int, int, int]  # where the answer goes, in the template page's pixels
    blank_regions: list[tuple[int, int, int, int]]  # blanks: each blank's region
    ink: tuple[int, int, int, int] | None  # where the final answer's ink is (before the page is degraded)
    variant: str
    design: str
    print_font: str
    hand_font: str
    has_prompts: bool
    grade: int


@dataclass
class SchoolPaper:
    seed: int
    grade: int
    title: str
    design: str
    variant: str
    dpi: int
    print_font: str
    hand_font: str
    has_prompts: bool
    pages: list[bytes]  # as uploaded: JPEG (WebP for the webp variant)
    template_pages: list[bytes]  # the same pages unanswered, as a clean scan (PNG)
    answer_key: dict[str, object]
    truth: list[Truth]
    strokes_moved: bool = False  # the pupil's every stroke shifted and turned on its own (handright's way)


def make_items(ctx: Ctx, sections: dict[str, list[Spec]], restart: bool) -> list[tuple[str, list[Item]]]:
    """Numbered questions under their section names, in the design's order."""
    out, n = [], 0
    for order, name in enumerate(s for s in ctx.design.order if sections.get(s)):
        names = SECTION_NAMES[name] + (("解答题",) if name == "word" and ctx.grade >= 7 else ())
        title = f"{CN_NUMERALS[order]}、{ctx.rng.choice(names)}"
        items = []
        for i, spec in enumerate(sections[name], start=1):
            n += 1
            number = i if restart else n
            qid = f"{order + 1}.{i}" if restart else str(n)
            items.append(Item(spec, qid, number_label(ctx.numbering, number), title, decide_attempt(spec, ctx.rng)))
        out.append((title, items))
    return out


def make_blocks(ctx: Ctx, numbered: list[tuple[str, list[Item]]], with_points: bool) -> list[Block]:
    blocks = []
    for title, items in numbered:
        blocks.append(Block("heading", items, heading_text(title, items, with_points)))
        if items[0].spec.kind == "calc_row":
            per = ctx.design.calc_columns
            blocks += [Block("calc_row", items[i : i + per]) for i in range(0, len(items), per)]
        else:
            blocks += [Block(item.spec.kind, [item]) for item in items]
    return blocks


def paginate(ctx: Ctx, blocks: list[Block], first_top: float) -> list[tuple[int, float]]:
    """Each block's page (from 1) and top; a heading never ends a page."""
    where, page, y = [], 1, first_top
    for n, block in enumerate(blocks):
        need = block.height(ctx) + (blocks[n + 1].height(ctx) if block.kind == "heading" and n + 1 < len(blocks) else 0)
        if y + need > CONTENT_BOTTOM:
            page, y = page + 1, ctx.design.top + 20
        where.append((page, y))
        y += block.height(ctx)
    return where


def fit_to_pages(ctx: Ctx, sections: dict[str, list[Spec]], first_top: float, restart: bool,
                 with_points: bool) -> tuple[list[Block], list[tuple[int, float]]]:  # fmt: skip
    """Numbered blocks laid out on at most MAX_PAGES pages, dropping questions from the largest
    sections until they fit."""
    state = ctx.rng.getstate()
    while True:
        ctx.rng.setstate(state)  # the same attempts and section names whatever is dropped
        blocks = make_blocks(ctx, make_items(ctx, sections, restart), with_points)
        where = paginate(ctx, blocks, first_top)
        if where[-1][0] <= MAX_PAGES:
            return blocks, where
        largest = max(sections, key=lambda s: len(sections[s]) / (2 if s == "calc" else 1))
        sections[largest] = sections[largest][: -ctx.design.calc_columns if largest == "calc" else -1]


def choose_hand(rng: random.Random, variant: str) -> HandStyle:
    latin = [f for f in HAND_LATIN if Path(f).exists() and Path(f).stem not in UNUSED_HAND_FONTS]
    cjk = [f for f in HAND_CJK if Path(f).exists()] or list(FALLBACK_FONTS)
    cjk_font = rng.choice(cjk)
    latin_font = cjk_font if rng.random() < 0.15 or not latin else rng.choice(latin)
    pen = "pencil" if variant == "pencil" else rng.choice(["blue", "blue", "black", "pencil"])
    return HandStyle(latin_font, cjk_font, pen, rng.uniform(36, 46), rng.uniform(-0.12, 0.22), rng.choice([0, 0, 1]))


def perturbed(hand: HandStyle, key: str) -> HandStyle:
    """Some pupils' strokes moved one by one, decided by a stream of its own (`key`): the paper's
    stream is left as it was."""
    rng = random.Random(key)
    if rng.random() >= PERTURBED_SHARE:
        return hand
    return dataclasses.replace(
        hand, shift=rng.uniform(0.02, 0.05), turn=rng.uniform(0.03, 0.09), strokes_seed=rng.getrandbits(32)
    )


def choose_design(rng: random.Random) -> Design:
    d = rng.choice(DESIGNS)
    size = d.print_size + rng.randint(-1, 2)
    return dataclasses.replace(d, print_size=size, line=d.line + rng.randint(-3, 6), row=d.row + rng.randint(-4, 8))


def make_title(grade: int, rng: random.Random) -> str:
    year = rng.randint(2021, 2025)
    term = rng.choice(["第一学期", "第二学期"])
    exam = rng.choice(["期中测试卷", "期末测试卷", "第三单元检测卷", "月考试卷"])
    return f"{year}—{year + 1}学年{term}{CN_NUMERALS[grade - 1]}年级数学{exam}"


def draw_pages(ctx: Ctx, blocks: list[Block], where: list[tuple[int, float]], title: str, sections: int,
               score_table: bool, footer: str) -> tuple[list[Sheet], Placements]:  # fmt: skip
    size = (ctx.px(UNITS[0]), ctx.px(UNITS[1]))
    count = where[-1][0]
    sheets = [
        Sheet(Image.new("RGB", size, PAPER_COLOUR), Image.new("RGBA", size, (0, 0, 0, 0)), n + 1) for n in range(count)
    ]
    draw_title_block(ctx, sheets[0], title)
    if score_table:
        draw_score_table(ctx, sheets[0], questions_top(ctx, False), sections)
    placements: Placements = {}
    for block, (page, top) in zip(blocks, where, strict=True):
        block.draw(ctx, sheets[page - 1], top, placements)
    for sheet in sheets:
        draw_footer(ctx, sheet, footer, count)
        if ctx.design.title_block == "sealed":
            draw_sealing_strip(ctx, sheet, sheet.number == 1)
    return sheets, placements


def questions_top(ctx: Ctx, score_table: bool) -> float:
    """Where the first page's questions start: below the title block and the score table."""
    tops = {"lines": ctx.design.top + 160, "boxes": ctx.design.top + 156, "sealed": ctx.design.top + 150,
            "left": ctx.design.top + 205}  # fmt: skip
    return tops[ctx.design.title_block] + (SCORE_TABLE_HEIGHT if score_table else 0)


def encode_page(page: Image.Image, variant: str, rng: random.Random) -> bytes:
    """The answered page as uploaded: bench.handwriting's degradations, or a scan sent as WebP."""
    if variant != "webp":
        return _degrade(page, variant, rng)
    scanned = Image.open(io.BytesIO(_degrade(page, "scan", rng)))
    out = io.BytesIO()
    scanned.save(out, "WEBP", quality=rng.randint(70, 90), method=0)
    return out.getvalue()


def encode_template(page: Image.Image) -> bytes:
    """The blank page as a clean greyscale scan."""
    out = io.BytesIO()
    page.convert("L").filter(ImageFilter.BoxBlur(0.5)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def key_entry(ctx: Ctx, item: Item, with_prompt: bool) -> dict[str, object]:
    spec = item.spec
    entry: dict[str, object] = {"id": item.qid, "type": spec.qtype, "section": item.section}
    if with_prompt:
        entry["prompt"] = key_prompt(ctx, spec)
    if spec.kind == "blanks":
        each = spec.points / len(spec.answers)
        entry["blanks"] = [
            {"answer": a, "points": each, **({"accepted": list(acc)} if acc else {})}
            for a, acc in zip(spec.answers, spec.accepted, strict=True)
        ]
    else:
        entry["answer"] = spec.answers[0]
        if spec.accepted and spec.accepted[0]:
            entry["accepted"] = list(spec.accepted[0])
    if spec.options:
        entry["options"] = dict(spec.options)
    if spec.kind == "word":
        entry["notes"] = "列式计算，答案和单位都正确得满分。"
    entry["points"] = spec.points
    entry["knowledge_points"] = list(spec.knowledge_points)
    return entry


def make_truth(item: Item, placement: Placement, paper: dict[str, object]) -> Truth:
    a = item.attempt
    written: str | list[str] = list(a.written) if item.spec.kind == "blanks" else a.written[0]
    return Truth(
        item.qid, item.spec.kind, written, a.correct, a.score, item.spec.points, a.crossed_out, placement.page,
        placement.region, placement.blank_regions, placement.ink, **paper,  # type: ignore[arg-type]
    )  # fmt: skip


def make_school_paper(seed: int, student: int = 0) -> SchoolPaper:
    """A school mathematics paper, its blank template, answer key and truth; the same for a seed.
    Another `student` writes the same exam (print, key and template the same): their own hand,
    answers and image variant."""
    rng = random.Random(seed)
    grade, design, variant = rng.randint(1, 9), choose_design(rng), rng.choice(VARIANTS)
    scale = HIGH_DPI_SCALE if rng.random() < HIGH_DPI_SHARE else 1
    ctx = Ctx(grade, design, rng.choice(print_fonts()), scale, rng.choice(design.numbering),
              rng.choice(["paren", "paren", "line"]), rng.random() < 0.3, choose_hand(rng, variant), rng)  # fmt: skip
    ctx = dataclasses.replace(ctx, hand=perturbed(ctx.hand, f"{seed}/strokes"))
    title, has_prompts, score_table = make_title(grade, rng), rng.random() < PROMPTS_SHARE, rng.random() < 0.4
    restart, with_points, footer = (
        ctx.numbering in ("paren", "circled"),
        rng.random() < 0.6,
        rng.choice(["page_of", "dash", "exam"]),
    )
    sections = pick_questions(grade, rng, design.calc_columns)
    blocks, where = fit_to_pages(ctx, sections, questions_top(ctx, score_table), restart, with_points)
    if student:  # the same print, another pupil: the drawing's rng only writes
        rng = random.Random(f"{seed}/student/{student}")
        variant = rng.choice(VARIANTS)
        hand = dataclasses.replace(choose_hand(rng, variant), size=ctx.hand.size)  # the blanks are sized for it
        hand = perturbed(hand, f"{seed}/student/{student}/strokes")
        ctx = dataclasses.replace(ctx, hand=hand, rng=rng)
        for block in blocks:
            block.items = [dataclasses.replace(item, attempt=decide_attempt(item.spec, rng)) for item in block.items]
    items = [item for block in blocks if block.kind != "heading" for item in block.items]
    section_count = sum(1 for b in blocks if b.kind == "heading")
    sheets, placements = draw_pages(ctx, blocks, where, title, section_count, score_table, footer)
    pages = [
        encode_page(Image.alpha_composite(s.paper.convert("RGBA"), s.ink).convert("RGB"), variant, rng) for s in sheets
    ]
    paper_facts = {"variant": variant, "design": design.name, "print_font": Path(ctx.font).stem,
                   "hand_font": ctx.hand.name, "has_prompts": has_prompts, "grade": grade}  # fmt: skip
    return SchoolPaper(
        seed, grade, title, design.name, variant, 150 * scale, Path(ctx.font).stem, ctx.hand.name, has_prompts, pages,
        [encode_template(s.paper) for s in sheets],
        {"questions": [key_entry(ctx, item, has_prompts) for item in items]},
        [make_truth(item, placements[item.qid], paper_facts) for item in items], bool(ctx.hand.shift),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Writing samples to look at


def image_suffix(data: bytes) -> str:
    return "webp" if data[:4] == b"RIFF" else "png" if data[:4] == b"\x89PNG" else "jpg"


def draw_regions(template: bytes, truths: list[Truth], page: int) -> Image.Image:
    """The template page with each answer region (red) and the final answer's ink (blue)."""
    image = Image.open(io.BytesIO(template)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for t in (t for t in truths if t.page == page):
        draw.rectangle(t.region, outline=(220, 0, 0), width=2)
        for blank in t.blank_regions:
            draw.rectangle(blank, outline=(0, 160, 0), width=1)
        draw.text((t.region[0], t.region[1]), t.question_id, fill=(220, 0, 0))
        if t.ink:
            draw.rectangle(t.ink, outline=(0, 90, 255), width=1)
    return image


def ink_outside(truth: Truth, tolerance: int) -> bool:
    if truth.ink is None:
        return False
    r, i = truth.region, truth.ink
    return i[0] < r[0] - tolerance or i[1] < r[1] - tolerance or i[2] > r[2] + tolerance or i[3] > r[3] + tolerance


def write_sample(paper: SchoolPaper, out: Path, regions: bool) -> None:
    stem = f"paper-{paper.seed}"
    for n, (page, template) in enumerate(zip(paper.pages, paper.template_pages, strict=True), start=1):
        (out / f"{stem}-p{n}.{image_suffix(page)}").write_bytes(page)
        (out / f"{stem}-template-p{n}.png").write_bytes(template)
        if regions:
            draw_regions(template, paper.truth, n).save(out / f"{stem}-regions-p{n}.png")
    (out / f"{stem}-key.json").write_text(json.dumps(paper.answer_key, ensure_ascii=False, indent=2), encoding="utf-8")
    truth = [dataclasses.asdict(t) for t in paper.truth]
    (out / f"{stem}-truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=2), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/school"))
    parser.add_argument("--regions", action="store_true", help="also the templates with the truth regions drawn")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seed, args.seed + args.count):
        started = time.perf_counter()
        paper = make_school_paper(seed)
        took = time.perf_counter() - started
        write_sample(paper, args.out, args.regions)
        stray = [t.question_id for t in paper.truth if ink_outside(t, 6 * paper.dpi // 150)]
        print(
            f"seed {seed}: grade {paper.grade}, {paper.design}, {paper.variant}, {paper.dpi} dpi, "
            f"{len(paper.pages)} page(s), {len(paper.truth)} questions, print {paper.print_font}, "
            f"hand {paper.hand_font}, prompts {paper.has_prompts}, {took:.2f} s"
            + (f"; ink outside its region: {', '.join(stray)}" if stray else "")
        )


if __name__ == "__main__":
    main()
