"""Every accepted page format, PDFs split into pages, and every refused input named and not stored."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from api.errors import refusal_status
from shared.intake.submission import PageError, UploadedPage, check_pages
from tests.helpers import create_exam, page_bytes, stored_objects


def image_bytes(fmt: str, size=(600, 800)) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(page_bytes(size=size))).save(out, fmt)
    return out.getvalue()


def pdf_bytes(pages: int) -> bytes:
    sheets = [Image.open(io.BytesIO(page_bytes(size=(620, 877)))).convert("RGB") for _ in range(pages)]
    out = io.BytesIO()
    sheets[0].save(out, "PDF", save_all=True, append_images=sheets[1:], resolution=75)
    return out.getvalue()


def post(client, auth, exam, files):
    return client.post(
        f"/v1/exams/{exam['id']}/papers",
        headers=auth("A"),
        data={"student_ref": "s-fmt", "pages": [(io.BytesIO(data), name) for name, data in files]},
    )


@pytest.mark.parametrize(
    ("fmt", "name"), [("JPEG", "a.jpg"), ("PNG", "a.png"), ("WEBP", "a.webp"), ("TIFF", "a.tif"), ("HEIF", "a.heic")]
)
def test_each_image_format_is_one_page(client, auth, fmt, name):
    exam = create_exam(client, auth("A"))
    reply = post(client, auth, exam, [(name, image_bytes(fmt))])
    assert reply.status_code == 202, reply.json
    assert [(p["number"], p["format"]) for p in reply.json["pages"]] == [(1, fmt)]


def test_a_two_page_pdf_becomes_two_pages_after_a_photo(client, auth):
    exam = create_exam(client, auth("A"))
    reply = post(client, auth, exam, [("cover.jpg", image_bytes("JPEG")), ("scan.pdf", pdf_bytes(2))])
    assert reply.status_code == 202, reply.json
    pages = reply.json["pages"]
    assert [p["number"] for p in pages] == [1, 2, 3]
    assert pages[1]["format"] == "JPEG" and abs(pages[1]["width"] - 620 / 75 * 150) <= 1  # rendered at 150 dpi


def truncated_jpeg() -> bytes:
    data = image_bytes("JPEG")
    return data[: len(data) // 2]


def bomb_png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(out, "PNG")  # 144 Mpx of nothing: a few hundred kB
    return out.getvalue()


def thumbnail() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, "PNG")
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (50, 50)).save(out, "GIF")
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("broken.jpg", truncated_jpeg(), 422),
        ("bomb.png", bomb_png(), 413),
        ("anim.gif", gif(), 415),
        ("notes.txt", b"just some words", 415),
        ("broken.pdf", b"%PDF-1.7 this is not a real pdf", 422),
        ("long.pdf", pdf_bytes(21), 413),
        ("tiny.png", thumbnail(), 422),
    ],
)
def test_refused_inputs_are_named_and_nothing_is_stored(client, auth, app, settings, name, data, status):
    exam = create_exam(client, auth("A"))
    reply = post(client, auth, exam, [("ok.jpg", image_bytes("JPEG")), (name, data)])
    assert reply.status_code == status, reply.json
    assert reply.json["error"]["details"]["file"] == name and name in reply.json["error"]["message"]
    assert stored_objects(app, settings, exam) == 0


def test_a_file_over_the_size_limit_is_413():
    with pytest.raises(PageError) as refused:
        check_pages([UploadedPage(io.BytesIO(b"x" * 2000), "huge.jpg")], max_bytes=1000, max_pixels=10**7, max_pages=20)
    assert refusal_status(refused.value.kind) == 413 and "huge.jpg" in str(refused.value)


def test_the_same_idempotency_key_and_body_return_the_first_paper(client, auth, app):
    from sqlalchemy import func, select

    from shared.models import Paper

    exam = create_exam(client, auth("A"))
    data = image_bytes("JPEG")

    def send(key, content=data, student="s-idem"):
        return client.post(
            f"/v1/exams/{exam['id']}/papers",
            headers={**auth("A"), "Idempotency-Key": key},
            data={"student_ref": student, "pages": [(io.BytesIO(content), "p.jpg")]},
        )

    first, again = send("k-1"), send("k-1")
    assert first.status_code == again.status_code == 202
    assert again.json["id"] == first.json["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = send("k-1", student="someone else")
    assert other.status_code == 409 and other.json["error"]["code"] == "idempotency_conflict"
    with app.extensions["markq"].sessions() as session:
        assert session.scalar(select(func.count()).select_from(Paper).where(Paper.exam_id == exam["id"])) == 1
    # a failed request releases its key: the corrected retry goes through under the same key
    assert send("k-2", content=b"not an image").status_code == 415
    assert send("k-2").status_code == 202
