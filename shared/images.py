"""Page images: check uploads cheaply, and normalise pages for the vision model with Pillow."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from shared.costs import model_card, patch_scheme_size, tile_scheme_size

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF")
JPEG_QUALITY = 85


class PageRejected(ValueError):
    """An uploaded page that cannot be used, with a reason a teacher can act on."""

    def __init__(self, reason: str, status: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class PageHeader:
    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return Image.MIME.get(self.format, "application/octet-stream")


def inspect_page(stream: BinaryIO, max_pixels: int) -> PageHeader:
    """Read only the header of an uploaded page: its format (allow-listed) and size (bounded).

    The stream is left at its start so it can be stored unchanged.
    """
    start = stream.tell()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream, formats=ACCEPTED_FORMATS) as image:
                header = PageHeader(image.format or "", image.width, image.height)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise PageRejected("image has too many pixels (decompression bomb?)", 413) from exc
        raise PageRejected(
            f"not a readable image; accepted formats are {', '.join(ACCEPTED_FORMATS)}", 415
        ) from exc
    finally:
        stream.seek(start)
    if header.width * header.height > max_pixels:
        raise PageRejected(
            f"image is {header.width}x{header.height}, more than {max_pixels} pixels", 413
        )
    return header


def target_size(model: str, detail: str, width: int, height: int) -> tuple[int, int]:
    """The largest size the model will actually look at: anything bigger is wasted bytes."""
    card = model_card(model)
    if card.scheme == "patch":
        return patch_scheme_size(width, height)
    if detail == "low":
        scale = min(1.0, 512 / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))
    return tile_scheme_size(width, height)


@dataclass(frozen=True)
class NormalisedPage:
    jpeg: bytes
    width: int
    height: int


def normalise_page(data: bytes, model: str, detail: str) -> NormalisedPage:
    """Upright (EXIF orientation), RGB, no larger than the model reads, JPEG."""
    with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        upright = ImageOps.exif_transpose(image)
        rgb = upright.convert("RGB")
    size = target_size(model, detail, rgb.width, rgb.height)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return NormalisedPage(out.getvalue(), rgb.width, rgb.height)
