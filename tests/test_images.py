import io
import math

import pytest
from PIL import Image

from bench.pages import exam_sheet, jpeg, phone_photo
from shared.images import PageRejected, cheapest_scale, inspect_page, normalise_page, sheet_box
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
