"""The local OCR engine: RapidOCR, which runs PP-OCRv4 detection and recognition models (Chinese
and English) on the CPU through onnxruntime and ships those models inside its wheel, so it works
with no network and no key.

One engine per process, loaded on first use (about a second) and shared by the threads of that
process behind a lock: the ONNX sessions already use every core for one page, unless
MARKQ_OCR_THREADS says how many (with several OCR worker processes on one host, 1 each).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

ENGINE_NAME = "rapidocr-onnxruntime (PP-OCRv4)"


@dataclass(frozen=True)
class TextLine:
    """One line of text the detector found: its box (x0, y0, x1, y1) in image pixels."""

    box: tuple[int, int, int, int]
    text: str
    score: float
    # The detector's four corners (top-left, top-right, bottom-right, bottom-left): a tilted
    # page's lines come out tilted.
    quad: tuple[tuple[float, float], ...] = ()

    @property
    def angle(self) -> float:
        """The line's tilt in degrees, from its top edge (positive: falling to the right, as y grows down)."""
        if len(self.quad) < 2:
            return 0.0
        (x0, y0), (x1, y1) = self.quad[0], self.quad[1]
        return math.degrees(math.atan2(y1 - y0, x1 - x0)) if x1 > x0 else 0.0

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def centre_y(self) -> float:
        return (self.box[1] + self.box[3]) / 2


_lock = threading.Lock()
_engine: Any = None


def _get_engine() -> Any:
    global _engine
    if _engine is None:
        from rapidocr_onnxruntime import RapidOCR

        from shared.settings import get_settings

        threads = get_settings().ocr_threads
        _engine = RapidOCR(intra_op_num_threads=threads) if threads else RapidOCR()
    return _engine


def read_lines(image: Image.Image) -> list[TextLine]:
    """Every text line on the image, detected, turned upright where needed, and recognised."""
    pixels = np.asarray(image.convert("RGB"))
    with _lock:
        result, _elapsed = _get_engine()(pixels)
    lines = []
    for quad, text, score in result or []:
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        lines.append(
            TextLine(
                (int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1),
                str(text),
                float(score),
                tuple((float(x), float(y)) for x, y in quad),
            )
        )
    return lines


def recognise(image: Image.Image) -> tuple[str, float]:
    """Recognition only, for an image that holds one line of text: (text, mean score)."""
    pixels = np.asarray(image.convert("RGB"))
    with _lock:
        result, _elapsed = _get_engine()(pixels, use_det=False, use_cls=False, use_rec=True)
    if not result:
        return "", 0.0
    text, score = result[0]
    return str(text), float(score)
