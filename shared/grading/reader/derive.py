"""A blank paper derived from students' papers, for an exam whose blank paper was not given.

Every student's page carries the same print and different writing. Each page of the first papers
is aligned to the sharpest of them (`register`, as a student page is aligned to a template), and
ink that stands on most of the aligned pages is the print: the derived blank page is their
per-pixel median there, and white elsewhere. One pupil's writing is on one page only, so it drops
out; what most pupils wrote alike in one place can leave fragments, which is why several papers
are needed and why marks read with a derived blank paper never call a wrong answer sure.
"""

from __future__ import annotations

import io
from collections import Counter

import cv2
import numpy as np
from PIL import Image, ImageFilter

from shared.grading.reader.scanning import upright_sheet
from shared.grading.reader.template import register
from shared.images import INK_CONTRAST

MIN_PAPERS = 5  # fewer aligned pages cannot tell the right answer most pupils wrote from the print
PRINT_SHARE = 0.8  # ink on at least this share of the aligned pages is print (many pupils write the same right answer)
ALIGN_SLACK = 1  # px each page's ink is widened before the vote (alignment error)
SEED_SHARE = 1.0  # a print stroke stands somewhere on every page (wider votes kept traces of answers)


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
    """One page of the blank paper, in the pixels of the sharpest of the pupils' pages (a scan
    rather than a phone photo: the print is read from it to find the answer regions)."""
    sheets = [upright_sheet(data) for data in pages]
    reference = max(sheets, key=_sharpness)
    aligned = [reference]
    for sheet in sheets:
        if sheet is not reference and (page := register(sheet, reference)) is not None:
            aligned.append(page)
    if len(aligned) < MIN_PAPERS:
        raise CannotDerive(f"page {number}: only {len(aligned)} of {len(pages)} papers' pages could be aligned")
    grey = np.stack([np.asarray(page) for page in aligned])
    # ink without ink_mask's speck removal, which takes a thin printed minus sign with the specks:
    # the vote removes specks, which never stand in one place on most pages
    inked = np.stack([_dark(page.filter(ImageFilter.MinFilter(2 * ALIGN_SLACK + 1))) for page in aligned])
    median = np.median(grey, axis=0).astype(np.uint8)
    # and the pixel itself is ink on most pages: where the widened writing of several pupils meets,
    # their strokes rarely coincide, so the middle page there is paper (print's is ink)
    printed = _print(inked.mean(axis=0)) & _dark(Image.fromarray(median))
    blank = np.where(printed, median, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(blank).save(out, "PNG", optimize=False)
    return out.getvalue()


def _dark(flat: Image.Image) -> np.ndarray:
    """Where the flattened page is clearly darker than paper."""
    return np.asarray(flat) < 255 - INK_CONTRAST


def _sharpness(sheet: Image.Image) -> float:
    """The variance of the page's Laplacian: high for crisp print, low for a blurred photo."""
    return float(cv2.Laplacian(np.asarray(sheet), cv2.CV_64F).var())


def _print(share: np.ndarray) -> np.ndarray:
    """Print is where ink stands on PRINT_SHARE of the pages, in strokes that stand on every page
    somewhere (hysteresis): the right answer many pupils wrote overlaps on most pages in places,
    never on all of them, while a printed stroke crossed by one pupil's pen is kept whole."""
    candidate = (share >= PRINT_SHARE).astype(np.uint8)
    _count, labels = cv2.connectedComponents(candidate, connectivity=8)
    seeded = np.unique(labels[share >= SEED_SHARE])
    return np.isin(labels, seeded[seeded > 0])
