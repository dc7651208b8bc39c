"""Offline marking on the reader's own first layout (bench.handwriting), part of bench.offline.

Papers come from bench.handwriting: printed questions, answers in handwriting-style fonts, right,
wrong, blank or written inline, on scanned, skewed, shadowed, pencilled or phone-photographed
pages. Each is read and marked by the local provider's code (shared.grading.reader), and prints:

- confident: the share of questions marked at or above the confidence threshold;
- accuracy on confident: the share of those verdicts (correct / not correct) that match the truth;
- silently wrong: the share of all questions marked confidently and wrongly;
- CPU seconds per page of reading and marking (process time: onnxruntime's threads included);
- cascade tokens: the vision-model prompt tokens a cascade spends (only the unsure questions, as
  crops when cheaper than the pages) against sending every paper to the vision model, at gpt-4o
  high detail, counted with the same rules as markq's estimates.

Targets: at least 70% confident, at least 97% accuracy on confident, at most 1% silently wrong.
`python -m bench.offline` runs it beside the school papers and prints its figures as `own_layout`.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from typing import Any

from bench.handwriting import answer_key, make_paper
from shared.grading.answer_key import AnswerKey
from shared.grading.offline import cheaper_crops, read_offline, unsure_questions
from shared.grading.prompt import PageImage, build_request, count_prompt_tokens
from shared.grading.reader import scanning
from shared.grading.reader.reading import AnswerReading
from shared.grading.vocabulary import asked_vocabulary, packaged_vocabulary
from shared.images import normalise_page
from shared.models import Exam, KnowledgePoint
from shared.spending.costs import sheet_detail

MODEL, DETAIL = "gpt-4o", "high"


def vocabulary(subject: str, grade: int, key: AnswerKey) -> list[KnowledgePoint]:
    """The points an exam's prompt lists (as shared.grading.vocabulary.exam_vocabulary selects)."""
    named = key.knowledge_point_ids()
    _version, points = packaged_vocabulary()
    chosen = [
        p
        for p in points
        if (p["subject"] == subject and grade - 1 <= int(p["grade"]) <= grade)  # type: ignore[call-overload]
        or p["id"] in named
    ]
    return sorted((KnowledgePoint(**p) for p in chosen), key=lambda kp: kp.id)


def prompt_tokens(
    exam: Exam, key: AnswerKey, sizes: list[tuple[int, int]], caption: str | None, *, asked: bool = False
) -> int:
    """The prompt tokens of markq's request; `asked`: only some questions (the cascade's), whose
    request lists only the points they name (shared.grading.vocabulary.asked_vocabulary)."""
    points = vocabulary(exam.subject, exam.grade, key)
    if asked:
        points = asked_vocabulary(points, key)
    # An image of crops goes at its own detail, as prepare_paper sends it.
    details = [sheet_detail(exam.model, w, h, exam.image_detail) if caption else None for w, h in sizes]
    images = [PageImage("https://storage.example/page.jpg", detail) for detail in details]
    request = build_request(exam, key, points, images, 1000, caption=caption)
    return count_prompt_tokens(request, sizes)


def page_sizes(pages: list[bytes]) -> list[tuple[int, int]]:
    """Each page's size as markq sends it to the vision model."""
    return [(page.width, page.height) for page in (normalise_page(data, MODEL, DETAIL) for data in pages)]


def cascade_prompt_tokens(
    exam: Exam, key: AnswerKey, unsure: list[str], sizes: list[tuple[int, int]], crops: tuple[int, int] | None
) -> int:
    """The cascade's call for the unsure questions (none: no call): one image of their crops when
    given, else the pages, as prepare_paper sends them."""
    if not unsure:
        return 0
    asked = AnswerKey(questions=[q for q in key.questions if q.id in unsure])
    if crops is not None:
        return prompt_tokens(exam, asked, [crops], "crops", asked=True)
    return prompt_tokens(exam, asked, sizes, None, asked=True)


def measure(papers: int, seed: int, threshold: float, show_errors: bool = False) -> dict[str, Any]:
    """Read and mark `papers` generated papers from `seed`; print per-paper lines and the figures."""
    total = confident = confident_right = silent = pages = 0
    cpu = wall = 0.0
    vision_tokens = cascade_tokens = 0
    by_variant: dict[str, Counter[str]] = defaultdict(Counter)
    scanning.scan_page(make_paper(seed).pages[0], 1)  # load the OCR engine outside the timing
    for n in range(papers):
        paper = make_paper(seed + n)
        key = AnswerKey.model_validate(answer_key(paper))
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        offline = read_offline(
            paper.pages, key, subject=paper.subject, language=paper.language, threshold=threshold, crops=True
        )
        cpu += time.process_time() - started_cpu
        wall += time.perf_counter() - started_wall
        pages += len(paper.pages)
        marks = offline.marks
        stats = by_variant[paper.variant]
        for written in paper.answers:
            mark = marks[written.question.id]
            sure, right = mark.confidence >= threshold, mark.is_correct == written.correct
            total += 1
            confident += sure
            confident_right += sure and right
            silent += sure and not right
            stats.update(questions=1, confident=sure, silent=sure and not right)
            if show_errors and (not right or not sure):
                reading = AnswerReading.from_json(offline.local_reading["questions"][written.question.id])
                print(
                    f"  {'SILENT ' if sure and not right else ''}{'wrong' if not right else 'unsure'} "
                    f"paper {n} ({paper.variant}, {paper.font}) q{written.question.id} wrote {written.text!r} "
                    f"read {reading.text!r} ({reading.state}, {reading.confidence:.2f} -> {mark.confidence:.2f}) "
                    f"{reading.note}"
                )

        exam = Exam(
            id=uuid.UUID(int=n),
            subject=paper.subject,
            grade=3 if paper.subject == "math" else 6,
            language=paper.language,
            rubric="",
            model=MODEL,
            image_detail=DETAIL,
        )
        sizes = page_sizes(paper.pages)
        vision_tokens += prompt_tokens(exam, key, sizes, None)
        unsure = unsure_questions(marks, threshold)
        crops = cheaper_crops(offline.local_reading, unsure, MODEL, DETAIL, sizes) if unsure else None
        cascade_tokens += cascade_prompt_tokens(
            exam, key, unsure, sizes, (crops["width"], crops["height"]) if crops else None
        )
        print(
            f"paper {n + 1}/{papers}: {paper.subject}, {paper.variant}, {len(paper.pages)} page(s), "
            f"{len(unsure)} of {len(key.questions)} unsure",
            flush=True,
        )

    figures: dict[str, Any] = {
        "papers": papers,
        "pages": pages,
        "questions": total,
        "threshold": threshold,
        "confident_share": round(confident / total, 4),
        "accuracy_on_confident": round(confident_right / max(1, confident), 4),
        "silently_wrong_share": round(silent / total, 4),
        "cpu_seconds_per_page": round(cpu / pages, 3),
        "wall_seconds_per_page": round(wall / pages, 3),
        "vision_tokens_all_pages": vision_tokens,
        "vision_tokens_cascade": cascade_tokens,
        "cascade_token_ratio": round(cascade_tokens / max(1, vision_tokens), 4),
        "targets_met": confident / total >= 0.7
        and confident_right / max(1, confident) >= 0.97
        and silent / total <= 0.01,
    }
    print("\nby page kind:")
    for variant, stats in sorted(by_variant.items()):
        print(
            f"  {variant:12s} questions {stats['questions']:4d}  confident {stats['confident'] / stats['questions']:.0%}"
            f"  silently wrong {stats['silent']}"
        )
    print(
        f"\nconfident {figures['confident_share']:.1%} (target >= 70%), accuracy on confident "
        f"{figures['accuracy_on_confident']:.2%} (target >= 97%), silently wrong "
        f"{figures['silently_wrong_share']:.2%} (target <= 1%)"
    )
    print(
        f"CPU {figures['cpu_seconds_per_page']} s per page ({figures['wall_seconds_per_page']} s wall); "
        f"cascade vision tokens {cascade_tokens} against {vision_tokens} for every page "
        f"({figures['cascade_token_ratio']:.1%})"
    )
    return figures
