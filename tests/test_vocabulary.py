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


# 义务教育数学课程标准（2022年版）: each content area (学习领域 / 主题) of each grade band it has,
# with a point teachers name for it. Reviewing the vocabulary against the standard (2026.4) found
# every one covered; this keeps it so.
BANDS = {"1-2": range(1, 3), "3-4": range(3, 5), "5-6": range(5, 7), "7-9": range(7, 10)}
STANDARD = {
    ("数与代数", "数与运算", "1-2"): "20以内加减法",
    ("数与代数", "数与运算", "3-4"): "多位数乘一位数",
    ("数与代数", "数与运算", "5-6"): "因数与倍数",
    ("数与代数", "数量关系", "1-2"): "用乘除法解决问题",
    ("数与代数", "数量关系", "3-4"): "常见的数量关系",
    ("数与代数", "数量关系", "5-6"): "按比分配",
    ("数与代数", "数与式", "7-9"): "代数式",
    ("数与代数", "方程与不等式", "7-9"): "二元一次方程组",
    ("数与代数", "函数", "7-9"): "反比例函数",
    ("图形与几何", "图形的认识与测量", "1-2"): "认识图形",
    ("图形与几何", "图形的认识与测量", "3-4"): "长方形面积",
    ("图形与几何", "图形的认识与测量", "5-6"): "组合图形的面积",
    ("图形与几何", "图形的位置与运动", "1-2"): "观察物体",
    ("图形与几何", "图形的位置与运动", "3-4"): "轴对称图形",
    ("图形与几何", "图形的位置与运动", "5-6"): "比例尺",
    ("图形与几何", "图形的性质", "7-9"): "尺规作图",
    ("图形与几何", "图形的变化", "7-9"): "图形的平移",
    ("图形与几何", "图形与坐标", "7-9"): "平面直角坐标系",
    ("统计与概率", "数据分类", "1-2"): "分类与整理",
    ("统计与概率", "数据的收集、整理与表达", "3-4"): "复式统计表",
    ("统计与概率", "数据的收集、整理与表达", "5-6"): "扇形统计图",
    ("统计与概率", "随机现象发生的可能性", "5-6"): "可能性",
    ("统计与概率", "抽样与数据分析", "7-9"): "四分位数与箱线图",
    ("统计与概率", "随机事件的概率", "7-9"): "用列举法求概率",
    # 2022 moved money, time and direction (1-2) and the calendar and mass (3-4) into 主题活动
    ("综合与实践", "主题活动", "1-2"): "认识人民币",
    ("综合与实践", "主题活动", "3-4"): "年、月、日",
    ("综合与实践", "主题活动", "5-6"): "确定起跑线",
    ("综合与实践", "项目学习", "7-9"): "最短路径问题",
}


def test_every_content_area_of_the_2022_standard_has_a_point_in_its_grade_band(app):
    from shared.models import KnowledgePoint

    with app.extensions["markq"].sessions() as session:
        resolved = resolve_points(session, 0, set(STANDARD.values()), "math")
        misplaced = {
            area: (name, resolved[name], grade)
            for area, name in STANDARD.items()
            if (grade := session.get(KnowledgePoint, resolved[name]).grade) not in BANDS[area[2]]
        }
    assert not misplaced
    # every 学习领域 × 学段 the standard has is listed above
    assert {(field, band) for field, _, band in STANDARD} == {
        (field, band) for field in ("数与代数", "图形与几何", "统计与概率", "综合与实践") for band in BANDS
    }


def test_every_name_and_alias_names_one_point_of_its_subject_and_the_vocabulary_is_versioned():
    from collections import defaultdict

    from shared.grading.vocabulary import packaged_vocabulary

    version, points = packaged_vocabulary()
    assert tuple(map(int, version.split("."))) >= (2026, 4)
    names: dict[tuple[object, str], set[object]] = defaultdict(set)
    for p in points:
        for name in {p["name_zh"], p["name_en"], *p["aliases"]}:  # type: ignore[misc]
            names[p["subject"], str(name).casefold()].add(p["id"])
    assert {name: ids for name, ids in names.items() if len(ids) > 1} == {}
    assert len({p["id"] for p in points}) == len(points)
