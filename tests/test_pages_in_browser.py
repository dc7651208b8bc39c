"""The teacher's report page and a student's feedback sheet, rendered by a real headless Chromium."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from urllib.parse import urljoin

import httpx
import pytest
from PIL import Image

from tests.helpers import (
    ANSWERS,
    KEY,
    loopback_call,
    make_exam,
    page_bytes,
    verdict,
    wait_for,
    wait_until_no_paper_is_in_flight,
)

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1100,1400",
]


def chromium(tmp_path, *args: str) -> str:
    assert CHROMIUM, "chromium is not installed (make test installs it: scripts/ensure-services.sh)"
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def assert_not_blank(png) -> None:
    with Image.open(png) as shot:
        grey = shot.convert("L")
        dark = sum(grey.histogram()[:180])
        assert dark > 0.003 * grey.width * grey.height, "the screenshot is blank"
        pixels = shot.convert("RGB").resize((275, 350)).tobytes()
        reds = sum(
            1 for i in range(0, len(pixels), 3) if pixels[i] > 180 and pixels[i + 1] < 120 and pixels[i + 2] < 120
        )
        assert reds > 20, "no bar of the chart is drawn"


@pytest.fixture(scope="module")
def shared_exam(live_api, school_keys, worker, loopback, app):
    wait_until_no_paper_is_in_flight(app)
    headers = {"Authorization": f"Bearer {school_keys['A']}"}
    exam = make_exam(live_api, headers, answer_key=KEY, title="三年级数学 · 第三单元")
    wrong = {"S1": {"1", "3"}, "S2": {"1"}, "3/2班#07": set()}  # a ref with a slash and a hash
    loopback_call(
        loopback,
        "/_loopback/replies",
        {"replies": [{"questions": {q: verdict(q, q in w) for q in ANSWERS}} for w in wrong.values()]},
    )
    for student in wrong:
        reply = httpx.post(
            f"{live_api}/v1/exams/{exam['id']}/papers",
            headers=headers,
            data={"student_ref": student, "class_label": "3(2)"},
            files=[("pages", ("p.jpg", page_bytes(), "image/jpeg"))],
        )
        wait_for(live_api, headers, reply.json()["id"])
    link = httpx.post(f"{live_api}/v1/exams/{exam['id']}/share", headers=headers).json()
    return exam, link["url"]


def test_the_teacher_page_shows_the_chart_classes_and_students(shared_exam, tmp_path):
    exam, url = shared_exam
    dom = chromium(tmp_path, "--dump-dom", url)
    assert "三年级数学 · 第三单元" in dom
    assert (
        'data-kp="math.g2.times-tables"' in dom and '<b class="missed">2</b> / <span class="attempted">3</span>' in dom
    )
    assert 'data-class="3(2)"' in dom and "/students/S1?token=" in dom
    assert "marked by gpt-4o" in dom  # who marked the exam: here the vision model
    # every student's link opens that student's sheet, whatever the ref holds
    links = re.findall(r'href="([^"]*/students/[^"]*)"', dom)
    assert len(links) == 3
    for link in links:
        sheet = httpx.get(urljoin(url, html.unescape(link)))
        assert sheet.status_code == 200, link
    assert any("3/2班#07" in httpx.get(urljoin(url, html.unescape(link))).text for link in links)
    shot = tmp_path / "teacher.png"
    chromium(tmp_path, f"--screenshot={shot}", url)
    assert_not_blank(shot)


def test_the_student_sheet_is_in_the_exams_language(shared_exam, tmp_path):
    exam, url = shared_exam
    sheet = url.replace(f"/pages/exams/{exam['id']}?", f"/pages/exams/{exam['id']}/students/S1?")
    dom = chromium(tmp_path, "--dump-dom", sheet)
    assert "学生反馈单" in dom and "错题本" in dom and "周长" in dom
    assert "订正: = 24厘米" in dom
    shot = tmp_path / "student.png"
    chromium(tmp_path, f"--screenshot={shot}", sheet)
    assert_not_blank(shot)


def test_page_links_are_signed_for_one_exam(shared_exam, live_api, auth):
    exam, url = shared_exam
    page = httpx.get(url)
    assert page.status_code == 200
    # never framed, no script, and the link's token never sent on to another site
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none' covers scripts
    forged = httpx.get(url.split("?")[0] + "?token=forged")
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "bad_link"
    other = make_exam(live_api, auth("A"))
    wrong_exam = httpx.get(url.replace(exam["id"], other["id"]))
    assert wrong_exam.status_code == 403
    # built on the configured public address, whatever Host the request named
    spoofed = httpx.post(
        f"{live_api}/v1/exams/{exam['id']}/share", headers={**auth("A"), "Host": "evil.example"}
    ).json()
    assert spoofed["url"].startswith(live_api + "/pages/") and "evil.example" not in spoofed["url"]


def test_a_share_link_can_be_for_one_student_and_is_revoked_at_once(shared_exam, live_api, auth):
    exam, whole = shared_exam
    base = f"{live_api}/v1/exams/{exam['id']}/share"
    one = httpx.post(base, headers=auth("A"), json={"student_ref": "S1", "days": 2})
    assert one.status_code == 201, one.text
    link = one.json()
    assert httpx.get(link["url"]).status_code == 200  # S1's sheet
    token = link["url"].split("token=")[1]
    others = httpx.get(f"{live_api}/pages/exams/{exam['id']}/students/S2?token={token}")
    assert others.status_code == 403 and others.json()["error"]["code"] == "bad_link"
    report = httpx.get(f"{live_api}/pages/exams/{exam['id']}?token={token}")
    assert report.status_code == 403  # one student's link never opens the class report
    assert httpx.post(base, headers=auth("A"), json={"student_ref": "nobody"}).status_code == 404
    assert httpx.post(base, headers=auth("A"), json={"days": 365}).status_code == 422

    listed = httpx.get(base, headers=auth("A")).json()
    assert link["id"] in {row["id"] for row in listed} and all("url" not in row for row in listed)
    revoked = httpx.delete(f"{base}/{link['id']}", headers=auth("A"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    gone = httpx.get(link["url"])
    assert gone.status_code == 403 and gone.json()["error"]["code"] == "link_revoked"
    assert httpx.get(whole).status_code == 200  # the other links still open
    assert httpx.delete(f"{base}/{link['id']}", headers=auth("B")).status_code == 404


def test_the_api_docs_render_with_no_network(live_api, tmp_path):
    """ReDoc is served by markq itself: the docs page draws every operation offline, under a
    content security policy that lets no other site in and never frames it."""
    headers = httpx.get(f"{live_api}/docs").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
    # no name resolves and every request but to loopback goes to a closed port: no network at all
    offline = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=127.0.0.1:9"]
    dom = chromium(tmp_path, *offline, "--virtual-time-budget=15000", "--dump-dom", f"{live_api}/docs")
    assert "Give the exam's blank paper" in dom and "/v1/exams/{exam_id}/papers" in dom
    shot = tmp_path / "docs.png"
    chromium(tmp_path, *offline, "--virtual-time-budget=15000", f"--screenshot={shot}", f"{live_api}/docs")
    with Image.open(shot) as image:
        assert sum(image.convert("L").histogram()[:180]) > 0.01 * image.width * image.height  # drawn, not blank
