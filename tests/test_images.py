import io
import math

import numpy as np
import pytest
from PIL import Image

from bench.pages import exam_sheet, jpeg, phone_photo
from shared.images import PageRejected, cheapest_scale, greyscale, inspect_page, normalise_page, sheet_box
from shared.refusals import RefusalKind
from shared.spending.costs import image_tokens, tile_scheme_size
from tests.helpers import page_bytes


def test_a_page_header_is_read_and_the_stream_rewound():
    stream = io.BytesIO(page_bytes(size=(800, 600), fmt="PNG"))
    header = inspect_page(stream, max_pixels=10_000_000)
    assert (header.format, header.width, header.height, header.content_type) == ("PNG", 800, 600, "image/png")
    assert stream.tell() == 0


def test_a_text_file_is_refused_as_unsupported():
    with pytest.raises(PageRejected) as refused:
        inspect_page(io.BytesIO(b"%PDF-1.4 not an image"), max_pixels=10_000_000)
    assert refused.value.kind == RefusalKind.unsupported


def test_a_gif_is_outside_the_allow_list():
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "GIF")
    with pytest.raises(PageRejected):
        inspect_page(io.BytesIO(out.getvalue()), max_pixels=10_000_000)


def test_too_many_pixels_is_refused_before_decoding():
    with pytest.raises(PageRejected) as refused:
        inspect_page(io.BytesIO(page_bytes(size=(4000, 3000), fmt="PNG")), max_pixels=1_000_000)
    assert refused.value.kind == RefusalKind.too_large


def test_a_rotated_phone_photo_arrives_upright_cut_to_the_sheet():
    page = normalise_page(phone_photo(seed=1), "gpt-4o", "high")
    with Image.open(io.BytesIO(page.jpeg)) as result:
        assert result.format == "JPEG" and result.mode == "L"
    assert 1.25 < page.height / page.width < 1.6  # an upright A4 sheet, the desk cut away
    assert image_tokens("gpt-4o", page.width, page.height) < image_tokens("gpt-4o", 4032, 3024)


def test_an_a4_sheet_costs_two_tiles_instead_of_six():
    page = normalise_page(jpeg(exam_sheet(1240, 1754, seed=5)), "gpt-4o", "high")
    assert image_tokens("gpt-4o", 1240, 1754) == 1105  # what the provider charges for the original
    assert image_tokens("gpt-4o", page.width, page.height) == 425
    assert page.width == 512  # the tiles it pays for are filled, not wasted


def test_a_small_page_is_not_enlarged():
    page = normalise_page(page_bytes(size=(600, 800)), "gpt-4o", "high")
    assert page.width <= 600 and page.height <= 800


def test_a_blank_page_is_kept_whole_at_the_providers_size():
    blank = io.BytesIO()
    Image.new("RGB", (1240, 1754), "white").save(blank, "JPEG")
    page = normalise_page(blank.getvalue(), "gpt-4o", "high")
    assert (page.width, page.height) == tile_scheme_size(1240, 1754)


@pytest.mark.parametrize(
    ("model", "size", "min_scale", "expected_units"),
    [
        ("gpt-4o", (1000, 1400), 0.45, (1, 2)),  # 450x630 -> fill one column of tiles: 512 wide
        ("gpt-4o", (1000, 1400), 0.60, (2, 2)),
        ("gpt-4.1-mini", (1000, 1400), 0.45, (15, 20)),  # 32px patches, filled
    ],
)
def test_the_cheapest_scale_fills_the_tiles_it_pays_for(model, size, min_scale, expected_units):
    unit = 32 if model == "gpt-4.1-mini" else 512
    scale = cheapest_scale(model, "high", *size, min_scale)
    assert scale >= min_scale
    cols, rows = (math.ceil(size[0] * scale / unit - 1e-9), math.ceil(size[1] * scale / unit - 1e-9))
    assert (cols, rows) == expected_units


def test_a_mismeasured_page_never_shrinks_below_a_share_of_the_providers_size():
    limit = tile_scheme_size(1240, 1754)[0] / 1240
    assert cheapest_scale("gpt-4o", "high", 1240, 1754, min_scale=0.01) >= limit * 0.4


@pytest.mark.parametrize("turn", [0, 90, 180, 270])
def test_a_shadow_across_a_scan_is_not_mistaken_for_a_desk(turn):
    sheet = exam_sheet(1240, 1754, seed=3)
    shadow = Image.linear_gradient("L").rotate(turn).resize(sheet.size).point(lambda v: 255 - v // 2)
    shaded = Image.composite(sheet, Image.new("RGB", sheet.size, (0, 0, 0)), shadow)
    assert sheet_box(shaded.convert("L")) is None  # the dark half is paper with writing on it
    photo = Image.open(io.BytesIO(phone_photo(seed=1)))
    from PIL import ImageOps

    assert sheet_box(ImageOps.exif_transpose(photo).convert("L")) is not None  # a desk all round


def _page_with_a_line_of_writing(mode: str) -> Image.Image:
    """A white A4-ish page with one dark line across it, in `mode`."""
    # ink a scanner's dark grey (40 of 255), as real scans are, not pure black
    page = Image.open(io.BytesIO(page_bytes(size=(1240, 1754), fmt="PNG"))).convert("L").point(lambda v: max(v, 40))
    if mode == "I;16":
        values = np.asarray(page, dtype=np.uint16) * 257  # the same page at 16 bits
        return Image.fromarray(values)
    if mode == "RGBA":
        transparent = page.convert("RGBA")
        transparent.putalpha(page.point(lambda v: 255 - v))  # paper transparent, ink opaque black
        return Image.merge("RGBA", (*Image.new("RGB", page.size, "black").split(), transparent.split()[3]))
    return page.convert("RGB").convert(mode)


@pytest.mark.parametrize("mode", ["I;16", "P", "CMYK", "RGBA"])
def test_a_page_in_any_colour_mode_keeps_its_writing(mode):
    image = _page_with_a_line_of_writing(mode)
    grey = greyscale(image)
    values = np.asarray(grey)
    # paper stays light and the writing dark: nothing clipped to white, nothing turned black
    assert grey.mode == "L" and np.median(values) > 200 and values.min() < 60, (mode, values.min(), np.median(values))
    out = io.BytesIO()
    image.save(out, "PNG" if mode != "CMYK" else "TIFF")
    plain = normalise_page(page_bytes(size=(1240, 1754), fmt="PNG"), "gpt-4o", "high")
    page = normalise_page(out.getvalue(), "gpt-4o", "high")
    # cropped to the same writing as the 8-bit page, not sent as an empty sliver or a whole blank page
    assert (
        abs(page.width - plain.width) <= 0.05 * plain.width and abs(page.height - plain.height) <= 0.05 * plain.height
    )


def test_a_sixteen_bit_png_is_clipped_to_white_by_a_plain_conversion():
    """Why greyscale() exists: Pillow's own conversion of this page loses every mark."""
    image = _page_with_a_line_of_writing("I;16")
    assert np.asarray(image.convert("L")).min() == 255
    assert np.asarray(greyscale(image)).min() < 60


def test_an_image_too_small_to_be_a_page_is_refused():
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, "PNG")
    with pytest.raises(PageRejected) as refused:
        inspect_page(io.BytesIO(out.getvalue()), max_pixels=10_000_000)
    assert refused.value.kind == RefusalKind.invalid and "too small" in refused.value.reason
