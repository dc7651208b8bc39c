"""What a class costs on each lane: markq's estimate against the bill, with legibility.

    python -m bench.cost                 # 40 two-page papers, three models, every lane
    python -m bench.cost --profile ci    # 8 papers, one model

A class: one generated school mathematics exam (bench.school_papers: its blank paper, key and
layout) written by `papers` students, each answering in their own way (the exam's layout, print and
photo kind stay the class's; only the answers and their handwriting differ). For each model and
lane, the real stack marks the class (API, Celery workers for calls, pages and OCR, beat for the
Batch API, PostgreSQL, Redis) against the loopback OpenAI-compatible server, which counts every
token as OpenAI does and prices every answer as OpenAI bills it (cached input at its rate, the Batch
API and the Flex tier at half).

Per lane and model it prints:
- estimated: `POST /v1/estimate` for the exam (its own request and blank paper) with one student's
  pages as the sample, before any paper is marked: the class's dollars on that lane;
- actual: the loopback server's bill for the class (and markq's ledger beside it);
- ratio estimated / actual (target: within 10% for every lane);
- the cascade's class is an exam with a trial run of WARM_UP papers: once they are marked and every
  other paper is read offline and held, the exam's own estimate (`GET /v1/exams/{id}`, each held
  paper's call priced from its reading) against the bill after the release marks them
  (`ratio_after_offline_read`; the summary's `..._cascade_after_offline_read` figures use it for
  the cascade, `ratio_target_met` the estimates made before any upload);
- legibility: OCR recall of the pages as markq sends them to the model against the originals
  (RapidOCR, as bench.tokens), and markq's own line-height proxy;
- dollars per class, and the cheapest lane whose legibility holds (target at most $0.02).

Lanes: vision (pages, standard tier), economy (Batch API), flex (Flex tier), cascade (offline reader
with the blank paper first, the unsure questions' crops to the model), vision_crops (the vision
lane on the exam with its blank paper: every question's crop in one image instead of the pages,
where that is fewer tokens; its legibility is the OCR recall of that image as sent against the same
crops at full resolution), economy_crops (the same through the Batch API; the flex lane sends the
same crops at the same price).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

import bench.school_papers as school_papers
from bench.throughput import Stack
from shared.db import transaction
from shared.images import jpeg_bytes, normalise_page
from shared.models import Paper, PaperStatus, Usage
from shared.schools import create_key, create_school

PROFILES = {
    "full": {"papers": 40, "models": ("gpt-5", "gpt-5-mini", "gpt-5-nano"), "legibility_pages": 2},
    "ci": {"papers": 8, "models": ("gpt-5-mini",), "legibility_pages": 1},
}
LANES = {  # lane: exam fields
    "vision": {"provider": "vision", "priority": "standard"},
    "economy": {"provider": "vision", "priority": "economy"},
    "flex": {"provider": "vision", "priority": "flex"},
    "cascade": {"provider": "cascade", "priority": "standard"},
    "vision_crops": {"provider": "vision", "priority": "standard"},
    "economy_crops": {"provider": "vision", "priority": "economy"},
}
WITH_TEMPLATE = ("cascade", "vision_crops", "economy_crops")  # lanes whose exam is given its blank paper
PRICED_AS = {"vision_crops": "vision", "economy_crops": "economy"}  # the estimate's lane, with a blank paper
CLASS_SEED = 424_242  # chosen for a two-page scanned paper; never tuned on for the reader
DONE = (PaperStatus.graded, PaperStatus.needs_review, PaperStatus.failed)
WARM_UP = 2  # students marked before the class, on the vision lane and the cascade
TARGET_RATIO = 0.10
TARGET_CLASS_USD = 0.02
LEGIBLE = 0.98


def class_papers(seed: int, students: int) -> list[school_papers.SchoolPaper]:
    """One exam answered by `students` students: the generator's own draws for the exam are kept
    (so its layout, print and photo kind are the class's), each student's answers drawn apart."""
    original = school_papers.decide_attempt
    papers = []
    for student in range(students):
        answers = random.Random(seed * 1000 + student)

        def attempt(spec: Any, rng: random.Random, answers: random.Random = answers) -> Any:
            original(spec, rng)  # the exam's draws, as for every student
            return original(spec, answers)

        school_papers.decide_attempt = attempt
        try:
            papers.append(school_papers.make_school_paper(seed))
        finally:
            school_papers.decide_attempt = original
    templates = {tuple(p.template_pages) for p in papers}
    if len(templates) != 1:
        raise RuntimeError("the students' blank papers differ: not one exam")
    return papers


def find_class_seed(start: int) -> int:
    """The first seed from `start` whose paper has two pages and is a scan (not a phone photo)."""
    seed = start
    while True:
        paper = school_papers.make_school_paper(seed)
        if len(paper.pages) == 2 and paper.variant.startswith("scan"):
            return seed
        seed += 1


def legibility(pages: list[bytes], model: str) -> dict[str, Any]:
    """OCR recall of the pages as sent against the originals, and markq's line-height proxy."""
    from bench.tokens import Reader, recalled

    reader = Reader()
    read = again = 0
    proxy = True
    for data in pages:
        sent = normalise_page(data, model, "high")
        proxy = proxy and sent.legible(model)
        original = reader.text(data)
        read += len(original)
        again += recalled(original, reader.text(sent.jpeg))
    return {"ocr_recall": round(again / read, 3) if read else None, "line_height_proxy": proxy}


def crops_legibility(paper: Any, model: str) -> dict[str, Any]:
    """OCR recall of the vision lane's image of every question's crop as sent (scaled to the text
    height of the pages as sent) against the same crops at full resolution."""
    from bench.tokens import Reader, recalled
    from shared.grading.answer_key import AnswerKey
    from shared.grading.reader.reading import stack_crops
    from shared.grading.reader.template import cut_questions, read_template
    from shared.grading.vision_crops import sheet_image

    key = AnswerKey.model_validate(paper.answer_key)
    template = read_template(paper.template_pages, key)
    cut = cut_questions(paper.pages, template, key)
    if cut is None:
        return {"ocr_recall": None, "note": "a page could not be aligned"}
    line_px = {n: normalise_page(page, model, "high").line_px for n, page in enumerate(paper.pages, start=1)}
    reader = Reader()
    full = stack_crops([(qid, crop, 1.0) for qid, _index, crop in cut])
    sent = sheet_image(model, "high", cut, template.line_heights, line_px)  # as markq sends it
    original = reader.text(jpeg_bytes(full))
    again = recalled(original, reader.text(jpeg_bytes(sent)))
    return {"ocr_recall": round(again / len(original), 3) if original else None, "sent_size": list(sent.size)}


def wait_done(stack: Stack, exam_id: str, papers: int, timeout: float = 1800, settled: tuple = DONE) -> None:
    """Until `papers` of the exam's papers are in one of the `settled` states."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with stack.sessions() as session:
            done = session.scalar(
                select(func.count()).select_from(Paper).where(Paper.exam_id == exam_id, Paper.status.in_(settled))
            )
        if done >= papers:
            return
        time.sleep(0.5)
    raise TimeoutError(f"exam {exam_id}: not finished in {timeout} s")


def loopback_bill(stack: Stack) -> float:
    base = stack.loopback.url.removesuffix("/v1")
    return float(httpx.get(f"{base}/_loopback/stats").json()["cost_usd"])


def new_school(stack: Stack, name: str) -> dict[str, str]:
    """A school of its own for each run: markq reuses a result for identical pages under the same
    prompt within a school, which would hide the second lane's calls."""
    with transaction(stack.sessions) as session:
        return {"Authorization": f"Bearer {create_key(session, create_school(session, name)).key}"}


def run_lane(
    stack: Stack,
    papers: list[Any],
    model: str,
    lane: str,
    sample: list[bytes] | None = None,
    school: str = "",
    trial: int = 0,
) -> dict[str, Any]:
    """One exam on `lane`: estimated before marking (from `sample`'s pages, by default the first
    student's), then its papers marked and billed. With a `trial` run (the cascade), the exam's
    own estimate is also taken when its first papers are marked and the rest read offline and
    held, before the release that marks them."""
    headers = new_school(stack, school or f"{lane} {model}")
    first = papers[0]
    body = {
        "title": f"{lane} {model}",
        "subject": "math",
        "grade": first.grade,
        "language": "zh",
        "answer_key": first.answer_key,
        "model": model,
        **LANES[lane],
        **({"trial_papers": trial} if trial else {}),
    }
    exam = httpx.post(f"{stack.api_url}/v1/exams", headers=headers, json=body, timeout=60)
    exam.raise_for_status()
    exam_id = exam.json()["id"]
    if lane in WITH_TEMPLATE:
        files = [("pages", (f"blank-{n}.png", data, "image/png")) for n, data in enumerate(first.template_pages, 1)]
        httpx.post(f"{stack.api_url}/v1/exams/{exam_id}/template", headers=headers, files=files, timeout=60)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            template = httpx.get(f"{stack.api_url}/v1/exams/{exam_id}/template", headers=headers).json()
            if template["status"] != "reading":
                break
            time.sleep(1)
        if template["status"] != "ready":
            raise RuntimeError(f"the blank paper was not read: {template}")
    sample_files = [("pages", (f"page-{n}.jpg", data, "image/jpeg")) for n, data in enumerate(sample or first.pages, 1)]
    estimate = httpx.post(
        f"{stack.api_url}/v1/estimate",
        headers=headers,
        data={"models": model, "class_size": str(len(papers)), "exam_id": exam_id},
        files=sample_files,
        timeout=120,
    )
    estimate.raise_for_status()
    priced = estimate.json()["models"][model]["lanes"][PRICED_AS.get(lane, lane)]
    estimated = priced["class_usd"]
    bill_before = loopback_bill(stack)
    started = time.monotonic()

    def submit(n: int) -> None:
        files = [("pages", (f"p{k}.jpg", data, "image/jpeg")) for k, data in enumerate(papers[n].pages, 1)]
        reply = httpx.post(
            f"{stack.api_url}/v1/exams/{exam_id}/papers",
            headers=headers,
            data={"student_ref": f"s{n:02d}", "class_label": "7A"},
            files=files,
            timeout=120,
        )
        reply.raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(submit, range(len(papers))))
    held: dict[str, Any] = {}
    if trial:
        # the trial's papers marked, every other one read offline and held (or finished offline)
        wait_done(stack, exam_id, len(papers), settled=(*DONE, PaperStatus.paused))
        held = httpx.get(f"{stack.api_url}/v1/exams/{exam_id}", headers=headers).json()["cost"]
        httpx.post(f"{stack.api_url}/v1/exams/{exam_id}/release", headers=headers).raise_for_status()
    wait_done(stack, exam_id, len(papers))
    seconds = time.monotonic() - started
    actual = loopback_bill(stack) - bill_before
    view = httpx.get(f"{stack.api_url}/v1/exams/{exam_id}", headers=headers).json()
    with stack.sessions() as session:
        cut = session.scalar(
            select(func.count()).select_from(Paper).where(Paper.exam_id == exam_id, Paper.crops["key"].is_not(None))
        )
        asked, prompt = session.execute(
            select(func.avg(Usage.questions), func.avg(Usage.prompt_tokens)).where(
                Usage.exam_id == exam_id, Usage.outcome.startswith("ok")
            )
        ).one()
    return {
        "estimated_usd": round(estimated, 6),
        "measured": estimate.json()["assumptions"]["measured"],
        "actual_usd": round(actual, 6),
        "ledger_usd": round(view["usage"]["cost_usd"], 6),
        "ratio": round(estimated / actual, 3) if actual else None,
        "calls": view["usage"]["calls"],
        "papers_graded": view["progress"]["graded"] + view["progress"]["needs_review"],
        "seconds": round(seconds, 1),
        "estimate_after_marking_usd": view["cost"]["estimated_usd"],
        "questions": len(first.answer_key["questions"]),
        "mean_questions_asked": round(float(asked or 0), 2),
        "mean_prompt_tokens": round(float(prompt or 0)),
        "papers_with_crops": cut,
        "estimated_prompt_tokens": priced["prompt_tokens"],
        "estimated_calls_per_paper": priced["calls_per_paper"],
        "estimated_crops_instead_of_pages": estimate.json()["models"][model].get("crops_instead_of_pages", False),
        **(
            {
                "trial_papers": trial,
                "estimated_after_offline_read_usd": held["estimated_usd"],
                "papers_read_offline": held["papers_read_offline"],
                "ratio_after_offline_read": round(held["estimated_usd"] / actual, 3) if actual else None,
            }
            if trial
            else {}
        ),
    }


def run(profile_name: str, models: list[str] | None = None, lanes: list[str] | None = None) -> dict[str, Any]:
    profile = dict(PROFILES[profile_name])
    if models:
        profile["models"] = tuple(models)
    chosen = [lane for lane in LANES if not lanes or lane in lanes]
    seed = find_class_seed(CLASS_SEED)
    students = class_papers(seed, profile["papers"] + WARM_UP)
    papers, warm_up = students[: profile["papers"]], students[profile["papers"] :]
    os.environ["MARKQ_BATCH_INTERVAL_SECONDS"] = "2"
    os.environ["MARKQ_OCR_QUEUE_NAME"] = "bench-ocr"
    results: dict[str, Any] = {"class_seed": seed, "papers": len(papers), "pages_per_paper": len(papers[0].pages)}
    with tempfile.TemporaryDirectory(prefix="markq-bench-") as home:
        stack = Stack({"rpm": 100_000, "tpm": 100_000_000, "latency_ms": (0, 0)}, Path(home))
        try:
            stack.workers("markq")
            celery = [sys.executable, "-m", "celery", "-A", "worker.main"]
            stack.start("ocr", [*celery, "worker", "--concurrency=1", "-n", "ocr@%h", "-Q", "bench-ocr"], stack.env)
            stack.start("beat", [*celery, "beat", "-s", str(Path(home) / "beat-schedule")], stack.env)
            for model in profile["models"]:
                entry: dict[str, Any] = {
                    "legibility": legibility(papers[0].pages[: profile["legibility_pages"]], model),
                    "lanes": {},
                    "warm_up": {},
                }
                if {"vision_crops", "economy_crops"} & set(chosen):
                    entry["crops_legibility"] = crops_legibility(papers[0], model)
                # Before this server has marked anything with the model, the estimate rests on its
                # priors; a trial of two papers on the vision lane and the cascade measures the
                # replies' length and the unsure share, as a school's first papers would.
                # The vision lane's trial serves every lane but the cascade (each sends the pages or
                # the crops to the model), so a run of some lanes estimates as the full run does.
                trials = (["vision"] if set(chosen) - {"cascade"} else []) + (
                    ["cascade"] if "cascade" in chosen else []
                )
                for lane in trials:
                    entry["warm_up"][lane] = run_lane(
                        stack, warm_up, model, lane, sample=papers[0].pages, school=f"warm-up {lane} {model}"
                    )
                    print(model, "warm-up", lane, json.dumps(entry["warm_up"][lane]), flush=True)
                for lane in chosen:
                    trial = WARM_UP if lane == "cascade" else 0
                    entry["lanes"][lane] = run_lane(stack, papers, model, lane, trial=trial)
                    print(model, lane, json.dumps(entry["lanes"][lane]), flush=True)
                results[model] = entry
        finally:
            stack.close()
    ratios = [
        lane["ratio"]
        for model in profile["models"]
        for lane in results[model]["lanes"].values()
        if lane.get("ratio") is not None
    ]
    cheapest = min(
        (
            (lane["actual_usd"], model, name)
            for model in profile["models"]
            for name, lane in results[model]["lanes"].items()
            if "actual_usd" in lane and (lane_legibility(results[model], name) or 0) >= LEGIBLE
        ),
        default=None,
    )
    results["worst_ratio_off"] = round(max(abs(r - 1) for r in ratios), 3) if ratios else None
    results["ratio_target_met"] = bool(ratios) and all(abs(r - 1) <= TARGET_RATIO for r in ratios)
    # the cascade's estimate as the exam shows it once the trial is marked and the rest read offline
    after_read = [
        lane.get("ratio_after_offline_read") or lane["ratio"]
        for model in profile["models"]
        for lane in results[model]["lanes"].values()
        if lane.get("ratio") is not None
    ]
    results["worst_ratio_off_cascade_after_offline_read"] = (
        round(max(abs(r - 1) for r in after_read), 3) if after_read else None
    )
    results["ratio_target_met_cascade_after_offline_read"] = bool(after_read) and all(
        abs(r - 1) <= TARGET_RATIO for r in after_read
    )
    results["cheapest_legible"] = (
        {"usd_per_class": round(cheapest[0], 4), "model": cheapest[1], "lane": cheapest[2]} if cheapest else None
    )
    results["class_usd_target_met"] = cheapest is not None and cheapest[0] <= TARGET_CLASS_USD
    return results


def lane_legibility(entry: dict[str, Any], lane: str) -> float | None:
    """The OCR recall of what a lane sends: the crops' image on vision_crops, else the pages."""
    if lane in ("vision_crops", "economy_crops"):
        return (entry.get("crops_legibility") or {}).get("ocr_recall")
    return entry["legibility"]["ocr_recall"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--model", action="append", help="only this model (repeat for more)")
    parser.add_argument("--lane", action="append", choices=sorted(LANES), help="only this lane (repeat)")
    args = parser.parse_args()
    results = run(args.profile, args.model, args.lane)
    print(json.dumps(results, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
