"""A blank paper derived from students' papers of one exam, where the teacher gave none."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter

from bench.school_papers import make_school_paper
from shared.grading.answer_key import AnswerKey
from shared.grading.offline import mark_readings
from shared.grading.reader.derive import CannotDerive, derive_blank
from shared.grading.reader.reading import AnswerReading
from shared.grading.reader.template import match, read_template, register
from shared.images import ink_mask

SEED = 20011  # a tuning-seed exam: two pages, every kind of question


def _mask(image: Image.Image, widen: int = 0) -> np.ndarray:
    mask = ink_mask(image)
    if widen:
        mask = mask.filter(ImageFilter.MaxFilter(2 * widen + 1))
    return np.asarray(mask) > 0


def test_the_print_pupils_share_is_the_blank_paper_and_their_writing_is_not():
    papers = [make_school_paper(SEED, student) for student in range(1, 9)]
    assert len({p.template_pages[0] for p in papers}) == 1  # one exam, eight pupils
    derived = derive_blank([p.pages for p in papers])
    assert len(derived) == len(papers[0].template_pages)

    key = AnswerKey.model_validate(papers[0].answer_key)
    given = read_template(papers[0].template_pages, key)
    found = read_template(derived, key)
    assert set(found.regions) == set(given.regions) == {q.id for q in key.questions}
    onto = [match(blank.image, page.image) for blank, page in zip(given.pages, found.pages, strict=True)]
    for qid, (index, box) in given.regions.items():  # each region where the blank paper puts it
        other_index, other = found.regions[qid]
        assert other_index == index and onto[index] is not None
        corners = np.float32([[box[:2], box[2:]]])
        (x0, y0), (x1, y1) = cv2.perspectiveTransform(corners, onto[index])[0]
        page = found.pages[index].image
        if box[2] == given.pages[index].image.width and other[2] == page.width:
            x1 = page.width  # both run on to their page's edge (a photo's page holds a strip of desk)
        assert max(abs(a - b) for a, b in zip((x0, y0, x1, y1), other, strict=True)) <= 0.01 * max(page.size), qid

    for index, page in enumerate(found.pages):  # the print kept, the pupils' writing left out
        blank = register(given.pages[index].image, page.image)
        assert blank is not None
        printed, derived_ink = _mask(blank, widen=2), _mask(page.image)
        print_kept = (_mask(blank) & _mask(page.image, widen=2)).sum() / _mask(blank).sum()
        not_print = (derived_ink & ~printed).sum() / derived_ink.sum()
        assert print_kept >= 0.97, print_kept
        assert not_print <= 0.02, not_print  # traces of what most pupils wrote alike


def test_too_few_papers_or_pages_that_do_not_align_are_refused():
    papers = [make_school_paper(SEED, student) for student in range(1, 4)]
    with pytest.raises(CannotDerive, match="at least 5 papers"):
        derive_blank([p.pages for p in papers])
    noise = io.BytesIO()
    Image.effect_noise((1200, 1700), 60).save(noise, "PNG")
    unrelated = [noise.getvalue()] * len(papers[0].pages)
    with pytest.raises(CannotDerive, match="could be aligned"):
        derive_blank([p.pages for p in papers] + [unrelated] * 3)


def test_with_a_derived_blank_paper_a_wrong_or_blank_verdict_is_never_sure():
    key = AnswerKey.model_validate(
        {"questions": [{"id": "1", "answer": "44", "points": 2}, {"id": "2", "answer": "9", "points": 2}]}
    )
    readings = {  # the 4's stroke that most pupils wrote alike was painted out with the print
        "1": AnswerReading("1", "read", "41", 0.97, agreeing=4),
        "2": AnswerReading("2", "read", "9", 0.99, agreeing=4),
    }
    given = mark_readings(readings, key, "math", "zh")
    derived = mark_readings(readings, key, "math", "zh", derived=True)
    assert not given["1"].is_correct and given["1"].confidence >= 0.9  # sure with a given blank paper
    assert not derived["1"].is_correct and derived["1"].confidence < 0.9  # a teacher looks
    assert derived["2"].is_correct and derived["2"].confidence == given["2"].confidence >= 0.9
