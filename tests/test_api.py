"""The intake API on the real PostgreSQL, Redis and S3 server."""

import csv
import io
import re
import secrets
import zipfile
from contextlib import contextmanager

import boto3
import psycopg
import pytest
from flask import Flask
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, select
from werkzeug.http import parse_options_header

from api import create_app
from shared.models import Paper
from shared.settings import Settings
from tests.helpers import PG_ADMIN_URL, create_exam, exam_body, exam_school, page_bytes, queued_messages


def test_health_and_readiness_check_every_dependency(client, worker):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "redis": "ok", "storage": "ok", "workers": "ok"}


def test_readiness_is_down_while_a_queue_has_no_worker(settings, worker, auth, app):
    """Here the worker consumes the test queues; an installation whose OCR queue nobody consumes
    is not ready, and a key holder is told which queue."""
    lonely = settings.model_copy(update={"ocr_queue_name": f"markq-ocr-nobody-{secrets.token_hex(3)}"})
    with another_app(lonely, app) as unready, unready.test_client() as client:
        reply = client.get("/readyz")
        assert reply.status_code == 503 and reply.json["error"]["details"]["workers"] == "down"
        assert reply.json["error"]["details"]["database"] == "ok"
        told = client.get("/readyz", headers=auth("A")).json["error"]["details"]
        assert lonely.ocr_queue_name in told["reasons"]["workers"]


def test_openapi_document_and_docs_page(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    assert {"/v1/exams", "/v1/exams/{exam_id}/papers", "/v1/papers/{paper_id}"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/exams/{exam_id}/papers"]["post"]["requestBody"]["content"]
    docs = client.get("/docs").get_data(as_text=True)
    assert "redoc" in docs.lower() and "https://" not in docs  # every asset served by markq itself
    [script] = re.findall(r'<script src="([^"]+)"', docs)
    served = client.get(script)
    assert served.status_code == 200 and b"Redoc" in served.data[:2000] and len(served.data) > 500_000


def test_the_openapi_document_is_valid_and_every_error_parses_with_its_documented_schema(client, auth):
    spec = client.get("/openapi.json").json
    validate_spec(spec)  # openapi-spec-validator: OpenAPI 3.1, as a generated client reads it
    operations = [(p, m, o) for p, ms in spec["paths"].items() for m, o in ms.items() if isinstance(o, dict)]
    ids = [o["operationId"] for _p, _m, o in operations]
    assert len(ids) == len(set(ids)) == len(operations)  # one id each, none twice
    for path, method, operation in operations:
        if path.startswith("/v1/"):
            needed = {"503"} if operation.get("security") == [] else {"401", "503"}  # public: no key to refuse
            assert needed <= set(operation["responses"]), (method, path)
            success = [r for code, r in operation["responses"].items() if code.startswith("2")]
            assert success and all("content" in r for r in success), (method, path)  # a schema for every reply
    registry = Registry().with_resource("urn:markq", Resource.from_contents(spec, default_specification=DRAFT202012))

    def documented(path: str, method: str, status: int) -> Draft202012Validator:
        response = spec["paths"][path][method]["responses"][str(status)]
        name = response["$ref"].rsplit("/", 1)[-1]
        [media] = spec["components"]["responses"][name]["content"].values()
        return Draft202012Validator({"$ref": "urn:markq" + media["schema"]["$ref"]}, registry=registry)

    missing = client.get("/v1/exams/00000000-0000-0000-0000-000000000000", headers=auth("A"))
    assert missing.status_code == 404
    documented("/v1/exams/{exam_id}", "get", 404).validate(missing.json)
    bad = client.post("/v1/exams", headers=auth("A"), json={"title": ""})
    assert bad.status_code == 422
    documented("/v1/exams", "post", 422).validate(bad.json)
    exam = create_exam(client, auth("A"))
    headers = {**auth("A"), "Idempotency-Key": "same-key-twice"}
    for ref, status in (("first", 202), ("second", 409)):
        data = {"student_ref": ref, "pages": [(io.BytesIO(page_bytes()), "p1.jpg")]}
        reply = client.post(f"/v1/exams/{exam['id']}/papers", headers=headers, data=data)
        assert reply.status_code == status, reply.data
    documented("/v1/exams/{exam_id}/papers", "post", 409).validate(reply.json)
    with pytest.raises(ValidationError):  # the schema is not empty: flask-smorest's own shape fails it
        documented("/v1/exams", "post", 422).validate({"code": 422, "status": "Unprocessable Entity", "errors": {}})


def test_every_operation_shows_an_example_and_every_example_fits_its_schema(client):
    spec = client.get("/openapi.json").json
    registry = Registry().with_resource("urn:markq", Resource.from_contents(spec, default_specification=DRAFT202012))
    images = {"image/png", "image/jpeg"}
    checked = 0
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if method == "parameters":  # the path's own, not an operation
                continue
            places = [("responses", code, r) for code, r in operation["responses"].items() if isinstance(r, dict)]
            places.append(("requestBody", None, operation.get("requestBody") or {}))
            examples = []
            for where, code, part in places:
                for kind, media in part.get("content", {}).items():
                    if "example" not in media:
                        continue
                    pointer = "/".join(
                        p.replace("~", "~0").replace("/", "~1")
                        for p in ["paths", path, method, where, *([code] if code else []), "content", kind, "schema"]
                    )
                    if "json" in kind:  # the example is what the schema says the body is
                        Draft202012Validator({"$ref": f"urn:markq#/{pointer}"}, registry=registry).validate(
                            media["example"]
                        )
                    examples.append(kind)
            kinds = {k for _w, c, r in places if c and c.startswith("2") for k in r.get("content", {})}
            assert examples or kinds <= images, f"{method} {path} has no example"
            checked += len(examples)
    assert checked >= 45


def test_requests_without_a_valid_key_are_refused_in_the_error_shape(client):
    for headers in ({}, {"Authorization": "Bearer mq_nothing_here"}, {"Authorization": "Basic abc"}):
        reply = client.get("/v1/exams/00000000-0000-0000-0000-000000000000", headers=headers)
        assert reply.status_code == 401
        assert reply.json["error"]["code"] == "unauthorized"


def test_unknown_routes_and_bad_bodies_use_the_one_error_shape(client, auth):
    assert client.get("/nope").json["error"]["code"] == "not_found"
    invalid = client.post("/v1/exams", headers=auth("A"), json={"title": "x", "grade": 12})
    assert invalid.status_code == 422
    assert set(invalid.json["error"]) >= {"code", "message", "details"}
    bad_key = client.post(
        "/v1/exams",
        headers=auth("A"),
        json=exam_body(
            answer_key={"questions": [{"id": "1", "answer": "2", "points": 1, "knowledge_points": ["math.g3.nope"]}]}
        ),
    )
    assert bad_key.status_code == 422 and "math.g3.nope" in bad_key.json["error"]["message"]
    not_json = client.post("/v1/exams", headers=auth("A"), data="{", content_type="application/json")
    assert not_json.status_code in (400, 422) and "error" in not_json.json


def test_another_schools_exam_and_paper_answer_404(client, auth):
    exam = create_exam(client, auth("A"))
    submitted = client.post(
        f"/v1/exams/{exam['id']}/papers",
        headers=auth("A"),
        data={"student_ref": "s-404", "pages": [(io.BytesIO(page_bytes()), "p1.jpg")]},
    )
    assert submitted.status_code == 202
    for path in (
        f"/v1/exams/{exam['id']}",
        f"/v1/exams/{exam['id']}/report",
        f"/v1/exams/{exam['id']}/papers",
        f"/v1/papers/{submitted.json['id']}",
    ):
        assert client.get(path, headers=auth("B")).status_code == 404, path
        assert client.get(path, headers=auth("A")).status_code == 200, path
    posted = client.post(
        f"/v1/exams/{exam['id']}/papers",
        headers=auth("B"),
        data={"student_ref": "s", "pages": [(io.BytesIO(page_bytes()), "p1.jpg")]},
    )
    assert posted.status_code == 404


def test_a_file_that_is_not_an_image_is_refused_and_nothing_is_kept(client, auth, app, settings):
    exam = create_exam(client, auth("A"))
    queued_before = queued_messages(settings)
    reply = client.post(
        f"/v1/exams/{exam['id']}/papers",
        headers=auth("A"),
        data={
            "student_ref": "s1",
            "pages": [
                (io.BytesIO(page_bytes()), "p1.jpg"),
                (io.BytesIO("我的作业 homework notes".encode()), "homework.txt"),
            ],
        },
    )
    assert reply.status_code == 415
    assert reply.json["error"]["code"] == "unsupported_page"
    assert reply.json["error"]["details"] == {"file": "homework.txt", "page": 2}
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"{exam_school(app, exam)}/{exam['id']}/")
    assert listed.get("KeyCount", 0) == 0
    with app.extensions["markq"].sessions() as session:
        assert session.scalar(select(func.count()).select_from(Paper).where(Paper.exam_id == exam["id"])) == 0
    assert queued_messages(settings) == queued_before


def test_missing_fields_and_pages_are_clear_errors(client, auth):
    exam = create_exam(client, auth("A"))
    no_student = client.post(
        f"/v1/exams/{exam['id']}/papers", headers=auth("A"), data={"pages": [(io.BytesIO(page_bytes()), "p1.jpg")]}
    )
    assert no_student.status_code == 422 and "student_ref" in no_student.json["error"]["message"]
    no_pages = client.post(f"/v1/exams/{exam['id']}/papers", headers=auth("A"), data={"student_ref": "s"})
    assert no_pages.status_code == 422 and "pages" in no_pages.json["error"]["message"]
    empty = client.post(
        f"/v1/exams/{exam['id']}/papers",
        headers=auth("A"),
        data={"student_ref": "s", "pages": [(io.BytesIO(b""), "blank.jpg")]},
    )
    assert empty.status_code == 422 and "blank.jpg" in empty.json["error"]["message"]


def test_paper_lists_give_statuses_as_plain_words(client, auth):
    exam = create_exam(client, auth("A"))
    client.post(
        f"/v1/exams/{exam['id']}/papers",
        headers=auth("A"),
        data={"student_ref": "s-list", "pages": [(io.BytesIO(page_bytes()), "p1.jpg")]},
    )
    listed = client.get(f"/v1/exams/{exam['id']}/papers", headers=auth("A")).json
    assert listed[0]["status"] in {"queued", "processing", "graded", "needs_review"}


def test_control_characters_in_a_student_ref_or_class_label_are_refused_and_nothing_is_kept(client, auth, app):
    exam = create_exam(client, auth("A"))
    for field, value in (("student_ref", "s\x00nul"), ("student_ref", "s\r\nX-Evil: 1"), ("class_label", "4\t(1)")):
        data = {"student_ref": "s-ok", field: value, "pages": [(io.BytesIO(page_bytes()), "p1.jpg")]}
        refused = client.post(f"/v1/exams/{exam['id']}/papers", headers=auth("A"), data=data)
        assert refused.status_code == 422, (field, value, refused.data)
        assert refused.json["error"]["code"] == "invalid_request" and field in refused.json["error"]["message"]
    with app.extensions["markq"].sessions() as session:
        kept = session.scalar(select(func.count()).select_from(Paper).where(Paper.exam_id == exam["id"]))
    assert kept == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v1/exams", {"title": "期中\x00"}),  # a NUL the database cannot store: was a 500
        ("post", "/v1/exams", {"title": "期中\r\nX-Evil: 1"}),  # a title is one line
        ("post", "/v1/exams", {"rubric": "ok\nbut \x00"}),  # free text may break lines, never hold a NUL
        ("get", "/v1/students/a%00b", None),  # was a 500
        ("get", "/v1/classes/3%07A", None),
        ("get", "/v1/students/a%00b/mistakes.csv", None),
        ("get", "/v1/exams?subject=ma%00th", None),
    ],
)
def test_control_characters_anywhere_in_a_request_answer_422_naming_where(client, auth, method, path, body):
    if body is not None:
        body = {**exam_body(), **body}
    reply = getattr(client, method)(path, headers=auth("A"), json=body)
    assert reply.status_code == 422, reply.data
    error = reply.json["error"]
    assert error["code"] == "invalid_request" and "control character" in error["message"]
    assert error["details"][0]["loc"][0] in {"title", "rubric", "path", "query"}


def test_a_class_zip_whose_folder_holds_a_control_character_refuses_that_folder_only(client, auth):
    exam = create_exam(client, auth("A"))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for folder in ("S\x01x", "T\r\ny", "S02"):
            z.writestr(f"{folder}/page1.jpg", page_bytes(folder))
    reply = client.post(
        f"/v1/exams/{exam['id']}/bulk", headers=auth("A"), data={"archive": (io.BytesIO(archive.getvalue()), "c.zip")}
    )
    assert reply.status_code == 200, reply.json
    assert [c["student_ref"] for c in reply.json["created"]] == ["S02"]
    assert (
        sorted(r["reason"] for r in reply.json["refused"]) == ["the student ref or class holds a control character"] * 2
    )


def test_report_csv_cells_are_never_run_as_formulas_and_the_file_name_is_quoted(client, auth):
    exam = create_exam(client, auth("A"))
    for ref in ('=HYPERLINK("http://x")', "+1", "@SUM(A1)", "-2", "plain"):
        data = {"student_ref": ref, "class_label": "=1+2", "pages": [(io.BytesIO(page_bytes()), "p1.jpg")]}
        assert client.post(f"/v1/exams/{exam['id']}/papers", headers=auth("A"), data=data).status_code == 202
    reply = client.get(f"/v1/exams/{exam['id']}/report.csv?table=papers", headers=auth("A"))
    assert reply.status_code == 200
    rows = list(csv.DictReader(io.StringIO(reply.data.decode("utf-8-sig"))))
    assert sorted(r["student_ref"] for r in rows) == ["'+1", "'-2", '\'=HYPERLINK("http://x")', "'@SUM(A1)", "plain"]
    assert {r["class_label"] for r in rows} == {"'=1+2"}
    disposition = reply.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and f"exam-{exam['id']}-papers.csv" in disposition

    tricky_paper = client.post(
        f"/v1/exams/{exam['id']}/papers",
        headers=auth("A"),
        data={"student_ref": 'a"b;c', "pages": (io.BytesIO(page_bytes()), "p.jpg")},
    )
    assert tricky_paper.status_code == 202, tricky_paper.json
    tricky = client.get('/v1/students/a"b;c/mistakes.csv', headers=auth("A"))
    assert tricky.status_code == 200
    kind, options = parse_options_header(tricky.headers["Content-Disposition"])
    assert (kind, options) == ("attachment", {"filename": 'mistakes-a"b;c.csv'})  # the quote cannot end the name


@contextmanager
def another_app(settings: Settings, app: Flask):
    """An app on other settings, for one test; the run's own app is the process's Celery app again
    afterwards (create_app makes its Celery app the default and the current one, and tasks are
    sent through that)."""
    try:
        yield create_app(settings)
    finally:
        app.extensions["celery"].set_default()
        app.extensions["celery"].set_current()  # a new Celery app also makes itself the current one


def test_readiness_says_only_down_unless_asked_with_a_key_and_needs_the_newest_schema(settings, auth, app):
    """A database at an older schema is not ready; what is wrong is told only to a key holder."""
    name = f"markq_unmigrated_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        empty = settings.model_copy(update={"database_url": settings.database_url.rsplit("/", 1)[0] + "/" + name})
        with another_app(empty, app) as unready, unready.test_client() as client:
            anonymous = client.get("/readyz")
            assert anonymous.status_code == 503 and anonymous.json["error"]["code"] == "not_ready"
            details = anonymous.json["error"]["details"]
            assert details["database"] == "down" and "reasons" not in details  # no internals to anyone
            assert "Error" not in anonymous.get_data(as_text=True)
            unready.extensions["markq"].engine.dispose()  # let the database be dropped
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_readiness_tells_a_key_holder_why(settings, auth, app):
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})  # nothing listens there
    with another_app(broken, app) as unready, unready.test_client() as client:
        assert client.get("/readyz").json["error"]["details"] == {
            "database": "ok",
            "redis": "down",
            "storage": "ok",
            "workers": "down",
        }
        told = client.get("/readyz", headers=auth("A")).json["error"]["details"]
        assert told["redis"] == "down" and "ConnectionError" in told["reasons"]["redis"]


def test_an_answer_key_error_names_the_question_by_its_id_not_its_place(client, auth):
    questions = [{"id": "1", "answer": "3", "points": 1}, {"id": "7", "answer": "5", "points": -1}]
    body = {"title": "t", "subject": "math", "grade": 3, "answer_key": {"questions": questions}}
    reply = client.post("/v1/exams", headers=auth("A"), json=body)
    assert reply.status_code == 422 and reply.json["error"]["code"] == "invalid_exam"
    assert "question 7, points:" in reply.json["error"]["message"]
    [detail] = reply.json["error"]["details"]
    assert (detail["question"], detail["field"], detail["loc"]) == (
        "7",
        "points",
        ["answer_key", "questions", 1, "points"],
    )


def test_a_body_over_the_limit_is_refused_with_the_limit_in_words(settings, app, auth):
    small = settings.model_copy(update={"max_pages_per_paper": 1, "max_page_bytes": 1000})
    with another_app(small, app) as limited, limited.test_client() as client:
        exam = client.post("/v1/exams", headers=auth(), json=exam_body(title="limits")).json
        body = {"student_ref": "S1", "pages": (io.BytesIO(b"x" * 2_000_000), "p.jpg")}
        reply = client.post(f"/v1/exams/{exam['id']}/papers", headers=auth(), data=body)
        limit = 1000 + 1024 * 1024
        assert reply.status_code == 413 and reply.json["error"]["code"] == "request_entity_too_large"
        assert f"at most {limit} bytes" in reply.json["error"]["message"]
        assert "/uploads" in reply.json["error"]["message"]
        body = {"archive": (io.BytesIO(b"x" * 2_000_000), "class.zip")}
        reply = client.post(f"/v1/exams/{exam['id']}/bulk", headers=auth(), data=body)
        assert reply.status_code == 413 and f"at most {limit} bytes" in reply.json["error"]["message"]
        assert "/bulk/uploads" in reply.json["error"]["message"]  # a class ZIP: by URL, as large as allowed


def test_every_validation_error_has_the_one_detail_shape(client, auth):
    """The request's fields and the answer key are checked by different code, but every 422 lists
    [{"loc": path from the body's root, "msg"}]; a key's question is named by its id."""
    questions = [{"id": "1", "answer": "3", "points": 1}, {"id": "2b", "answer": "5", "points": "x"}]
    key_error = client.post(
        "/v1/exams",
        headers=auth("A"),
        json={"title": "t", "subject": "math", "grade": 3, "answer_key": {"questions": questions}},
    ).json["error"]
    [detail] = key_error["details"]
    assert detail["loc"] == ["answer_key", "questions", 1, "points"] and detail["question"] == "2b"
    assert "question 2b, points" in key_error["message"]
    field_error = client.post(
        "/v1/exams",
        headers=auth("A"),
        json={"title": "", "subject": "math", "grade": 12, "answer_key": {"questions": []}},
    ).json["error"]
    assert field_error["code"] == "invalid_request"
    assert sorted(d["loc"] for d in field_error["details"]) == [["grade"], ["title"]]
    assert all(isinstance(d["msg"], str) and d["msg"] for d in field_error["details"])
    assert field_error["message"].startswith("the request is not valid: ")
    query_error = client.get("/v1/exams", headers=auth("A"), query_string={"page": 0}).json["error"]
    assert query_error["details"][0]["loc"] == ["query", "page"]
