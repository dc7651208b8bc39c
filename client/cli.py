"""markq: the teacher's command line, talking to the HTTP API.

Configuration: flags, else MARKQ_API_URL and MARKQ_API_KEY in the environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from client.api import MarkqClient, MarkqError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}


def _print(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@click.group()
@click.option("--api-url", envvar="MARKQ_API_URL", default="http://127.0.0.1:8000", show_default=True)
@click.option("--api-key", envvar="MARKQ_API_KEY", help="The school's API key (or MARKQ_API_KEY).")
@click.pass_context
def main(ctx: click.Context, api_url: str, api_key: str | None) -> None:
    """Mark test papers with markq."""
    ctx.obj = {"url": api_url, "key": api_key}


def _client(ctx: click.Context) -> MarkqClient:
    if not ctx.obj["key"]:
        raise click.UsageError("no API key: pass --api-key or set MARKQ_API_KEY")
    return MarkqClient(ctx.obj["url"], ctx.obj["key"])


def _run(call: Any) -> Any:
    try:
        return call()
    except MarkqError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}" + (f" {exc.details}" if exc.details else "")) from exc


@main.group()
def exams() -> None:
    """Create and read exams."""


@exams.command("create")
@click.argument("exam_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def exams_create(ctx: click.Context, exam_file: Path) -> None:
    """Create an exam from a JSON file (title, subject, grade, language, answer_key, rubric, model)."""
    exam = json.loads(exam_file.read_text("utf-8"))
    _print(_run(lambda: _client(ctx).create_exam(exam)))


@exams.command("show")
@click.argument("exam_id")
@click.pass_context
def exams_show(ctx: click.Context, exam_id: str) -> None:
    """An exam's progress and cost so far."""
    _print(_run(lambda: _client(ctx).exam(exam_id)))


@main.command()
@click.argument("exam_id")
@click.argument("pages", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--student", required=True, help="The student's reference.")
@click.option("--class", "class_label", default="", help="The class label.")
@click.pass_context
def submit(ctx: click.Context, exam_id: str, pages: tuple[Path, ...], student: str, class_label: str) -> None:
    """Submit one student's paper: PAGES are image files in order, or one folder of them."""
    files: list[Path] = []
    for path in pages:
        files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    _print(_run(lambda: _client(ctx).submit_paper(exam_id, student, files, class_label)))


@main.command()
@click.argument("exam_id")
@click.option("--timeout", default=3600.0, show_default=True)
@click.pass_context
def wait(ctx: click.Context, exam_id: str, timeout: float) -> None:
    """Wait until every paper of the exam has finished."""
    def progress(exam: dict[str, Any]) -> None:
        counts = ", ".join(f"{k} {v}" for k, v in exam["progress"].items() if v)
        click.echo(f"{exam['title']}: {counts}", err=True)

    exam = _run(lambda: _client(ctx).wait_for_exam(exam_id, timeout=timeout, on_progress=progress))
    _print(exam["progress"])


@main.command()
@click.argument("paper_id")
@click.pass_context
def paper(ctx: click.Context, paper_id: str) -> None:
    """One paper's status, results and cost."""
    _print(_run(lambda: _client(ctx).paper(paper_id)))


@main.command()
@click.argument("exam_id")
@click.pass_context
def report(ctx: click.Context, exam_id: str) -> None:
    """Scores and the most-missed knowledge points of an exam."""
    _print(_run(lambda: _client(ctx).report(exam_id)))


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--model", "models", multiple=True, help="A model to price; repeat to compare. Default: three.")
@click.option("--size", "sizes", multiple=True, help="A page size WxH instead of files; repeat per page.")
@click.option("--detail", default="high", show_default=True,
              type=click.Choice(["low", "high", "auto", "original"]))
@click.option("--class-size", default=40, show_default=True, help="Papers in the class.")
@click.option("--questions", default=10, show_default=True, help="Questions on the paper.")
def estimate(paths: tuple[Path, ...], models: tuple[str, ...], sizes: tuple[str, ...], detail: str,
             class_size: int, questions: int) -> None:
    """Tokens and dollars before marking: PATHS (page files or a folder: one paper) or --size WxH.

    Runs locally with markq's token rules and price file; no API key needed.
    """
    from PIL import Image

    from shared.costs import UnknownModel, UnsupportedDetail
    from shared.estimate import PageSize, estimate as run_estimate, parse_size

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
    for file in files:
        try:
            with Image.open(file) as image:
                pages.append(PageSize(file.name, image.width, image.height))
        except OSError as exc:
            raise click.ClickException(f"{file}: not a readable image ({exc})") from exc
    if not pages:
        raise click.UsageError("give page files, a folder, or --size WxH")
    try:
        _print(run_estimate(pages, list(models) or None, detail, class_size, questions))
    except (UnknownModel, UnsupportedDetail) as exc:
        raise click.ClickException(f"{exc}") from exc


if __name__ == "__main__":
    sys.exit(main())
