"""Sample papers for the demo: printed questions, handwriting-style answers, some of them wrong.

Fonts come from Debian packages (fonts-wqy-microhei for print, fonts-arphic-ukai and
fonts-humor-sans for handwriting); DejaVu is the fallback when one is missing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont

PRINT_FONTS = ["/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
HAND_ZH_FONTS = ["/usr/share/fonts/truetype/arphic/ukai.ttc", *PRINT_FONTS]
HAND_EN_FONTS = [
    "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Oblique.ttf",
]
A4_150_DPI = (1240, 1754)


def _font(candidates: list[str], size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in candidates:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


@dataclass(frozen=True)
class SampleQuestion:
    id: str
    text: str
    answer: str
    points: float
    knowledge_point: str
    accepted: tuple[str, ...] = ()


MATH_QUESTIONS = [
    SampleQuestion("1", "7 × 8 =", "56", 2, "math.g2.times-tables"),
    SampleQuestion("2", "把 3/4 写成小数：", "0.75", 2, "math.g3.fractions-intro", ("3/4",)),
    SampleQuestion("3", "长方形长 8 厘米，宽 4 厘米，周长是多少？", "24厘米", 3, "math.g3.perimeter"),
    SampleQuestion("4", "23 ÷ 4 =", "5……3", 3, "math.g3.division-remainder", ("5余3",)),
    SampleQuestion("5", "2 千克 = ____ 克", "2000", 2, "math.g3.mass-units"),
    SampleQuestion("6", "125 × 4 =", "500", 3, "math.g3.multi-digit-multiplication"),
]
MATH_STUDENTS = {  # student ref -> answers that differ from the key
    "S01": {},
    "S02": {"1": "54", "3": "12厘米"},
    "S03": {"4": "5……2", "5": "200", "6": "400"},
    "S04": {"3": "32厘米"},
}
ENGLISH_QUESTIONS = [
    SampleQuestion("1", "She ____ (play) tennis every Sunday.", "plays", 2, "english.g5.present-tenses"),
    SampleQuestion("2", "Look! They ____ (read) in the library.", "are reading", 2, "english.g5.present-tenses"),
    SampleQuestion("3", "The plural of 'child' is ____.", "children", 2, "english.g7.plural-nouns"),
    SampleQuestion("4", "The opposite of 'big' is ____.", "small", 2, "english.g4.vocabulary"),
]
ENGLISH_STUDENTS = {"E01": {"3": "childs"}, "E02": {}, "E03": {"1": "play", "2": "reading"}}


def answer_key(questions: list[SampleQuestion]) -> dict[str, Any]:
    return {
        "questions": [
            {
                "id": q.id,
                "prompt": q.text,
                "answer": q.answer,
                "points": q.points,
                "knowledge_points": [q.knowledge_point],
                "accepted": list(q.accepted),
            }
            for q in questions
        ]
    }


def render_page(
    title: str,
    student: str,
    questions: list[SampleQuestion],
    answers: dict[str, str],
    handwriting: list[str],
    seed: int,
) -> Image.Image:
    """One A4 page at 150 dpi: printed header and questions, handwritten answers in blue ink."""
    rng = random.Random(seed)
    page = Image.new("RGB", A4_150_DPI, (250, 249, 245))
    draw = ImageDraw.Draw(page)
    draw.text((90, 70), title, font=_font(PRINT_FONTS, 44), fill=(20, 20, 20))
    draw.text((90, 140), f"学号 / Student: {student}", font=_font(PRINT_FONTS, 30), fill=(40, 40, 40))
    printed, hand = _font(PRINT_FONTS, 34), _font(handwriting, 46)
    y = 240
    for question in questions:
        draw.text((90, y), f"{question.id}. {question.text}", font=printed, fill=(15, 15, 15))
        written = answers.get(question.id, question.answer)
        layer = Image.new("RGBA", (900, 90), (0, 0, 0, 0))
        ImageDraw.Draw(layer).text((10, 10), written, font=hand, fill=(25, 45, 150, 255))
        layer = layer.rotate(rng.uniform(-3, 3), resample=Image.Resampling.BICUBIC)
        page.paste(layer, (130 + rng.randint(0, 40), y + 50), layer)
        y += 230
    return page.filter(ImageFilter.GaussianBlur(0.6))


def write_samples(folder: Path) -> dict[str, Any]:
    """Write the demo's papers as JPEG pages; returns the two exams and each student's page files.

    One math paper is saved as a phone photo: its pixels lie sideways and its EXIF says so,
    as a phone camera does, and markq must turn it upright.
    """
    folder.mkdir(parents=True, exist_ok=True)
    math_pages: dict[str, list[Path]] = {}
    for n, (student, wrong) in enumerate(MATH_STUDENTS.items()):
        paths = []
        for part, questions in enumerate((MATH_QUESTIONS[:3], MATH_QUESTIONS[3:]), start=1):
            image = render_page(
                "三年级数学单元测试 (第%d页)" % part, student, questions, wrong, HAND_ZH_FONTS, seed=n * 10 + part
            )
            path = folder / f"math-{student}-page{part}.jpg"
            if student == "S04" and part == 1:
                exif = Image.Exif()
                exif[0x0112] = 6  # display needs a 90 degree clockwise turn
                image.rotate(90, expand=True).save(path, "JPEG", quality=90, exif=exif)
            else:
                image.save(path, "JPEG", quality=90)
            paths.append(path)
        math_pages[student] = paths
    english_pages = {}
    for n, (student, wrong) in enumerate(ENGLISH_STUDENTS.items()):
        path = folder / f"english-{student}.jpg"
        render_page("Grade 5 English quiz", student, ENGLISH_QUESTIONS, wrong, HAND_EN_FONTS, seed=100 + n).save(
            path, "JPEG", quality=90
        )
        english_pages[student] = [path]
    return {
        "exams": [
            {
                "exam": {
                    "title": "三年级数学单元测试",
                    "subject": "math",
                    "grade": 3,
                    "language": "zh",
                    "answer_key": answer_key(MATH_QUESTIONS),
                    "rubric": "计算题只看结果；应用题单位缺失扣1分。",
                },
                "class_label": "3(2)班",
                "papers": math_pages,
            },
            {
                "exam": {
                    "title": "Grade 5 English quiz",
                    "subject": "english",
                    "grade": 5,
                    "language": "en",
                    "answer_key": answer_key(ENGLISH_QUESTIONS),
                    "rubric": "Spelling must be exact.",
                },
                "class_label": "5B",
                "papers": english_pages,
            },
        ]
    }
