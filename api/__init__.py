"""Flask intake API: the app factory wires settings, database, storage, Celery and OpenAPI."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, g, request
from flask_babel import Babel

from api.errors import refuse_control_characters, register_error_handlers
from api.spec import ErrorResponses, MarkqApi, numeric_ranges, register_answer_key
from shared import logs
from shared.resources import Resources
from shared.settings import Settings, get_settings
from worker.celery_app import celery_init_app

TRANSLATIONS = str(Path(__file__).parent / "translations")  # the web app's Chinese (see docs/web-app.md)
openapi = MarkqApi(spec_kwargs={"extra_plugins": [ErrorResponses()]})


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app. Nothing happens at import time; every process calls this once."""
    settings = settings or get_settings()
    logs.configure(settings.log_format)
    app = Flask("markq")
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=settings.max_pages_per_paper * settings.max_page_bytes + 1024 * 1024,
        API_TITLE="markq",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_REDOC_PATH="/docs",
        OPENAPI_REDOC_URL="/assets/vendor/redoc-2.5.4.standalone.js",  # vendored: no CDN
        API_SPEC_OPTIONS={
            "info": {"description": "Mark test papers with a vision model; count missed knowledge points."},
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
    )
    app.config.from_prefixed_env("MARKQ_FLASK")
    app.extensions["markq"] = Resources(settings)
    celery_init_app(app, settings)

    openapi.init_app(app)
    openapi.ma_plugin.converter.add_attribute_function(numeric_ranges)
    register_answer_key(openapi.spec)
    app.extensions["markq-openapi"] = openapi
    from api import bulk, direct, estimate, exams, health, metrics, pages, papers, reports, web

    Babel(app, locale_selector=web.select_locale, default_translation_directories=TRANSLATIONS)

    openapi.register_blueprint(health.blp)
    openapi.register_blueprint(exams.blp)
    openapi.register_blueprint(papers.blp)
    openapi.register_blueprint(direct.blp)
    openapi.register_blueprint(bulk.blp)
    openapi.register_blueprint(estimate.blp)
    openapi.register_blueprint(exams.school_blp)
    openapi.register_blueprint(reports.blp)
    openapi.register_blueprint(pages.share_blp)
    app.register_blueprint(pages.pages)
    app.register_blueprint(pages.assets)
    app.register_blueprint(web.web)
    app.register_blueprint(metrics.metrics)
    metrics.count_requests(app)
    register_error_handlers(app)
    app.before_request(refuse_control_characters)
    app.after_request(pages.docs_headers)

    @app.before_request
    def _log_ids() -> None:  # a paper's or exam's id in the path is on every line of its request
        args = request.view_args or {}
        g.log_ids = logs.push(paper_id=args.get("paper_id"), exam_id=args.get("exam_id"))

    @app.teardown_request
    def _unlog_ids(_exc: BaseException | None) -> None:
        if (token := g.pop("log_ids", None)) is not None:
            logs.pop(token)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    import worker.tasks  # noqa: F401  (registers the tasks with this app's Celery)

    return app
