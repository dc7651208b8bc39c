"""The local OCR engine: RapidOCR 3.x, which runs PP-OCRv6 detection and recognition models
(Chinese and English) on the CPU through onnxruntime and ships those models inside its wheel, so
it works with no network and no key.

One engine per process, loaded on first use (about a second) and shared by the threads of that
process behind a lock: the ONNX sessions already use every core for one page, unless
MARKQ_OCR_THREADS says how many (with several OCR worker processes on one host, 1 each).

Where only the older `rapidocr-onnxruntime` 1.4.4 is installed, it runs instead (PP-OCRv4 models;
bench.ocr_engines compares the two on bench.offline, and docs/architecture.md says why markq moved).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_LEGACY = importlib.util.find_spec("rapidocr") is None  # 1.4.4's package is rapidocr_onnxruntime
ENGINE_NAME = (
    "rapidocr-onnxruntime (PP-OCRv4)" if _LEGACY else f"rapidocr {importlib.metadata.version('rapidocr')} (PP-OCRv6)"
)


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


class _RapidOCR3:
    """rapidocr 3.x answering as 1.4.4 does: ([quad, text, score] a line, or [text, score] without
    detection, or None; elapsed seconds)."""

    def __init__(self, threads: int | None) -> None:
        import rapidocr

        # The models in the wheel, named: with none named it checks their hashes and downloads any
        # that differ. It needs a font only to draw results, which markq never does.
        models = Path(rapidocr.__file__).parent / "models"
        params: dict[str, Any] = {
            "Global.log_level": "error",  # not a warning for each image with no text
            "Det.model_path": str(models / "PP-OCRv6_det_small.onnx"),
            "Cls.model_path": str(models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"),
            "Rec.model_path": str(models / "PP-OCRv6_rec_small.onnx"),
        }
        if threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        self.ocr = rapidocr.RapidOCR(params=params)

    def __call__(
        self, pixels: np.ndarray, use_det: bool = True, use_cls: bool = True, use_rec: bool = True
    ) -> tuple[list[list[Any]] | None, float]:
        # every step named on every call: 3.x keeps a call's use_* for the calls after it
        out = self.ocr(pixels, use_det=use_det, use_cls=use_cls, use_rec=use_rec)
        elapsed = out.elapse or 0.0
        if not out.txts:
            return None, elapsed
        if not use_det:
            return [[text, score] for text, score in zip(out.txts, out.scores)], elapsed
        return [[box.tolist(), text, score] for box, text, score in zip(out.boxes, out.txts, out.scores)], elapsed


def _get_engine() -> Any:
    global _engine
    if _engine is None:
        from shared.settings import get_settings

        threads = get_settings().ocr_threads
        if _LEGACY:
            from rapidocr_onnxruntime import RapidOCR

            _engine = RapidOCR(intra_op_num_threads=threads) if threads else RapidOCR()
        else:
            _engine = _RapidOCR3(threads)
    return _engine


DETECTOR_SIDE = 736  # the detector scales an image whose short side is shorter up to this


def read_lines(image: Image.Image) -> list[TextLine]:
    """Every text line on the image, detected and recognised. The page is upright (its EXIF
    turn applied) and level when it gets here, so no line is turned round: the engine's line
    classifier turned whole handwritten rows half way round ('(1) cos60°=1/2' read as
    'V1=。09s0（1)'), losing the question's number.

    An image with a side under DETECTOR_SIDE (a question's region) is read on white paper
    around it, at its own size: the detector would scale it up until its short side is that
    long, a 110 x 640 px row to 736 x 4352, writing as tall as a page's made seven times taller
    and the detection some six times slower. The lines' boxes are in the image's pixels."""
    pixels = np.asarray(_on_paper(image.convert("RGB")))
    with _lock:
        result, _elapsed = _get_engine()(pixels, use_det=True, use_cls=False, use_rec=True)
    lines = []
    for quad, text, score in result or []:
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        lines.append(
            TextLine(
                (
                    max(0, int(min(xs))),
                    max(0, int(min(ys))),
                    min(image.width, int(max(xs)) + 1),
                    min(image.height, int(max(ys)) + 1),
                ),  # within the image, not the paper around it
                str(text),
                float(score),
                tuple((float(x), float(y)) for x, y in quad),
            )
        )
    return lines


def _on_paper(image: Image.Image) -> Image.Image:
    """The image at the top left of white paper at least DETECTOR_SIDE px each way (itself where
    it is as large)."""
    if min(image.size) >= DETECTOR_SIDE:
        return image
    paper = Image.new(image.mode, (max(image.width, DETECTOR_SIDE), max(image.height, DETECTOR_SIDE)), "white")
    paper.paste(image, (0, 0))
    return paper


def recognise(image: Image.Image) -> tuple[str, float]:
    """Recognition only, for an image that holds one line of text: (text, mean score)."""
    pixels = np.asarray(image.convert("RGB"))
    with _lock:
        result, _elapsed = _get_engine()(pixels, use_det=False, use_cls=False, use_rec=True)
    if not result:
        return "", 0.0
    text, score = result[0]
    return str(text), float(score)


def recognise_likely(
    image: Image.Image, texts: list[str] | Callable[[str], list[str]]
) -> tuple[str, float, dict[str, float | None]]:
    """`recognise`, and how likely the recogniser finds each of `texts` to be what the line says:
    P(text | image) under its CTC output, summed over every alignment of the text to the image's
    columns (the forward algorithm), so a text it would also have read another way keeps its share.
    `texts` may be made from what was read (the key put in place of the answer read, the print
    around it kept). A text with a character the recogniser does not know is None (not known)."""
    probs, decode, _column_width = _recognised_columns(image)
    text, score = decode(probs)[0] if _LEGACY else decode(probs)[0][0]
    likely: dict[str, float | None] = {}
    for said in texts(str(text)) if callable(texts) else texts:
        labels = [decode.dict.get(c, -1) for c in said]
        likely[said] = _ctc_probability(probs[0], labels) if said and min(labels) > 0 else None
    return str(text), float(score), likely


def _recognised_columns(image: Image.Image) -> tuple[np.ndarray, Any, float]:
    """The recogniser's per-column character distributions for a one-line image (1, columns,
    characters), its decoder, and how many of the image's pixels wide one column is."""
    pixels = np.asarray(image.convert("RGB"))
    with _lock:
        engine = _get_engine()
        if _LEGACY:
            img, _h, _w = engine.preprocess(engine.load_img(pixels))
            rec = engine.text_rec
        else:
            img, _record = engine.ocr.preprocess_img(engine.ocr.load_img(pixels))
            rec = engine.ocr._load_rec_model()  # the recogniser recognise() runs, loaded once
        _channels, height, width = rec.rec_image_shape[:3]
        ratio = max(width / height, img.shape[1] / img.shape[0])
        probs = rec.session(rec.resize_norm_img(img, ratio)[np.newaxis, :].astype(np.float32))
        probs = probs[0] if _LEGACY else probs  # 1.4.4's session answers a list of outputs
    # the input is `height` px high and `height * ratio` wide, the image filling its first
    # ceil(height * w / h) px (resize_norm_img), the rest padding
    filled = min(height * ratio, math.ceil(height * img.shape[1] / img.shape[0]))
    column = (height * ratio / probs.shape[1]) * (image.width / filled)
    return probs, rec.postprocess_op, column


def recognise_places(image: Image.Image) -> tuple[str, list[float]]:
    """`recognise`'s text for a one-line image, with where each of its characters stands: the x
    (image pixels) of the column the recogniser emitted it at (CTC's greedy decoding, as the
    engine's own: repeats merged, blanks dropped)."""
    probs, decode, column = _recognised_columns(image)
    best = probs[0].argmax(axis=1)
    chosen = np.ones(len(best), dtype=bool)
    chosen[1:] = best[1:] != best[:-1]
    chosen &= best != 0
    text, places = [], []
    for at in np.flatnonzero(chosen):
        char = decode.character[int(best[at])]
        text.append(char)
        places.append((float(at) + 0.5) * column)
    return "".join(text), places


def _ctc_probability(probs: np.ndarray, labels: list[int]) -> float:
    """P(labels) from a CTC model's per-column distributions (blank at 0), by the forward algorithm
    in log space."""
    if not labels or min(labels) < 1 or probs.shape[0] < len(labels):
        return 0.0
    extended = np.zeros(2 * len(labels) + 1, dtype=int)
    extended[1::2] = labels
    logp = np.log(np.maximum(probs[:, extended], 1e-30))
    # a label may skip the blank before it unless it repeats the label before
    skip = np.zeros(len(extended), dtype=bool)
    skip[3::2] = extended[3::2] != extended[1:-2:2]
    alpha = np.full(len(extended), -np.inf)
    alpha[0], alpha[1] = logp[0, 0], logp[0, 1]
    for step in range(1, probs.shape[0]):
        one = np.concatenate(([-np.inf], alpha[:-1]))
        two = np.where(skip, np.concatenate(([-np.inf, -np.inf], alpha[:-2])), -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, one), two) + logp[step]
    return float(np.exp(np.logaddexp(alpha[-1], alpha[-2])))
