"""Practice for weak points without a model: short sets of new questions from templates per
knowledge point, with generated numbers and their answers. Each template also writes the sum its
answer must equal (the question's own arithmetic, as sympy reads it); the answer is kept only when
the equivalence check that marks students' answers finds it equal to that sum, so a template that
computed a wrong answer loses the question rather than printing it.

A set is the same for the same student, point and day (seeded), so a reprinted sheet matches.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import sympy

from shared.grading.equivalence import equivalent


def _number_part(answer: str) -> str:
    """The number an answer states: without its unit, an `x=` in front or a remainder after."""
    return re.sub(r"[^\d./\-]", "", answer.split("=")[-1].split("……")[0])


@dataclass(frozen=True)
class PracticeQuestion:
    text_zh: str
    text_en: str
    answer: str
    check: str  # an arithmetic expression (sympy) whose value the answer must equal

    def confirmed(self) -> bool:
        """The answer against the value of its sum, by the equivalence check."""
        expected = sympy.sympify(self.check)
        if not expected.is_number:
            return False
        shown = str(expected) if expected.is_Rational else str(float(expected))
        return equivalent(_number_part(self.answer), shown) is True

    def text(self, language: str) -> str:
        return self.text_zh if language == "zh" else self.text_en


Template = Callable[[random.Random], "PracticeQuestion"]


def _arithmetic(shown: str, check: str, answer: object) -> PracticeQuestion:
    return PracticeQuestion(shown, shown.replace("−", "-"), str(answer), check)


def _times(rng: random.Random) -> PracticeQuestion:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return _arithmetic(f"{a} × {b} =", f"{a}*{b}", a * b)


def _table_division(rng: random.Random) -> PracticeQuestion:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return _arithmetic(f"{a * b} ÷ {a} =", f"{a * b}/{a}", b)


def _add_or_subtract(a: int, b: int, rng: random.Random) -> PracticeQuestion:
    if rng.random() < 0.5 or a < b:
        return _arithmetic(f"{a} + {b} =", f"{a}+{b}", a + b)
    return _arithmetic(f"{a} − {b} =", f"{a}-{b}", a - b)


def _add_sub_100(rng: random.Random) -> PracticeQuestion:
    return _add_or_subtract(rng.randint(12, 88), rng.randint(11, 49), rng)


def _add_sub_20(rng: random.Random) -> PracticeQuestion:
    return _add_or_subtract(rng.randint(6, 12), rng.randint(3, 8), rng)


def _add_sub_10(rng: random.Random) -> PracticeQuestion:
    a = rng.randint(1, 9)
    return _add_or_subtract(a, rng.randint(1, 10 - a), rng)


def _add_sub_10000(rng: random.Random) -> PracticeQuestion:
    return _add_or_subtract(rng.randint(1200, 8800), rng.randint(150, 999), rng)


def _remainder(rng: random.Random) -> PracticeQuestion:
    divisor = rng.randint(3, 9)
    quotient, remainder = rng.randint(2, 9), rng.randint(1, divisor - 1)
    n = divisor * quotient + remainder
    # the check: the quotient the answer states, as the floor of the question's division
    return _arithmetic(f"{n} ÷ {divisor} =", f"floor({n}/{divisor})", f"{quotient}……{remainder}")


def _multi_digit(rng: random.Random) -> PracticeQuestion:
    a, b = rng.randint(12, 999), rng.randint(2, 9)
    return _arithmetic(f"{a} × {b} =", f"{a}*{b}", a * b)


def _perimeter(rng: random.Random) -> PracticeQuestion:
    length, width = rng.randint(5, 15), rng.randint(2, 9)
    return PracticeQuestion(
        f"长方形长 {length} 厘米，宽 {width} 厘米，周长是多少厘米？",
        f"A rectangle is {length} cm long and {width} cm wide. What is its perimeter in cm?",
        f"{2 * (length + width)}厘米",
        f"2*({length}+{width})",
    )


def _area(rng: random.Random) -> PracticeQuestion:
    length, width = rng.randint(4, 15), rng.randint(2, 9)
    return PracticeQuestion(
        f"长方形长 {length} 米，宽 {width} 米，面积是多少平方米？",
        f"A rectangle is {length} m long and {width} m wide. What is its area in square metres?",
        f"{length * width}平方米",
        f"{length}*{width}",
    )


def _conversion(amount: int, big: tuple[str, str], small: tuple[str, str], factor: int) -> PracticeQuestion:
    return PracticeQuestion(
        f"{amount} {big[0]} = ____ {small[0]}",
        f"{amount} {big[1]} = ____ {small[1]}",
        str(amount * factor),
        f"{amount}*{factor}",
    )


def _mass(rng: random.Random) -> PracticeQuestion:
    if rng.random() < 0.5:
        return _conversion(rng.randint(2, 9), ("千克", "kg"), ("克", "g"), 1000)
    return _conversion(rng.randint(2, 9), ("吨", "t"), ("千克", "kg"), 1000)


def _time_units(rng: random.Random) -> PracticeQuestion:
    if rng.random() < 0.5:
        return _conversion(rng.randint(2, 9), ("分", "min"), ("秒", "s"), 60)
    return _conversion(rng.randint(2, 9), ("时", "h"), ("分", "min"), 60)


def _units(rng: random.Random) -> PracticeQuestion:
    kind = rng.choice(["mass", "time", "length"])
    if kind == "length":
        return _conversion(rng.randint(2, 9), ("米", "m"), ("厘米", "cm"), 100)
    return _mass(rng) if kind == "mass" else _time_units(rng)


def _fraction_to_decimal(rng: random.Random) -> PracticeQuestion:
    numerator, denominator = rng.choice([(1, 2), (1, 4), (3, 4), (1, 5), (2, 5), (3, 5), (4, 5), (7, 10)])
    return PracticeQuestion(
        f"把 {numerator}/{denominator} 写成小数：",
        f"Write {numerator}/{denominator} as a decimal:",
        f"{numerator / denominator:g}",
        f"Rational({numerator},{denominator})",
    )


def _same_denominator(rng: random.Random) -> PracticeQuestion:
    denominator = rng.randint(5, 12)
    a = rng.randint(1, denominator - 2)
    b = rng.randint(1, denominator - 1 - a)
    total = Fraction(a + b, denominator)
    return _arithmetic(
        f"{a}/{denominator} + {b}/{denominator} =",
        f"Rational({a},{denominator})+Rational({b},{denominator})",
        f"{total.numerator}/{total.denominator}" if total.denominator != 1 else total.numerator,
    )


def _decimal_add_sub(rng: random.Random) -> PracticeQuestion:
    a, b = Fraction(rng.randint(11, 99), 10), Fraction(rng.randint(11, 99), 100)
    if rng.random() < 0.5:
        return _arithmetic(f"{float(a):g} + {float(b):g} =", f"{float(a):g}+{float(b):g}", f"{float(a + b):g}")
    big, small = max(a, b), min(a, b)
    return _arithmetic(
        f"{float(big):g} − {float(small):g} =", f"{float(big):g}-{float(small):g}", f"{float(big - small):g}"
    )


def _order_of_operations(rng: random.Random) -> PracticeQuestion:
    a, b, c = rng.randint(10, 60), rng.randint(2, 9), rng.randint(2, 9)
    return _arithmetic(f"{a} + {b} × {c} =", f"{a}+{b}*{c}", a + b * c)


def _linear_equation(rng: random.Random) -> PracticeQuestion:
    x, a, b = rng.randint(2, 12), rng.randint(2, 9), rng.randint(1, 30)
    total = a * x + b
    # the check: x solved from the equation as written
    return PracticeQuestion(
        f"解方程：{a}x + {b} = {total}", f"Solve: {a}x + {b} = {total}", f"x={x}", f"({total}-{b})/{a}"
    )


TEMPLATES: dict[str, Template] = {
    "math.g2.times-tables": _times,
    "math.g2.division-intro": _table_division,
    "math.g2.division-meaning": _table_division,
    "math.g2.add-sub-within-100": _add_sub_100,
    "math.g1.add-sub-within-20": _add_sub_20,
    "math.g1.add-sub-within-10": _add_sub_10,
    "math.g3.add-sub-within-10000": _add_sub_10000,
    "math.g3.division-remainder": _remainder,
    "math.g3.multi-digit-multiplication": _multi_digit,
    "math.g3.perimeter": _perimeter,
    "math.g3.area": _area,
    "math.g3.mass-units": _mass,
    "math.g2.mass-g-kg": _mass,
    "math.g3.seconds": _time_units,
    "math.g3.unit-conversion": _units,
    "math.g3.fractions-intro": _fraction_to_decimal,
    "math.g3.fraction-add-sub-same": _same_denominator,
    "math.g4.decimal-add-sub": _decimal_add_sub,
    "math.g4.order-of-operations": _order_of_operations,
    "math.g2.mixed-operations": _order_of_operations,
    "math.g5.simple-equations": _linear_equation,
    "math.g7.linear-equations-one": _linear_equation,
}


def practice_set(point_id: str, seed: str, count: int = 5) -> list[PracticeQuestion]:
    """`count` different questions for the point, each answer confirmed by the equivalence check;
    [] for a point without a template."""
    template = TEMPLATES.get(point_id)
    if template is None:
        return []
    rng = random.Random(int(hashlib.sha256(f"{point_id}|{seed}".encode()).hexdigest()[:16], 16))
    questions: dict[str, PracticeQuestion] = {}
    for _ in range(count * 10):
        question = template(rng)
        if question.text_en not in questions and question.confirmed():
            questions[question.text_en] = question
        if len(questions) == count:
            break
    return list(questions.values())


WEAKEST = 3  # points a student practises at once


def weak_point_practice(
    weak_points: list[dict[str, object]], seed: str, language: str, per_point: int = 5
) -> list[dict[str, object]]:
    """For the student's weakest points (most missed first, as the report ranks them) that have a
    template: a set each, in the exam's language, answers given apart. Points without a template
    are listed with no questions, so the sheet can say so."""
    sets = []
    for point in weak_points[:WEAKEST]:
        questions = practice_set(str(point["id"]), seed, per_point)
        sets.append(
            {
                "knowledge_point": point["id"],
                "name_zh": point["name_zh"],
                "name_en": point["name_en"],
                "questions": [{"question": q.text(language), "answer": q.answer} for q in questions],
            }
        )
    return sets
