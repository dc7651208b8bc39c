"""What the command line prints for people: short tables and summaries (rich). `markq --json ...`
prints the API's JSON instead, for scripts."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

PIPED_WIDTH = 160  # into a file or another program: wide enough that ids and titles stay whole


class _Console:
    """A rich console made at each print, on the stdout of the moment (a test's, a pipe's)."""

    def print(self, *objects: Any) -> None:
        width = None if sys.stdout.isatty() else PIPED_WIDTH
        Console(file=sys.stdout, highlight=False, width=width).print(*objects)


console = _Console()


def _score(row: dict[str, Any]) -> str:
    if row.get("score") is None:
        return "-"
    pending = row.get("pending_points") or 0
    text = f"{row['score']:g}/{row.get('max_score') or 0:g}"
    return text + (f" (+{pending:g} to review)" if pending else "")


def exam_created(exam: dict[str, Any]) -> None:
    console.print(
        f"created exam [bold]{exam['id']}[/]: {exam['title']}, grade {exam['grade']} {exam['subject']}, "
        f"{len(exam['answer_key']['questions'])} questions, read by {exam['provider']}"
    )
    for warning in exam.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {warning}")
    if exam.get("callback_secret"):
        console.print(f"webhook secret (shown once): {exam['callback_secret']}")


def exams(rows: list[dict[str, Any]]) -> None:
    table = Table("exam", "title", "grade", "papers", "progress", "cost $", title=f"{len(rows)} exam(s)")
    for exam in rows:
        progress = ", ".join(f"{n} {status}" for status, n in sorted(exam.get("progress", {}).items()) if n)
        table.add_row(
            exam["id"],
            exam["title"],
            f"{exam['grade']} {exam['subject']}",
            str(exam.get("papers", 0)),
            progress or "-",
            f"{exam.get('usage', {}).get('cost_usd', 0):.4f}",
        )
    console.print(table)


def exam(view: dict[str, Any]) -> None:
    console.print(f"[bold]{view['title']}[/] ({view['id']}): grade {view['grade']} {view['subject']}")
    progress = ", ".join(f"{n} {status}" for status, n in sorted(view.get("progress", {}).items()) if n)
    console.print(f"papers: {view.get('papers', 0)} ({progress or 'none yet'})")
    usage = view.get("usage") or {}
    console.print(f"provider calls: {usage.get('calls', 0)}, cost so far ${usage.get('cost_usd', 0):.4f}")
    review = view.get("review") or {}
    if review.get("needing_review"):
        console.print(f"answers waiting for a teacher: {review['needing_review']}")
    if view.get("status_reason"):
        console.print(f"[yellow]{view['status_reason']}[/]")


def paper(view: dict[str, Any]) -> None:
    console.print(
        f"paper {view['id']}: {view['student_ref']} {view.get('class_label') or ''}, "
        f"[bold]{view['status']}[/], score {_score(view)}"
    )
    if view.get("status_reason"):
        console.print(f"[yellow]{view['status_reason']}[/]")
    if view.get("replaced"):
        console.print(f"replaced the failed paper(s) {', '.join(view['replaced'])}")
    table = Table("question", "answer", "right", "score", "knowledge points", "note")
    for q in view.get("questions") or []:
        right = "review" if q.get("needs_review") else ("yes" if q["is_correct"] else "no")
        score = "-" if q.get("score") is None else f"{q['score']:g}/{q['max_score']:g}"
        note = q.get("review_reason") or q.get("explanation") or ""
        table.add_row(q["question_id"], q["student_answer"], right, score, ", ".join(q["knowledge_points"]), note)
    if view.get("questions"):
        console.print(table)


def report(view: dict[str, Any]) -> None:
    papers = view.get("papers") or []
    console.print(f"[bold]{len(papers)}[/] paper(s)")
    distribution = view.get("score_distribution") or []
    if distribution:
        console.print("scores: " + ", ".join(f"{b['range']} {b['papers']}" for b in distribution if b.get("papers")))
    table = Table("knowledge point", "missed", "of", title="most-missed knowledge points")
    for row in (view.get("missed_knowledge_points") or [])[:10]:
        table.add_row(
            f"{row.get('name_zh', '')} / {row.get('name_en', '')} ({row['id']})",
            str(row["missed"]),
            str(row["attempted"]),
        )
    console.print(table)
    classes = view.get("classes") or []
    if classes:
        by_class = Table("class", "papers", "mean %", title="classes")
        for c in classes:
            mean = c.get("mean_percent")
            by_class.add_row(
                c.get("class_label") or "-", str(c.get("papers", 0)), "-" if mean is None else f"{mean:.1f}"
            )
        console.print(by_class)


def progress(counts: dict[str, int]) -> None:
    console.print("finished: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if n))


def student(view: dict[str, Any]) -> None:
    table = Table("exam", "date", "class", "score", title=f"student {view['student_ref']}")
    for row in view.get("exams") or []:
        table.add_row(row["title"], str(row.get("created_at", ""))[:10], row.get("class_label") or "-", _score(row))
    console.print(table)
    weak = Table("knowledge point", "missed", "of", title="weak knowledge points")
    for row in view.get("weak_points") or []:
        weak.add_row(
            f"{row.get('name_zh', '')} / {row.get('name_en', '')} ({row['id']})",
            str(row["missed"]),
            str(row["attempted"]),
        )
    console.print(weak)


def students(rows: list[dict[str, Any]]) -> None:
    table = Table("student", "class", "papers", "exams", "last paper", title=f"{len(rows)} student(s)")
    for row in rows:
        last = (row.get("last_paper_at") or "")[:10]
        table.add_row(row["student_ref"], row.get("class_label") or "", str(row["papers"]), str(row["exams"]), last)
    console.print(table)


def school_weak_points(grades: list[dict[str, Any]]) -> None:
    if not grades:
        console.print("no graded papers in this window")
    for grade in grades:
        table = Table(
            "知识点", "knowledge point", "missed", title=f"grade {grade['grade']}: {grade['papers']} paper(s)"
        )
        for point in grade["most_missed"]:
            table.add_row(point["name_zh"], point["name_en"], f"{point['missed']} of {point['attempted']}")
        console.print(table)


def knowledge_points(rows: list[dict[str, Any]]) -> None:
    table = Table("id", "grade", "知识点", "knowledge point", title=f"{len(rows)} knowledge point(s)")
    for row in rows:
        table.add_row(row["id"], str(row.get("grade", "")), row.get("name_zh", ""), row.get("name_en", ""))
    console.print(table)
