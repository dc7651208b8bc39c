"""A deterministic check beside the model for mathematics: is the student's answer, as the model
read it, equivalent to the key's answer (or an accepted form)?

Numbers, fractions, decimals, percentages, mixed numbers (1又1/2, 1 1/2), remainders (5……3, 5余3,
5 r 3), units (24厘米 = 24 cm, 2千克 = 2000克) and simple expressions (2x+3 = 3+2x) are compared
with sympy. The answer is True, False, or None when the check cannot decide (words, prose, a
proof): then only the model's verdict stands.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

TRANSFORMS = (*standard_transformations, implicit_multiplication_application, convert_xor)
# unit -> (dimension, factor to the dimension's base unit)
UNITS: dict[str, tuple[str, sympy.Rational]] = {}
for names, dimension, factor in [
    (("mm", "毫米"), "length", sympy.Rational(1, 1000)),
    (("cm", "厘米"), "length", sympy.Rational(1, 100)),
    (("dm", "分米"), "length", sympy.Rational(1, 10)),
    (("m", "米"), "length", sympy.Integer(1)),
    (("km", "千米", "公里"), "length", sympy.Integer(1000)),
    (("mm2", "mm²", "平方毫米"), "area", sympy.Rational(1, 10**6)),
    (("cm2", "cm²", "平方厘米"), "area", sympy.Rational(1, 10**4)),
    (("dm2", "dm²", "平方分米"), "area", sympy.Rational(1, 100)),
    (("m2", "m²", "平方米"), "area", sympy.Integer(1)),
    (("cm3", "cm³", "立方厘米", "ml", "毫升"), "volume", sympy.Rational(1, 10**6)),
    (("dm3", "dm³", "立方分米", "l", "升"), "volume", sympy.Rational(1, 1000)),
    (("m3", "m³", "立方米"), "volume", sympy.Integer(1)),
    (("g", "克"), "mass", sympy.Rational(1, 1000)),
    (("kg", "千克", "公斤"), "mass", sympy.Integer(1)),
    (("t", "吨"), "mass", sympy.Integer(1000)),
    (("s", "秒"), "time", sympy.Integer(1)),
    (("min", "分", "分钟"), "time", sympy.Integer(60)),
    (("h", "时", "小时"), "time", sympy.Integer(3600)),
    (("元",), "money", sympy.Integer(1)),
    (("角",), "money", sympy.Rational(1, 10)),
    (("°", "度"), "angle", sympy.Integer(1)),
    (("天", "日"), "time", sympy.Integer(86400)),
    (("周", "星期"), "time", sympy.Integer(7 * 86400)),
]:
    for name in names:
        UNITS[name] = (dimension, factor)
# Counting words (量词) that a word problem's answer carries: 26本 is 26 of something, and neither 26
# nor 26个 of something else. Each is a dimension of its own. 分, 角 and 元 are money or time above.
for (
    classifier
) in "本个只人名支枝张条棵朵辆块件盒箱袋瓶页次位套头匹把台间双杯包颗道篇场层组份筐桶堆捆艘架座所户".replace(" ", ""):
    UNITS.setdefault(classifier, (f"count:{classifier}", sympy.Integer(1)))
_UNIT_PATTERN = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
_QUANTITY = re.compile(rf"^(?P<number>.+?)\s*(?P<unit>{_UNIT_PATTERN})$", re.IGNORECASE)
_REMAINDER = re.compile(r"^(-?\d+)\s*(?:…+|\.{3,}|余|r|R|remainder)\s*(\d+)$")
_MIXED = re.compile(r"^(-?\d+)\s*(?:又|\s)\s*(\d+)\s*/\s*(\d+)$")


@dataclass(frozen=True)
class Value:
    """A parsed answer: a number or expression, optionally with a unit dimension, or a remainder."""

    amount: sympy.Expr
    dimension: str | None = None
    remainder: sympy.Integer | None = None


_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_RAISED_RUN = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+")


def _clean(text: str) -> str:
    # A raised run is a power: x² is x^2 (NFKC alone would make it x2, that is 2x); but a unit's
    # own (24 cm², 5 m³) stays the unit.
    if not _QUANTITY.match(unicodedata.normalize("NFKC", text).strip().rstrip("。.")):
        text = _RAISED_RUN.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPTS), text)
    text = unicodedata.normalize("NFKC", text).strip()  # full-width digits and signs -> ASCII
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-").replace("：", ":")
    text = re.sub(r"^(?:[a-zA-Z]\s*=|答[:：]?)\s*", "", text)  # "x = 3", "答：3"
    return text.strip().rstrip("。.").strip()


def parse_value(text: str) -> Value | None:
    """The value an answer denotes, or None when it is not a mathematical value."""
    text = _clean(text)
    if not text or len(text) > 60:
        return None
    if match := _REMAINDER.match(text):
        return Value(sympy.Integer(match.group(1)), remainder=sympy.Integer(match.group(2)))
    dimension = None
    if (match := _QUANTITY.match(text)) and not match.group("number").strip().endswith(("*", "/", "+", "-")):
        dimension, factor = (
            UNITS[match.group("unit").lower()] if match.group("unit").lower() in UNITS else UNITS[match.group("unit")]
        )
        number = parse_number(match.group("number"))
        return None if number is None else Value(number * factor, dimension)
    number = parse_number(text)
    return None if number is None else Value(number)


_ROOT = re.compile(r"√\s*(\d+(?:\.\d+)?|[a-zA-Z]|\([^()]*\))")


def parse_number(text: str) -> sympy.Expr | None:
    text = text.strip()
    if match := _MIXED.match(text):
        whole, numerator, denominator = (int(g) for g in match.groups())
        sign = -1 if whole < 0 else 1
        return sympy.Integer(whole) + sign * sympy.Rational(numerator, denominator)
    percent = text.endswith("%")
    if percent:
        text = text[:-1]
    if not re.fullmatch(r"[0-9a-zA-Z+\-*/^().\s√π]+", text):
        return None
    # √ takes the number, letter or bracket after it (`2√3`, `√2/2`): sqrt2 would be split into
    # the letters s, q, r, t by implicit multiplication
    text = _ROOT.sub(r"sqrt(\1)", text).replace("√", "sqrt").replace("π", "pi")
    if re.search(r"[a-zA-Z]{2,}", re.sub(r"sqrt|pi", "", text)):
        return None  # a word, not an expression: single-letter variables only
    try:
        value = parse_expr(text, transformations=TRANSFORMS, evaluate=True)
    except Exception:  # sympy raises many kinds of errors on text that is not an expression
        return None
    if not isinstance(value, sympy.Expr):
        return None
    value = sympy.nsimplify(value, rational=True) if value.is_Float else value
    return value / 100 if percent else value


def equivalent(student: str, key: str, accepted: tuple[str, ...] = ()) -> bool | None:
    """True or False when the student's answer can be compared with the key (or an accepted form),
    None when the check cannot decide."""
    student_value = parse_value(student)
    decided: list[bool] = []
    for form in (key, *accepted):
        key_value = parse_value(form)
        if key_value is None:
            continue
        if student_value is None:
            # the key is a value but the answer is not: decided only if the answer is blank
            decided.append(False) if not _clean(student) else None
            continue
        decided.append(_same(student_value, key_value))
    if any(decided):
        return True
    return False if decided else None


def _same(a: Value, b: Value) -> bool:
    if (a.remainder is None) != (b.remainder is None):
        return False
    if a.remainder is not None:
        return a.amount == b.amount and a.remainder == b.remainder
    if a.dimension != b.dimension and a.dimension is not None and b.dimension is not None:
        return False
    if (a.dimension is None) != (b.dimension is None):
        return False  # a missing or extra unit is a unit error
    try:
        return bool(sympy.simplify(a.amount - b.amount) == 0)
    except Exception:
        return False
