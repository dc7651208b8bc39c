"""Multi-page PDFs (scanners) become one page image each, rendered with pypdfium2."""

from __future__ import annotations

import io
from typing import BinaryIO

import pypdfium2

from shared.images import PageRejected
from shared.refusals import RefusalKind


def is_pdf(stream: BinaryIO) -> bool:
    start = stream.tell()
    head = stream.read(5)
    stream.seek(start)
    return head == b"%PDF-"


def render_pdf(stream: BinaryIO, *, dpi: int, max_pages: int, max_pixels: int) -> list[bytes]:
    """Each page as a JPEG at `dpi`; refuses a PDF with more than `max_pages` pages or pages that
    would render to more than `max_pixels`."""
    try:
        document = pypdfium2.PdfDocument(stream.read())
    except pypdfium2.PdfiumError as exc:
        raise PageRejected(f"the PDF is damaged and does not open ({exc})", RefusalKind.invalid) from exc
    try:
        count = len(document)
        if count == 0:
            raise PageRejected("the PDF has no pages", RefusalKind.invalid)
        if count > max_pages:
            raise PageRejected(
                f"the PDF has {count} pages, more than the {max_pages} a paper may have", RefusalKind.too_large
            )
        pages = []
        for number in range(count):
            page = document[number]
            width, height = page.get_size()  # points, 1/72 inch
            if width * height * (dpi / 72) ** 2 > max_pixels:
                raise PageRejected(
                    f"PDF page {number + 1} would render to more than {max_pixels} pixels", RefusalKind.too_large
                )
            image = page.render(scale=dpi / 72).to_pil().convert("RGB")
            out = io.BytesIO()
            image.save(out, "JPEG", quality=90)
            pages.append(out.getvalue())
            page.close()
        return pages
    finally:
        document.close()
