"""Generated papers with known truth for the offline benchmark: printed questions (now and then
under a section heading), answers in handwriting-style fonts (Debian's fonts-arphic-ukai,
-gkai00mp, -klee, -humor-sans, -comic-neue, -dkg-handwriting, -femkeklaver, -breip), some right,
some wrong, some blank, a few written inline after the '=', on pages that are scanned, skewed,
shadowed, in pencil, or photographed by a phone.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from client.samples import PRINT_FONTS, _font

HAND_CJK = [
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
    "/usr/share/fonts/truetype/arphic-gkai00mp/gkai00mp.ttf",
    "/usr/share/fonts/truetype/klee/KleeOne-Regular.ttf",
]
HAND_LATIN = [
    "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",
    "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",
    "/usr/share/fonts/truetype/femkeklaver/femkeklaver.ttf",
    "/usr/share/fonts/truetype/breip/Breip.ttf",
]
HEADINGS_ZH = ["二、填空题（每空2分）", "三、计算题", "四、解决问题（共10分）", "五、应用题"]
HEADINGS_EN = ["Part B  Grammar (10 points)", "Section 2: Vocabulary", "III. Fill in the blanks"]
VARIANTS = ("scan", "skewed scan", "shadow", "phone photo", "pencil")
A4 = (1240, 1754)


@dataclass(frozen=True)
class Question:
    id: str
    prompt: str
    answer: str
    accepted: tuple[str, ...]
    wrong: tuple[str, ...]  # plausible wrong answers
    knowledge_point: str
    inline: bool = False  # may be answered on the question's own line, after '='


@dataclass(frozen=True)
class Written:
    question: Question
    text: str  # what the student wrote; "" for blank
    correct: bool
    inline: bool


@dataclass(frozen=True)
class Paper:
    subject: str
    language: str
    questions: list[Question]
    answers: list[Written]
    pages: list[bytes]
    variant: str
    font: str


def _math_questions(rng: random.Random) -> list[Question]:
    a, b = rng.randint(3, 9), rng.randint(3, 9)
    c, d = rng.randint(12, 99), rng.randint(12, 99)
    q, r, divisor = rng.randint(3, 12), 0, rng.randint(3, 9)
    r = rng.randint(1, divisor - 1)
    kg = rng.randint(2, 9)
    length, width = rng.randint(5, 15), rng.randint(2, 9)
    num, den = rng.choice([(1, 2), (3, 4), (1, 4), (2, 5), (3, 5), (7, 10)])
    x0, add = rng.randint(2, 20), rng.randint(2, 20)
    p1, p2 = rng.choice([(1, 2), (1, 3), (1, 4), (2, 3)]), rng.choice([(1, 6), (1, 4), (1, 8)])
    total = Fraction(*p1) + Fraction(*p2)
    per = 2 * (length + width)
    return [
        Question(
            "",
            f"{a} × {b} =",
            str(a * b),
            (),
            (str(a * b + rng.choice([-2, -1, 1, 2, a])), str(a + b)),
            "math.g2.times-tables",
            inline=True,
        ),
        Question(
            "",
            f"{c} + {d} =",
            str(c + d),
            (),
            (str(c + d + 10), str(c + d - 1), str(abs(c - d))),
            "math.g2.add-sub-within-100",
            inline=True,
        ),
        Question(
            "",
            f"{q * divisor + r} ÷ {divisor} =",
            f"{q}……{r}",
            (f"{q}余{r}",),
            (f"{q}……{r + 1 if r + 1 < divisor else r - 1}", f"{q + 1}……{r}"),
            "math.g3.division-remainder",
        ),
        Question("", f"{kg} 千克 = ____ 克", str(kg * 1000), (), (str(kg * 100), str(kg * 10)), "math.g3.mass-units"),
        Question(
            "",
            f"长方形长 {length} 厘米，宽 {width} 厘米，周长是多少？",
            f"{per}厘米",
            (),
            (f"{length * width}厘米", f"{length + width}厘米", str(per)),
            "math.g3.perimeter",
        ),
        Question(
            "",
            f"把 {num}/{den} 写成小数：",
            str(num / den),
            (f"{num}/{den}",),
            (f"{num}.{den}", str(round(den / 100 + num / 10, 2))),
            "math.g3.fractions-intro",
        ),
        Question(
            "",
            f"{p1[0]}/{p1[1]} + {p2[0]}/{p2[1]} =",
            f"{total.numerator}/{total.denominator}",
            (str(float(total)) if len(str(float(total))) < 6 else "",),
            (f"{p1[0] + p2[0]}/{p1[1] + p2[1]}",),
            "math.g5.fraction-add-sub",
            inline=True,
        ),
        Question(
            "",
            f"解方程：x + {add} = {x0 + add}",
            f"x={x0}",
            (str(x0),),
            (f"x={x0 + 2 * add}", f"x={x0 + 1}"),
            "math.g7.linear-equations-one",
        ),
    ]


ENGLISH = [
    ("She ____ (play) tennis every Sunday.", "plays", ("play", "playing"), "english.g5.present-tenses"),
    ("Look! They ____ (read) in the library.", "are reading", ("reading", "read"), "english.g5.present-tenses"),
    ("The plural of 'child' is ____.", "children", ("childs", "childrens"), "english.g7.plural-nouns"),
    ("The opposite of 'big' is ____.", "small", ("long", "tall"), "english.g4.vocabulary"),
    ("Yesterday we ____ (go) to the park.", "went", ("goed", "go"), "english.g6.past-tense"),
    ("There are three ____ (apple) on the table.", "apples", ("apple", "appls"), "english.g7.plural-nouns"),
    ("He is ____ (tall) than his brother.", "taller", ("tallest", "more tall"), "english.g8.comparatives"),
    ("I have ____ (finish) my homework.", "finished", ("finish", "finishing"), "english.g8.present-perfect"),
]


def _english_questions(rng: random.Random) -> list[Question]:
    chosen = rng.sample(ENGLISH, 6)
    return [Question("", prompt, answer, (), wrong, kp) for prompt, answer, wrong, kp in chosen]


def _answers(questions: list[Question], rng: random.Random) -> list[Written]:
    written = []
    for question in questions:
        roll = rng.random()
        inline = question.inline and rng.random() < 0.3
        if roll < 0.06:
            written.append(Written(question, "", False, False))
        elif roll < 0.66:
            forms = [question.answer, *[a for a in question.accepted if a]]
            text = question.answer if rng.random() < 0.8 else rng.choice(forms)
            written.append(Written(question, text, True, inline))
        else:
            written.append(Written(question, rng.choice(question.wrong), False, inline))
    return written


def _hand_font(path: str, cjk_fallback: str, text: str, size: int) -> object:
    font = path if text.isascii() or path in HAND_CJK else cjk_fallback
    return _font([font], size)


def render_pages(
    title: str, answers: list[Written], font: str, cjk_font: str, rng: random.Random, per_page: int = 4
) -> list[Image.Image]:
    pages = []
    for start in range(0, len(answers), per_page):
        page = Image.new("RGB", A4, (250, 249, 245))
        draw = ImageDraw.Draw(page)
        draw.text((90, 70), f"{title}（第{start // per_page + 1}页）", font=_font(PRINT_FONTS, 40), fill=(20, 20, 20))
        draw.text((90, 135), "姓名 / Name: ________", font=_font(PRINT_FONTS, 28), fill=(40, 40, 40))
        printed = _font(PRINT_FONTS, rng.choice([30, 32, 34]))
        y = 230 + rng.randint(-10, 20)
        ink = rng.choice([(25, 45, 150), (20, 20, 30), (70, 70, 80)])  # blue pen, black pen, pencil
        for position, written in enumerate(answers[start : start + per_page]):
            if position and rng.random() < 0.25:  # a section heading between two questions
                y += 70
                heading = rng.choice(HEADINGS_ZH if title.startswith("数学") else HEADINGS_EN)
                draw.text((90, y - 75), heading, font=_font(PRINT_FONTS, 32), fill=(15, 15, 15))
            question = written.question
            line = f"{question.id}. {question.prompt}"
            draw.text((90, y), line, font=printed, fill=(15, 15, 15))
            if written.text:
                size = rng.randint(40, 52)
                hand = _hand_font(font, cjk_font, written.text, size)
                layer = Image.new("RGBA", (700, 100), (0, 0, 0, 0))
                ImageDraw.Draw(layer).text((10, 10), written.text, font=hand, fill=(*ink, 255))
                layer = layer.rotate(rng.uniform(-4, 4), resample=Image.Resampling.BICUBIC)
                if written.inline:
                    x = 90 + round(draw.textlength(line, font=printed)) + rng.randint(10, 30)
                    page.paste(layer, (x, y - 28 + size // 4 + rng.randint(-6, 6)), layer)
                else:
                    page.paste(layer, (130 + rng.randint(0, 60), y + 45 + rng.randint(0, 20)), layer)
            y += rng.randint(220, 260)
        pages.append(page)
    return pages


def _degrade(page: Image.Image, variant: str, rng: random.Random) -> bytes:
    """The page as it reaches markq: scanned, skewed, shadowed, photographed, or in faint pencil."""
    out = io.BytesIO()
    if variant == "phone photo":
        desk = (rng.randint(90, 140), rng.randint(80, 110), rng.randint(60, 90))
        big = page.resize((2480, 3508), Image.Resampling.BICUBIC).rotate(
            rng.uniform(-3, 3), expand=True, fillcolor=desk
        )
        view = Image.new("RGB", (3024, 4032), desk)
        view.paste(big, ((3024 - big.width) // 2, (4032 - big.height) // 2))
        shadow = Image.linear_gradient("L").rotate(rng.choice([0, 90, 180, 270])).resize(view.size)
        view = Image.composite(view, Image.new("RGB", view.size, (0, 0, 0)), shadow.point(lambda v: 255 - v // 3))
        view = view.filter(ImageFilter.GaussianBlur(1.2))
        exif = Image.Exif()
        exif[0x0112] = 6  # stored sideways, as phones do
        view.rotate(90, expand=True).save(out, "JPEG", quality=85, exif=exif)
        return out.getvalue()
    if variant == "skewed scan":
        page = page.rotate(
            rng.uniform(-3, 3), expand=False, fillcolor=(250, 249, 245), resample=Image.Resampling.BICUBIC
        )
    if variant == "shadow":
        shadow = Image.linear_gradient("L").rotate(rng.choice([0, 90, 180, 270])).resize(page.size)
        page = Image.composite(page, Image.new("RGB", page.size, (0, 0, 0)), shadow.point(lambda v: 255 - v // 2))
    if variant == "pencil":
        page = ImageOps.autocontrast(page, cutoff=0).point(lambda v: 110 + v * 145 // 255)
    sigma = rng.uniform(8, 20)  # sensor and paper noise, from the paper's own seed: the same every run
    noise = Image.frombytes("L", page.size, rng.randbytes(page.width * page.height))
    noise = noise.point(lambda v: max(0, min(255, round(128 + (v - 128) * sigma / 74)))).convert("RGB")
    page = Image.blend(page, noise, 0.06).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9)))
    page.save(out, "JPEG", quality=rng.randint(75, 92))
    return out.getvalue()


def make_paper(seed: int) -> Paper:
    rng = random.Random(seed)
    fonts = [f for f in HAND_CJK + HAND_LATIN if Path(f).exists()]
    cjk = [f for f in HAND_CJK if Path(f).exists()] or fonts
    subject = "math" if rng.random() < 0.7 else "english"
    questions = _math_questions(rng) if subject == "math" else _english_questions(rng)
    questions = rng.sample(questions, rng.randint(5, len(questions)))
    questions = [
        Question(str(n), q.prompt, q.answer, q.accepted, q.wrong, q.knowledge_point, q.inline)
        for n, q in enumerate(questions, start=1)
    ]
    answers = _answers(questions, rng)
    font = rng.choice(fonts if subject == "math" else [f for f in fonts if f in HAND_LATIN] or fonts)
    variant = rng.choice(VARIANTS)
    title = "数学练习" if subject == "math" else "English quiz"
    pages = [_degrade(page, variant, rng) for page in render_pages(title, answers, font, rng.choice(cjk), rng)]
    return Paper(subject, "zh" if subject == "math" else "en", questions, answers, pages, variant, Path(font).stem)


def answer_key(paper: Paper) -> dict[str, object]:
    return {
        "questions": [
            {
                "id": q.id,
                "prompt": q.prompt,
                "answer": q.answer,
                "points": 2,
                "accepted": [a for a in q.accepted if a],
                "knowledge_points": [q.knowledge_point],
            }
            for q in paper.questions
        ]
    }


Factory = Callable[[int], Paper]
