"""markq: the teacher's command line, talking to the HTTP API.

Configuration, first found wins: flags, then MARKQ_API_URL and MARKQ_API_KEY in the environment,
then the user config file (~/.config/markq/config.toml, or MARKQ_CONFIG):

    api_url = "https://markq.school.example"
    api_key = "mq_..."
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import tomllib
import webbrowser
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import click
import httpx

from client import show
from client.api import FINISHED, MarkqClient, MarkqError
from client.uploads import UploadState

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".heic", ".heif"}
PAGE_SUFFIXES = IMAGE_SUFFIXES | {".pdf"}


def _print(value: Any, human: Callable[[Any], None] | None = None) -> None:
    """For people, the summary `human` draws; with `markq --json` (or where there is none), the
    API's JSON as it came."""
    ctx = click.get_current_context(silent=True)
    as_json = ctx is None or ctx.find_root().obj is None or ctx.find_root().obj.get("json", True)
    if human is None or as_json:
        click.echo(json.dumps(value, ensure_ascii=False, indent=2))
    else:
        human(value)


def user_config() -> dict[str, Any]:
    path = Path(os.environ.get("MARKQ_CONFIG", Path.home() / ".config" / "markq" / "config.toml"))
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from exc


@click.group()
@click.option("--api-url", envvar="MARKQ_API_URL", help="The markq API (or MARKQ_API_URL, or the config file).")
@click.option("--api-key", envvar="MARKQ_API_KEY", help="The school's API key (or MARKQ_API_KEY, or the config file).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of summaries (for scripts).")
@click.pass_context
def main(ctx: click.Context, api_url: str | None, api_key: str | None, as_json: bool) -> None:
    """Mark test papers with markq."""
    config = user_config() if not (api_url and api_key) else {}
    ctx.obj = {
        "url": api_url or config.get("api_url") or "http://127.0.0.1:8000",
        "key": api_key or config.get("api_key"),
        "json": as_json,
    }


def _client(ctx: click.Context) -> MarkqClient:
    if not ctx.obj["key"]:
        raise click.UsageError("no API key: pass --api-key or set MARKQ_API_KEY")
    return MarkqClient(ctx.obj["url"], ctx.obj["key"])


def _run(call: Any) -> Any:
    try:
        return call()
    except MarkqError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}" + (f" {exc.details}" if exc.details else "")) from exc
    except httpx.HTTPStatusError as exc:  # storage refused an upload (the API's errors are MarkqError)
        raise click.ClickException(f"{exc}; run the same command again to resume") from exc
    except httpx.TransportError as exc:  # refused, unreachable, timed out: say so, in one line
        url = click.get_current_context().obj["url"]
        target = str(exc.request.url) if exc.__dict__.get("_request") is not None else url
        if not target.startswith(url):
            raise click.ClickException(
                f"the upload to storage was cut ({type(exc).__name__}: {exc}); run the same command again to resume"
            ) from exc
        raise click.ClickException(f"cannot reach the markq server at {url} ({type(exc).__name__}: {exc})") from exc


def _read_json(path: Path) -> Any:
    """A JSON file, or one line naming the file, line and column of what is wrong with it."""
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot be read ({exc})") from exc


@main.group()
def exams() -> None:
    """Create and read exams."""


@exams.command("create")
@click.argument("exam_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--provider",
    type=click.Choice(["vision", "local", "cascade"]),
    help="Who reads the answers: the vision model, the offline reader (free), or offline first "
    "with only unsure questions to the vision model. Default: the file's, else the server's.",
)
@click.pass_context
def exams_create(ctx: click.Context, exam_file: Path, provider: str | None) -> None:
    """Create an exam from a JSON file (title, subject, grade, language, answer_key, rubric, model)."""
    exam = _read_json(exam_file)
    if provider:
        exam["provider"] = provider
    _print(_run(lambda: _client(ctx).create_exam(exam)), show.exam_created)


@exams.command("example")
@click.argument("path", default="exam.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the file if it is there.")
def exams_example(path: Path, force: bool) -> None:
    """Write an example exam file (a question of every type: number, choice, blanks, word problem,
    expression, text) to PATH, to change into yours; the format is docs/answer-keys.md."""
    if path.exists() and not force:
        raise click.ClickException(f"{path} is there already; pass --force to replace it")
    example = resources.files("shared.data").joinpath("exam-example.json").read_text("utf-8")
    path.write_text(example, encoding="utf-8")
    click.echo(f"wrote {path}: edit it, then `markq exams create {path}`")


@exams.command("list")
@click.option("--subject", help="Only this subject (math, chinese, english, ...).")
@click.option("--grade", type=click.IntRange(1, 9), help="Only this grade.")
@click.pass_context
def exams_list(ctx: click.Context, subject: str | None, grade: int | None) -> None:
    """The school's exams, newest first (every page of the list)."""
    filters = {k: v for k, v in (("subject", subject), ("grade", grade)) if v is not None}
    _print(_run(lambda: _client(ctx).exams(**filters)), show.exams)


@exams.command("show")
@click.argument("exam_id")
@click.pass_context
def exams_show(ctx: click.Context, exam_id: str) -> None:
    """An exam's progress and cost so far."""
    _print(_run(lambda: _client(ctx).exam(exam_id)), show.exam)


@exams.command("template")
@click.argument("exam_id")
@click.argument("pages", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--preview",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save each page of the read blank paper, its answer regions drawn, as PNGs in this folder.",
)
@click.option(
    "--derive",
    is_flag=True,
    help="No blank paper to give: derive it from the exam's first papers (at least 5 uploaded).",
)
@click.pass_context
def exams_template(
    ctx: click.Context, exam_id: str, pages: tuple[Path, ...], preview: Path | None, derive: bool
) -> None:
    """Give the exam's blank paper (its pages in order, images or PDFs), or --derive it from the
    papers; with neither, show how reading it went: its status and each question's answer region
    (--preview: as pictures)."""
    client = _client(ctx)
    if derive and pages:
        raise click.UsageError("give the blank paper's pages or --derive, not both")
    if derive:
        _print(_run(lambda: client.derive_template(exam_id)))
        return
    if pages:
        _print(_run(lambda: client.give_template(exam_id, list(pages))))
        return
    template = _run(lambda: client.template(exam_id))
    _print(template)
    if preview is None:
        return
    urls = [(page["number"], page["preview_url"]) for page in template["pages"] if page.get("preview_url")]
    if not urls:
        raise click.ClickException(f"the blank paper is {template['status']}: no preview yet")
    preview.mkdir(parents=True, exist_ok=True)
    for number, url in urls:
        target = preview / f"template-page-{number}.png"
        target.write_bytes(_run(lambda url=url: client.download(url)))
        click.echo(f"wrote {target}", err=True)


def _zip_folder(folder: Path, out: BinaryIO) -> int:
    """A class folder (a folder per student) as a ZIP, pages stored as they are; returns the count."""
    count = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in PAGE_SUFFIXES:
                archive.write(path, path.relative_to(folder).as_posix())
                count += 1
    return count


@main.command()
@click.argument("exam_id")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--student", help="Submit PATHS (images or PDFs, in order) as this one student's paper.")
@click.option("--class", "class_label", default="", help="The class label.")
@click.option(
    "--roster",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV mapping files to students (file, student_ref[, class_label]).",
)
@click.pass_context
def submit(
    ctx: click.Context,
    exam_id: str,
    paths: tuple[Path, ...],
    student: str | None,
    class_label: str,
    roster: Path | None,
) -> None:
    """Submit papers. With --student: PATHS are one paper's pages. Without: each PATH is a class,
    a folder with a folder per student (or student__page names), or a ZIP of one. Running it
    again sends only what is not in yet."""
    client = _client(ctx)
    if student:
        files: list[Path] = []
        for path in paths:
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in PAGE_SUFFIXES) if path.is_dir() else [path]
        size = sum(f.stat().st_size for f in files)
        with click.progressbar(length=size, label=f"uploading {student}", file=sys.stderr) as bar:
            paper = _run(
                lambda: client.upload_paper(
                    exam_id, student, files, class_label, state=UploadState(), progress=bar.update
                )
            )
        _print(paper, show.paper)
        return
    totals = {"created": 0, "existing": 0, "refused": 0}
    for path in paths:
        with tempfile.TemporaryDirectory() as scratch:
            if path.is_dir():
                archive = Path(scratch) / f"{path.name}.zip"
                with archive.open("wb") as out:
                    if not _zip_folder(path, out):
                        raise click.ClickException(f"{path}: no page files (jpg, png, webp, tif, heic, pdf) in it")
            elif zipfile.is_zipfile(path):
                archive = path
            else:
                raise click.UsageError(f"{path}: give a class folder or a ZIP, or use --student for one paper")
            # straight to storage by URL; a worker unpacks it and the result is waited for
            with click.progressbar(
                length=archive.stat().st_size, label=f"uploading {path.name}", file=sys.stderr
            ) as bar:
                # the same class files on a later run resume this upload (the folder's ZIP is
                # made the same, byte for byte, from the same files)
                files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
                files += [roster] if roster else []  # a corrected roster is a new upload
                signature = UploadState.signature(str(client.http.base_url), exam_id, f"class:{class_label}", files)
                reply = _run(
                    lambda: client.upload_class(
                        exam_id,
                        archive,
                        archive.name,
                        class_label,
                        roster,
                        state=UploadState(),
                        signature=signature,
                        progress=bar.update,
                    )
                )
        for key in totals:
            totals[key] += len(reply[key])
        for refusal in reply["refused"]:
            click.echo(f"refused {refusal['file']}: {refusal['reason']}", err=True)
    _print(totals)


@main.command()
@click.argument("exam_id")
@click.option("--timeout", default=3600.0, show_default=True)
@click.pass_context
def wait(ctx: click.Context, exam_id: str, timeout: float) -> None:
    """Wait until every paper of the exam has finished, with a progress bar."""
    client = _client(ctx)
    total = _run(lambda: client.exam(exam_id))["papers"]
    with click.progressbar(length=total, label="grading", file=sys.stderr) as bar:
        done = [0]

        def progress(exam: dict[str, Any]) -> None:
            finished = sum(n for status, n in exam["progress"].items() if status in FINISHED)
            bar.update(finished - done[0])
            done[0] = finished

        exam = _run(lambda: client.wait_for_exam(exam_id, timeout=timeout, on_progress=progress))
    _print(exam["progress"], show.progress)


@main.command()
@click.option("--class", "class_label", help="Only students with a paper in this class.")
@click.pass_context
def students(ctx: click.Context, class_label: str | None) -> None:
    """The school's students, with the class of each one's latest paper."""
    _print(_run(lambda: _client(ctx).students(class_label)), show.students)


@main.command()
@click.argument("student_ref")
@click.pass_context
def student(ctx: click.Context, student_ref: str) -> None:
    """A student's exams and weak knowledge points (with --json, the mistake notebook too)."""
    _print(_run(lambda: _client(ctx).student(student_ref)), show.student)


@main.command("knowledge-points")
@click.option("--subject", type=click.Choice(["math", "chinese", "english"]), help="Only this subject.")
@click.option("--grade", type=click.IntRange(1, 9), help="Only this grade.")
@click.option(
    "--add",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Add the school's own points from this CSV (columns id, name_zh, name_en, grade, aliases split by |, "
    "refines); needs --subject and --grade (for rows without a grade).",
)
@click.pass_context
def knowledge_points(ctx: click.Context, subject: str | None, grade: int | None, csv_file: Path | None) -> None:
    """The knowledge points (知识点) answer keys name and reports count; or, with --add, the
    school's own points added from a spreadsheet saved as CSV (run again to update them)."""
    if csv_file is not None:
        if subject is None or grade is None:
            raise click.UsageError("--add needs --subject and --grade")
        _print(_run(lambda: _client(ctx).add_knowledge_points(csv_file, subject, grade)), show.knowledge_points)
        return
    filters = {k: v for k, v in (("subject", subject), ("grade", grade)) if v is not None}
    _print(_run(lambda: _client(ctx).knowledge_points(**filters)), show.knowledge_points)


@main.command("weak-points")
@click.option("--days", type=click.IntRange(1, 3650), default=90, show_default=True, help="Over the last N days.")
@click.option("--top", type=click.IntRange(1, 100), default=5, show_default=True, help="Points a grade.")
@click.pass_context
def weak_points(ctx: click.Context, days: int, top: int) -> None:
    """The school's most-missed knowledge points, grade by grade."""
    since = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    _print(_run(lambda: _client(ctx).school_weak_points(since=since, top=top)), show.school_weak_points)


@main.command()
@click.argument("paper_id")
@click.pass_context
def paper(ctx: click.Context, paper_id: str) -> None:
    """One paper's status, results and cost."""
    _print(_run(lambda: _client(ctx).paper(paper_id)), show.paper)


@main.command()
@click.argument("exam_id")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a CSV (one row per paper) to this file.",
)
@click.option(
    "--table",
    type=click.Choice(["papers", "questions", "knowledge_points", "classes"]),
    default="papers",
    show_default=True,
    help="Which table the CSV holds.",
)
@click.option("--open", "open_page", is_flag=True, help="Open the teacher's report page in a browser.")
@click.pass_context
def report(ctx: click.Context, exam_id: str, csv_file: Path | None, table: str, open_page: bool) -> None:
    """Scores and the most-missed knowledge points of an exam."""
    client = _client(ctx)
    _print(_run(lambda: client.report(exam_id)), show.report)
    if csv_file:
        csv_file.write_bytes(_run(lambda: client.report_csv(exam_id, table)))
        click.echo(f"wrote {csv_file}", err=True)
    if open_page:
        url = _run(lambda: client.share(exam_id))["url"]
        click.echo(url, err=True)
        webbrowser.open(url)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--model", "models", multiple=True, help="A model to price; repeat to compare. Default: three.")
@click.option("--size", "sizes", multiple=True, help="A page size WxH instead of files; repeat per page.")
@click.option("--detail", default="high", show_default=True, type=click.Choice(["low", "high", "auto", "original"]))
@click.option("--class-size", default=40, show_default=True, help="Papers in the class.")
@click.option("--questions", default=10, show_default=True, help="Questions on the paper.")
def estimate(
    paths: tuple[Path, ...],
    models: tuple[str, ...],
    sizes: tuple[str, ...],
    detail: str,
    class_size: int,
    questions: int,
) -> None:
    """Tokens and dollars before marking: PATHS (page files or a folder: one paper) or --size WxH.

    Page files are priced as markq sends them (normalised), per lane (vision, economy, flex,
    cascade), with the cheapest model and lane that keeps the writing legible recommended.
    Runs locally with markq's token rules and price file; no API key needed.
    """
    from shared.images import PageRejected
    from shared.settings import get_settings
    from shared.spending.costs import UnknownModel, UnsupportedDetail
    from shared.spending.estimate import DEFAULT_MODELS, PageSize, parse_size, recommend, seen_page
    from shared.spending.estimate import estimate as run_estimate

    chosen = list(models) or list(DEFAULT_MODELS)
    pages: list[PageSize] = []
    try:
        for size in sizes:
            width, height = parse_size(size)
            pages.append(PageSize(size, width, height))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--size") from exc
    files: list[Path] = []
    for path in paths:
        files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    try:
        for file in files:
            try:
                pages.append(seen_page(file.name, file.read_bytes(), chosen, detail, get_settings().max_image_pixels))
            except (PageRejected, OSError) as exc:
                raise click.ClickException(f"{file}: not a readable page ({exc})") from exc
        if not pages:
            raise click.UsageError("give page files, a folder, or --size WxH")
        result = run_estimate(pages, chosen, detail, class_size, questions)
    except (UnknownModel, UnsupportedDetail) as exc:
        raise click.ClickException(f"{exc}") from exc
    result["recommended"] = recommend(result, pages)
    _print(result)


if __name__ == "__main__":
    sys.exit(main())
