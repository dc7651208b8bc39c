"""A blank paper derived from students' papers, for an exam whose blank paper was not given.

Every student's page carries the same print and different writing. Each page of the first papers
is aligned to the first paper's page (`register`, as a student page is aligned to a template), and
ink that stands on most of the aligned pages is the print: the derived blank page is their
per-pixel median where most pages have ink there, and white elsewhere. One pupil's writing is on
one page only, so it drops out; what every pupil wrote in the same place (a printed-looking answer
that all got right, in the same hand) would not, which is why several papers are needed.
"""

from __future__ import annotations

import io
from collections import Counter

import cv2
import numpy as np
from PIL import Image, ImageFilter

from shared.grading.reader.scanning import upright_sheet
from shared.grading.reader.template import register
from shared.images import ink_mask

MIN_PAPERS = 5  # fewer aligned pages cannot tell the right answer most pupils wrote from the print
PRINT_SHARE = 0.8  # ink on at least this share of the aligned pages is print (many pupils write the same right answer)
ALIGN_SLACK = 1  # px each page's ink is widened before the vote (alignment error)


class CannotDerive(ValueError):
    """Too few papers, or too few of their pages align, to tell the print from the writing."""


def derive_blank(papers: list[list[bytes]]) -> list[bytes]:
    """The blank pages (PNG) of the papers' shared print. Papers whose page count is not the most
    common one are left out; CannotDerive when fewer than MIN_PAPERS pages align on some page."""
    if not papers:
        raise CannotDerive("no papers to derive the blank paper from")
    count, _n = Counter(len(pages) for pages in papers).most_common(1)[0]
    alike = [pages for pages in papers if len(pages) == count]
    if len(alike) < MIN_PAPERS:
        raise CannotDerive(f"at least {MIN_PAPERS} papers with the same number of pages are needed, {len(alike)} given")
    return [_blank_page([pages[index] for pages in alike], index + 1) for index in range(count)]


def _blank_page(pages: list[bytes], number: int) -> bytes:
    reference = upright_sheet(pages[0])
    aligned = [reference]
    for data in pages[1:]:
        if (page := register(upright_sheet(data), reference)) is not None:
            aligned.append(page)
    if len(aligned) < MIN_PAPERS:
        raise CannotDerive(f"page {number}: only {len(aligned)} of {len(pages)} papers' pages could be aligned")
    grey = np.stack([np.asarray(page) for page in aligned])
    inked = np.stack(
        [np.asarray(ink_mask(page).filter(ImageFilter.MaxFilter(2 * ALIGN_SLACK + 1))) > 0 for page in aligned]
    )
    printed = _print(inked.mean(axis=0))
    blank = np.where(printed, np.median(grey, axis=0), 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(blank).save(out, "PNG", optimize=False)
    return out.getvalue()


def _print(share: np.ndarray) -> np.ndarray:
    """Print is where ink stands on PRINT_SHARE of the pages, in strokes that stand on every page
    somewhere (hysteresis): the right answer many pupils wrote overlaps on most pages in places,
    never on all of them, while a printed stroke crossed by one pupil's pen is kept whole."""
    candidate = (share >= PRINT_SHARE).astype(np.uint8)
    _count, labels = cv2.connectedComponents(candidate, connectivity=8)
    seeded = np.unique(labels[share >= 1.0])
    return np.isin(labels, seeded[seeded > 0])
