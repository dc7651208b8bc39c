"""bench.offline keeps working: generated papers, read and marked against their known truth."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.handwriting import answer_key, make_paper
from bench.school_papers import choose_hand, make_school_paper, perturb_strokes, perturbed

ROOT = Path(__file__).resolve().parent.parent


def test_generated_papers_carry_their_truth_and_are_the_same_every_run():
    paper = make_paper(3)
    assert paper.pages == make_paper(3).pages  # seeded: a benchmark run can be repeated
    key = answer_key(paper)
    assert [q["id"] for q in key["questions"]] == [w.question.id for w in paper.answers]
    for written in paper.answers:
        forms = (written.question.answer, *[a for a in written.question.accepted if a])
        assert (written.text in forms) == written.correct


def test_moved_strokes_each_move_on_their_own_and_keep_their_ink():
    glyph = Image.new("L", (120, 80), 0)
    draw = ImageDraw.Draw(glyph)
    draw.line((20, 30, 100, 30), fill=255, width=4)  # an '=': two strokes
    draw.line((20, 50, 100, 50), fill=255, width=4)
    assert np.array_equal(np.asarray(perturb_strokes(glyph, 0, 0, random.Random(1))), np.asarray(glyph))
    moved = np.asarray(perturb_strokes(glyph, 3.0, 0.08, random.Random(1))).astype(float)
    ink = np.asarray(glyph).astype(float)
    assert not np.array_equal(moved, ink)
    assert abs(moved.sum() - ink.sum()) < 0.1 * ink.sum()  # moved and turned, not lost
    ys, xs = np.nonzero(moved)
    weight = moved[ys, xs]
    centres = [
        np.array([np.average(xs[half], weights=weight[half]), np.average(ys[half], weights=weight[half])])
        for half in (ys < 40, ys >= 40)
    ]
    shifts = [centres[0] - (60, 30), centres[1] - (60, 50)]
    assert np.linalg.norm(shifts[0] - shifts[1]) > 0.5  # each stroke its own way, not the glyph as one


def test_some_pupils_have_every_stroke_moved_and_their_papers_are_the_same_every_run():
    hand = choose_hand(random.Random(5), "scan")
    hands = [perturbed(hand, f"{seed}/strokes") for seed in range(20)]
    assert any(h.shift for h in hands) and any(h is hand for h in hands)  # the rest keep their hand as it was
    paper = make_school_paper(20400)
    assert paper.strokes_moved and paper.hand_font.endswith("+strokes moved")
    assert paper.pages == make_school_paper(20400).pages
    assert not make_school_paper(20402).strokes_moved  # a pupil who writes as drawn


def run_bench(module: str, *args: str) -> dict:
    """Run a benchmark as a user would; its last line, one JSON object."""
    run = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_offline_benchmark_prints_both_readings_and_its_own_layout_as_json():
    figures = run_bench(
        "bench.offline", "--papers", "1", "--held-out-seed", "20006", "--tuning-papers", "0", "--own-layout-papers", "1"
    )
    assert figures["papers"] == 1 and figures["seed"] == 20006 and figures["pages"] >= 1
    for reading in ("without_template", "with_template"):
        assert figures[reading]["questions"] > 0 and 0 <= figures[reading]["confident_share"] <= 1
        assert "kind:calc_row" in figures[reading]["by_group"] or "kind:fill" in figures[reading]["by_group"]
        assert figures[reading]["cpu_seconds_per_page"] > 0 and figures[reading]["targets_met"] in (True, False)
    assert figures["with_template"]["papers_aligned_share"] == 1.0
    assert figures["ocr_peak_memory_mb"] > 50  # the OCR engine's models are in this process
    own = figures["own_layout"]
    assert own["questions"] == len(make_paper(7000).answers)
    for share in ("confident_share", "accuracy_on_confident", "silently_wrong_share"):
        assert 0 <= own[share] <= 1
    assert 0 < own["vision_tokens_cascade"] < own["vision_tokens_all_pages"] or own["vision_tokens_cascade"] == 0
