"""The mathematics vocabulary covers what teachers' keys name, by Chinese name or alias."""

from __future__ import annotations

import pytest

from shared.grading.vocabulary import UnknownPoints, resolve_points

# What one typical set of tests named, and the point each must resolve to.
NAMED = {
    "万以内加减法": "math.g3.add-sub-within-10000",
    "四则混合运算": "math.g4.order-of-operations",
    "小数加减法": "math.g4.decimal-add-sub",
    "同分母分数加减法": "math.g3.fraction-add-sub-same",
    "异分母分数加减法": "math.g5.fraction-add-sub",
    "有理数的运算": "math.g7.rational-numbers",
    "平方根": "math.g7.real-numbers",
    "单位换算": "math.g3.unit-conversion",
    "时间单位": "math.g3.seconds",
    "质量单位": "math.g3.mass-units",
    "质量单位（吨）": "math.g3.mass-units",  # the old name, kept as an alias: old keys still resolve
    "长方形面积": "math.g3.area",
    "圆的面积": "math.g6.circle",
    "比的化简": "math.g6.ratio",
    "科学记数法": "math.g7.powers-scientific-notation",
    "解决问题（应用题）": "math.g3.word-problems",
    "Multiplication tables": "math.g2.times-tables",
    "math.g3.perimeter": "math.g3.perimeter",
}


def test_every_name_teachers_used_resolves_to_one_point(app):
    with app.extensions["markq"].sessions() as session:
        assert resolve_points(session, 0, set(NAMED), "math") == NAMED


def test_a_name_of_no_point_is_refused_by_name(app):
    with app.extensions["markq"].sessions() as session, pytest.raises(UnknownPoints) as refused:
        resolve_points(session, 0, {"周长", "量子力学"}, "math")
    assert refused.value.names == {"量子力学"} and "量子力学" in str(refused.value)
