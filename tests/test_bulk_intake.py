"""A class's ZIP: good papers created, bad files named, unsafe archives refused, re-runs idempotent."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.helpers import create_exam, page_bytes, stored_objects


def make_zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def send(client, auth, exam, archive: bytes, roster: bytes | None = None, class_label="3(2)"):
    data = {"archive": (io.BytesIO(archive), "class.zip"), "class_label": class_label}
    if roster is not None:
        data["roster"] = (io.BytesIO(roster), "roster.csv")
    return client.post(f"/v1/exams/{exam['id']}/bulk", headers=auth("A"), data=data)


@pytest.fixture
def class_zip():
    return make_zip(
        {
            "3(2)/S01/page2.jpg": page_bytes(),
            "3(2)/S01/page1.jpg": page_bytes(),
            "3(2)/S02/page1.jpg": page_bytes()[:3000],  # damaged
            "3(2)/S02/page2.jpg": page_bytes(),
            "3(2)/S03/scan.jpg": page_bytes(),
            "__MACOSX/3(2)/._S01": b"junk",
            ".DS_Store": b"junk",
        }
    )


def test_a_bulk_upload_with_one_bad_file_creates_every_good_paper_and_names_the_bad_file(client, auth, class_zip):
    exam = create_exam(client, auth("A"))
    reply = send(client, auth, exam, class_zip)
    assert reply.status_code == 200, reply.json
    assert [(p["student_ref"], p["pages"], p["class_label"]) for p in reply.json["created"]] == [
        ("S01", 2, "3(2)"),
        ("S03", 1, "3(2)"),
    ]
    assert [(r["file"], r["student_ref"], r["status"]) for r in reply.json["refused"]] == [
        ("3(2)/S02/page1.jpg", "S02", 422)
    ]
    paper = client.get(f"/v1/papers/{reply.json['created'][0]['paper_id']}", headers=auth("A")).json
    assert len(paper["pages"]) == 2


def test_sending_the_same_archive_again_creates_nothing_twice(client, auth, class_zip):
    exam = create_exam(client, auth("A"))
    first = send(client, auth, exam, class_zip).json
    again = send(client, auth, exam, class_zip).json
    assert again["created"] == []
    assert sorted(e["student_ref"] for e in again["existing"]) == ["S01", "S03"]
    papers = client.get(f"/v1/exams/{exam['id']}/papers", headers=auth("A")).json
    assert len(papers) == len(first["created"]) == 2


def test_student_page_names_and_a_roster(client, auth):
    exam = create_exam(client, auth("A"))
    by_name = send(
        client,
        auth,
        exam,
        make_zip(
            {
                "S10__2.jpg": page_bytes(),
                "S10__1.jpg": page_bytes(),
                "S11__1.png": page_bytes(fmt="PNG"),
                "loose.jpg": page_bytes(),
            }
        ),
    )
    assert [(p["student_ref"], p["pages"]) for p in by_name.json["created"]] == [("S10", 2), ("S11", 1)]
    assert [r["file"] for r in by_name.json["refused"]] == ["loose.jpg"]
    roster = "file,student_ref,class_label\nscans/a.jpg,S20,3(1)\nscans/b.jpg,S21,3(1)\n".encode()
    with_roster = send(
        client,
        auth,
        exam,
        make_zip({"scans/a.jpg": page_bytes(), "scans/b.jpg": page_bytes(), "scans/c.jpg": page_bytes()}),
        roster=roster,
    )
    assert [(p["student_ref"], p["class_label"]) for p in with_roster.json["created"]] == [
        ("S20", "3(1)"),
        ("S21", "3(1)"),
    ]
    assert [(r["file"], r["reason"]) for r in with_roster.json["refused"]] == [("scans/c.jpg", "not in the roster")]


def test_unsafe_entries_are_refused_one_by_one(client, auth, app, settings):
    exam = create_exam(client, auth("A"))
    bomb = b"\0" * (30 * 1024 * 1024)  # 30 MB of zeros compresses a thousandfold
    archive = make_zip(
        {
            "../evil/S01/p1.jpg": page_bytes(),
            "S02/inner.zip": make_zip({"x.jpg": page_bytes()}),
            "S03/p1.jpg": bomb,
            "S04/p1.jpg": page_bytes(),
        }
    )
    reply = send(client, auth, exam, archive)
    assert reply.status_code == 200, reply.json
    reasons = {r["file"]: (r["status"], r["reason"]) for r in reply.json["refused"]}
    assert "unsafe path" in reasons["../evil/S01/p1.jpg"][1]
    assert "archives inside" in reasons["S02/inner.zip"][1]
    assert reasons["S03/p1.jpg"][0] == 413
    assert [p["student_ref"] for p in reply.json["created"]] == ["S04"]


def test_archives_too_large_or_not_zips_are_refused_whole_and_nothing_is_stored(client, auth, app, settings):
    exam = create_exam(client, auth("A"))
    not_zip = send(client, auth, exam, b"PK but not really a zip")
    assert not_zip.status_code == 422 and not_zip.json["error"]["details"]["file"] == "class.zip"
    entries = {f"S{n:04d}/p1.jpg": b"x" for n in range(settings.bulk_max_entries + 1)}
    too_many = send(client, auth, exam, make_zip(entries, zipfile.ZIP_STORED))
    assert too_many.status_code == 413 and "more than" in too_many.json["error"]["message"]
    assert stored_objects(app, settings, exam) == 0


def test_an_entry_that_cannot_be_read_is_refused_by_name_and_the_rest_go_in(client, auth):
    """A damaged entry (its CRC does not match) and one marked encrypted are refused one by one."""
    exam = create_exam(client, auth("A"))
    good, damaged, locked = page_bytes("good"), page_bytes("damaged"), page_bytes("locked")
    archive = bytearray(
        make_zip({"S01/p1.jpg": good, "S02/p1.jpg": damaged, "S03/p1.jpg": locked}, compression=zipfile.ZIP_STORED)
    )
    middle = archive.index(damaged) + len(damaged) // 2
    archive[middle] ^= 0xFF  # one byte of S02's data changed: its CRC-32 no longer matches
    central = bytes(archive).index(b"PK\x01\x02")  # the central directory's first entry
    while not bytes(archive[central + 46 : central + 56]).startswith(b"S03/p1.jpg"):
        central = bytes(archive).index(b"PK\x01\x02", central + 4)
    archive[central + 8] |= 0x01  # S03's entry in the central directory: "encrypted" (a password)
    reply = send(client, auth, exam, bytes(archive))
    assert reply.status_code == 200, reply.json
    assert [p["student_ref"] for p in reply.json["created"]] == ["S01"]
    refused = {r["file"]: r["reason"] for r in reply.json["refused"]}
    assert set(refused) == {"S02/p1.jpg", "S03/p1.jpg"}, refused
    assert all(reason.startswith("cannot read this file in the archive") for reason in refused.values()), refused
