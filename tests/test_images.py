import io

import pytest
from PIL import Image

from shared.images import PageRejected, inspect_page, normalise_page
from tests.conftest import page_bytes


def test_a_page_header_is_read_and_the_stream_rewound():
    stream = io.BytesIO(page_bytes(size=(800, 600), fmt="PNG"))
    header = inspect_page(stream, max_pixels=10_000_000)
    assert (header.format, header.width, header.height, header.content_type) == ("PNG", 800, 600, "image/png")
    assert stream.tell() == 0


def test_a_text_file_is_refused_as_unsupported():
    with pytest.raises(PageRejected) as refused:
        inspect_page(io.BytesIO(b"%PDF-1.4 not an image"), max_pixels=10_000_000)
    assert refused.value.status == 415


def test_a_gif_is_outside_the_allow_list():
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "GIF")
    with pytest.raises(PageRejected):
        inspect_page(io.BytesIO(out.getvalue()), max_pixels=10_000_000)


def test_too_many_pixels_is_refused_before_decoding():
    with pytest.raises(PageRejected) as refused:
        inspect_page(io.BytesIO(page_bytes(size=(4000, 3000), fmt="PNG")), max_pixels=1_000_000)
    assert refused.value.status == 413


def test_normalising_turns_a_rotated_photo_upright_and_bounds_its_size():
    image = Image.new("RGB", (4032, 3024), "white")
    image.paste((0, 0, 0), (0, 0, 400, 100))  # a dark bar at the top-left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was rotated: display needs a 90 degree turn clockwise
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    page = normalise_page(out.getvalue(), "gpt-4o", "high")
    assert page.height > page.width  # upright portrait
    assert min(page.width, page.height) <= 768 and max(page.width, page.height) <= 2048
    with Image.open(io.BytesIO(page.jpeg)) as result:
        assert result.format == "JPEG" and result.mode == "RGB"
        assert result.getpixel((result.width - 5, 5))[0] < 60  # the bar is now at the top-right


def test_a_small_page_is_not_enlarged():
    page = normalise_page(page_bytes(size=(600, 800)), "gpt-4o", "high")
    assert (page.width, page.height) == (600, 800)
