"""An exam's item statistics, as Gradescope, ZipGrade and PrairieLearn show them, over final
verdicts only (a question waiting for review is left out; papers with some are marked provisional).

- scores: mean, median and standard deviation (population) in points, and a histogram of the
  share of the points earned, in tenths;
- per question: difficulty (the share answering right), discrimination (point-biserial: how much
  better the students who got it right did on the whole exam, from -1 to 1), and the three most
  common wrong answers (as read, compared without spaces and case);
- KR-20 reliability over the questions (each right or wrong), with the total as the number right.

Counts and sums are SQL aggregates; only one row per paper and per question reaches Python.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from sqlalchemy import Float, case, cast, func, select
from sqlalchemy.orm import Session

from shared.grading.reports import FINAL, GRADED
from shared.models import Paper, QuestionResult

RIGHT = case((QuestionResult.is_correct.is_(True), 1), else_=0)
COMMON_WRONG = 3


def _scores(session: Session, exam_id: Any) -> list[tuple[float, float, bool]]:
    """(score, max score, provisional) per graded paper."""
    rows = session.execute(
        select(Paper.score, Paper.max_score, Paper.pending_points).where(
            Paper.exam_id == exam_id, GRADED, Paper.max_score > 0, Paper.score.is_not(None)
        )
    ).all()
    return [(float(score), float(top), bool(pending)) for score, top, pending in rows]


def _histogram(scores: list[tuple[float, float, bool]]) -> list[dict[str, Any]]:
    bins = [{"from": 10 * n, "to": 10 * n + 10, "papers": 0, "provisional": 0} for n in range(10)]
    for score, top, provisional in scores:
        index = min(9, int(10 * score / top)) if top else 0
        bins[index]["papers"] += 1
        bins[index]["provisional"] += int(provisional)
    return bins


def _items(session: Session, exam_id: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """Per question: attempted, right, and the mean number-right of the papers that got it right
    and wrong; and every paper's number right (over its final questions)."""
    totals = (
        select(QuestionResult.paper_id, func.sum(RIGHT).label("number_right"))
        .join(Paper, Paper.id == QuestionResult.paper_id)
        .where(Paper.exam_id == exam_id, FINAL)
        .group_by(QuestionResult.paper_id)
        .subquery()
    )
    total = cast(totals.c.number_right, Float)
    rows = session.execute(
        select(
            QuestionResult.question_id,
            func.min(QuestionResult.position),
            func.count(),
            func.sum(RIGHT),
            func.avg(case((QuestionResult.is_correct.is_(True), total))),
            func.avg(case((QuestionResult.is_correct.is_(False), total))),
        )
        .join(Paper, Paper.id == QuestionResult.paper_id)
        .join(totals, totals.c.paper_id == QuestionResult.paper_id)
        .where(Paper.exam_id == exam_id, FINAL)
        .group_by(QuestionResult.question_id)
        .order_by(func.min(QuestionResult.position))
    ).all()
    items = [
        {
            "question_id": qid,
            "attempted": int(attempted),
            "right": int(right or 0),
            "mean_total_right": None if mean_right is None else float(mean_right),
            "mean_total_wrong": None if mean_wrong is None else float(mean_wrong),
        }
        for qid, _position, attempted, right, mean_right, mean_wrong in rows
    ]
    return items, [int(n) for (n,) in session.execute(select(totals.c.number_right)).all()]


def _common_wrong(session: Session, exam_id: Any) -> dict[str, list[dict[str, Any]]]:
    answer = func.lower(func.replace(func.trim(QuestionResult.student_answer), " ", ""))
    rows = session.execute(
        select(QuestionResult.question_id, answer, func.min(QuestionResult.student_answer), func.count())
        .join(Paper, Paper.id == QuestionResult.paper_id)
        .where(Paper.exam_id == exam_id, FINAL, QuestionResult.is_correct.is_(False), answer != "")
        .group_by(QuestionResult.question_id, answer)
        .order_by(QuestionResult.question_id, func.count().desc(), answer)
    ).all()
    found: dict[str, list[dict[str, Any]]] = {}
    for qid, _folded, shown, count in rows:
        if len(found.setdefault(qid, [])) < COMMON_WRONG:
            found[qid].append({"answer": shown, "count": int(count)})
    return found


def point_biserial(item: dict[str, Any], spread: float) -> float | None:
    """(M1 - M0) / s * sqrt(p q): M1, M0 the mean number right of those right and wrong on it."""
    p = item["right"] / item["attempted"] if item["attempted"] else 0
    if spread == 0 or item["mean_total_right"] is None or item["mean_total_wrong"] is None:
        return None
    return (item["mean_total_right"] - item["mean_total_wrong"]) / spread * math.sqrt(p * (1 - p))


def kr20(items: list[dict[str, Any]], totals: list[int]) -> float | None:
    """k / (k - 1) * (1 - sum(p q) / variance of the number right)."""
    k = len(items)
    variance = statistics.pvariance(totals) if len(totals) > 1 else 0
    if k < 2 or variance == 0:
        return None
    pq = sum((i["right"] / i["attempted"]) * (1 - i["right"] / i["attempted"]) for i in items if i["attempted"])
    return k / (k - 1) * (1 - pq / variance)


def exam_statistics(session: Session, exam_id: Any) -> dict[str, Any]:
    scores = _scores(session, exam_id)
    points = [score for score, _top, _provisional in scores]
    items, totals = _items(session, exam_id)
    spread = statistics.pstdev(totals) if len(totals) > 1 else 0.0
    wrong = _common_wrong(session, exam_id)
    return {
        "papers": len(scores),
        "provisional": sum(1 for *_rest, provisional in scores if provisional),
        "max_score": max((top for _score, top, _p in scores), default=None),
        "mean": round(statistics.fmean(points), 3) if points else None,
        "median": round(statistics.median(points), 3) if points else None,
        "standard_deviation": round(statistics.pstdev(points), 3) if len(points) > 1 else None,
        "histogram": _histogram(scores),
        "kr20": None if (value := kr20(items, totals)) is None else round(value, 4),
        "questions": [
            {
                "question_id": item["question_id"],
                "attempted": item["attempted"],
                "difficulty": round(item["right"] / item["attempted"], 4) if item["attempted"] else None,
                "discrimination": None if (r := point_biserial(item, spread)) is None else round(r, 4),
                "common_wrong_answers": wrong.get(item["question_id"], []),
            }
            for item in items
        ],
    }


def gradebook(session: Session, exam_id: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Student by question: each paper's score on each question (empty while it waits for
    review), with its total; the question ids in paper order."""
    rows = session.execute(
        select(
            Paper.class_label,
            Paper.student_ref,
            Paper.score,
            Paper.pending_points,
            QuestionResult.question_id,
            QuestionResult.position,
            QuestionResult.score,
            QuestionResult.needs_review,
        )
        .join(QuestionResult, QuestionResult.paper_id == Paper.id)
        .where(Paper.exam_id == exam_id, GRADED)
        .order_by(Paper.class_label, Paper.student_ref, QuestionResult.position)
    ).all()
    order: dict[str, int] = {}
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for label, student, total, pending, qid, position, score, waiting in rows:
        order.setdefault(qid, position)
        row = table.setdefault(
            (label, student), {"class_label": label, "student_ref": student, "total": total, "pending_points": pending}
        )
        row[qid] = "" if waiting or score is None else score
    questions = sorted(order, key=order.__getitem__)
    return questions, list(table.values())
