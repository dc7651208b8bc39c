"""An exam's blank paper: stored once, read on the OCR queue, its answer regions served and corrected.

exams.template holds {"status": reading | ready | failed, "reason", "pages": [{"key", "width",
"height"}], "regions": {question id: {"page", "box"}}, "line_heights", "tilts"}, and "derived_from" (paper ids) where the blank paper was derived from
the first papers instead of given. The regions are in the pixels of the blank page as the reader
sees it (upright, flattened, at most 2000 px, levelled).
"""

from __future__ import annotations

import enum
import functools
import io
import json
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import flag_modified

from shared.grading.answer_key import AnswerKey
from shared.grading.reader.derive import MIN_PAPERS, CannotDerive, derive_blank
from shared.grading.reader.template import Template, read_template
from shared.images import PageHeader
from shared.intake.submission import UploadedPage
from shared.models import Exam, Paper, PaperStatus
from shared.storage import Storage, template_page_key


class TemplateStatus(enum.StrEnum):
    reading = "reading"
    ready = "ready"
    failed = "failed"


class InvalidRegions(ValueError):
    """A correction names a question the key does not have, or a box off its page."""


def store_pages(storage: Storage, exam: Exam, pages: list[UploadedPage], headers: list[PageHeader]) -> None:
    """Keep the blank pages and mark the template as being read (the caller commits, then queues)."""
    stored = []
    for number, (page, header) in enumerate(zip(pages, headers, strict=True), start=1):
        key = template_page_key(exam.school_id, exam.id, number)
        storage.put(key, page.stream, header.content_type)
        stored.append({"key": key, "width": header.width, "height": header.height})
    exam.template = {"status": TemplateStatus.reading, "reason": None, "pages": stored, "regions": {}}


DERIVE_FROM = 8  # papers a blank paper is derived from: enough that a right answer most wrote drops out
STORED = (PaperStatus.queued, PaperStatus.processing, PaperStatus.graded, PaperStatus.needs_review, PaperStatus.paused)


class TooFewPapers(ValueError):
    """Fewer papers than a blank paper can be derived from."""


def derivable(session: Session, exam: Exam) -> list[Paper]:
    """The exam's first papers with every page stored, to derive its blank paper from."""
    return list(
        session.scalars(
            select(Paper)
            .where(Paper.exam_id == exam.id, Paper.status.in_(STORED))
            .order_by(Paper.created_at, Paper.id)
            .options(selectinload(Paper.pages))
            .limit(DERIVE_FROM)
        )
    )


def start_deriving(session: Session, exam: Exam) -> None:
    """Mark the template as being derived from the exam's first papers (the caller commits, then
    queues derive_stored); TooFewPapers when there are not enough."""
    papers = derivable(session, exam)
    if len(papers) < MIN_PAPERS:
        raise TooFewPapers(
            f"a blank paper is derived from at least {MIN_PAPERS} papers of the exam; it has {len(papers)} "
            "stored: upload more papers, or give the blank paper"
        )
    exam.template = {
        "status": TemplateStatus.reading,
        "reason": None,
        "pages": [],
        "regions": {},
        "derived_from": [str(paper.id) for paper in papers],
    }


def derive_stored(session: Session, storage: Storage, exam: Exam) -> TemplateStatus:
    """The blank paper derived from the papers start_deriving chose (their print is what they
    share), stored as the template's pages and read like a given one; failed, with the reason,
    when too few of their pages align."""
    chosen = exam.template["derived_from"]
    papers = {str(paper.id): paper for paper in derivable(session, exam)}
    stored = [papers[pid] for pid in chosen if pid in papers]  # a paper deleted since is left out
    try:
        blank = derive_blank([[storage.get(page.original_key) for page in paper.pages] for paper in stored])
    except CannotDerive as exc:
        exam.template = {**exam.template, "status": TemplateStatus.failed, "reason": f"could not derive: {exc}"}
        return TemplateStatus.failed
    pages = []
    for number, png in enumerate(blank, start=1):
        key = template_page_key(exam.school_id, exam.id, number)
        storage.put(key, io.BytesIO(png), "image/png")
        with Image.open(io.BytesIO(png)) as image:
            pages.append({"key": key, "width": image.width, "height": image.height})
    exam.template = {**exam.template, "pages": pages}
    return read_stored(session, storage, exam)


def read_stored(session: Session, storage: Storage, exam: Exam) -> TemplateStatus:
    """Read the stored blank pages and keep each question's region; failed when none is found."""
    template = dict(exam.template or {})
    key = AnswerKey.model_validate(exam.answer_key)
    found = read_template([storage.get(page["key"]) for page in template["pages"]], key)
    missing = [q.id for q in key.questions if q.id not in found.regions]
    template.update(found.to_json())
    if not found.regions:
        template.update(status=TemplateStatus.failed, reason="no question number of the key was found on the pages")
    else:
        template.update(
            status=TemplateStatus.ready,
            reason=(
                f"question(s) {', '.join(missing)} not found on the blank paper: give their regions"
                if missing
                else None
            ),
        )
    exam.template = template
    flag_modified(exam, "template")
    return TemplateStatus(template["status"])


def usable(exam: Exam, storage: Storage) -> Template | None:
    """The exam's template, ready to read papers with; None without one (or not read yet)."""
    if not exam.template or exam.template.get("status") != TemplateStatus.ready:
        return None
    return _built(storage, json.dumps(exam.template, sort_keys=True))


# An exam's papers come one after another: its blank pages are fetched and prepared once per
# process, not once per paper. Keyed by the stored template itself, so a correction is seen at
# once; two entries (about 6 MB a page: the image and its ink) cover the exams a worker has in hand.
@functools.lru_cache(maxsize=2)
def _built(storage: Storage, stored: str) -> Template:
    template = json.loads(stored)
    return Template.from_stored([storage.get(page["key"]) for page in template["pages"]], template)


def correct_regions(exam: Exam, regions: dict[str, Any]) -> None:
    """A teacher's corrections: {question id: {"page": n, "box": [x0, y0, x1, y1]}}."""
    if not exam.template or exam.template.get("status") != TemplateStatus.ready:
        raise InvalidRegions("the blank paper has not been read yet")
    ids = {q.id for q in AnswerKey.model_validate(exam.answer_key).questions}
    pages = exam.template["pages"]
    template = dict(exam.template)
    for qid, region in regions.items():
        if qid not in ids:
            raise InvalidRegions(f"question {qid!r} is not in the answer key")
        page, box = region.get("page"), region.get("box")
        if not isinstance(page, int) or not 1 <= page <= len(pages):
            raise InvalidRegions(f"question {qid}: page must be 1 to {len(pages)}")
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, int) and v >= 0 for v in box)
            and box[0] < box[2]
            and box[1] < box[3]
        ):
            raise InvalidRegions(f"question {qid}: box must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
        template["regions"] = {**template["regions"], qid: {"page": page, "box": box}}
    exam.template = template


class NoPreview(LookupError):
    """The blank paper is not read yet, or has no such page."""


PREVIEW_COLOUR = (220, 30, 30)


def preview(storage: Storage, exam: Exam, number: int, *, drawn: bool = True) -> bytes:
    """Page `number` of the blank paper as the reader sees it, each question's answer region drawn
    on it with its id: what a teacher checks before the papers are read (PNG). Without `drawn`,
    the page alone (the web app draws the regions over it, to be dragged into place)."""
    template = usable(exam, storage)
    if template is None or not 1 <= number <= len(template.pages):
        raise NoPreview(number)
    page = template.pages[number - 1].image.convert("RGB")
    if not drawn:
        out = io.BytesIO()
        page.save(out, "PNG", optimize=True)
        return out.getvalue()
    draw = ImageDraw.Draw(page)
    size = max(14, template.line_heights[number - 1] * 2 // 3)
    font = ImageFont.load_default(size=size)
    for qid, region in sorted(exam.template["regions"].items()):
        if region["page"] != number:
            continue
        x0, y0, x1, y1 = region["box"]
        draw.rectangle((x0, y0, x1, y1), outline=PREVIEW_COLOUR, width=3)
        width = draw.textlength(qid, font=font)
        at = (x1 - width - 8, y0 + 4)  # top right, clear of the printed number
        label = draw.textbbox(at, qid, font=font)
        draw.rectangle((label[0] - 3, label[1] - 2, label[2] + 3, label[3] + 2), fill=PREVIEW_COLOUR)
        draw.text(at, qid, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    page.save(out, "PNG", optimize=True)
    return out.getvalue()


def template_view(exam: Exam) -> dict[str, Any]:
    template = exam.template or {}
    ready = template.get("status") == TemplateStatus.ready
    sizes = template.get("sizes", [])
    return {
        "status": template.get("status"),
        "reason": template.get("reason"),
        "pages": [
            {
                "number": n,
                "width": p["width"],
                "height": p["height"],
                "read_size": sizes[n - 1] if n <= len(sizes) else None,
                "preview_url": f"/v1/exams/{exam.id}/template/pages/{n}/preview" if ready else None,
            }
            for n, p in enumerate(template.get("pages", []), start=1)
        ],
        "regions": template.get("regions", {}),
        "derived_from": template.get("derived_from"),
    }
