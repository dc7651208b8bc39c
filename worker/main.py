"""Worker entry point: `celery -A worker.main worker` and `celery -A worker.main beat`."""

from api import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]

from celery.signals import worker_process_init  # noqa: E402

from shared.resources import Resources  # noqa: E402


@worker_process_init.connect
def _fresh_resources_after_fork(**_kwargs: object) -> None:
    """Database pools and boto3 clients must not be shared across fork: each child makes its own."""
    settings = flask_app.extensions["markq"].settings
    flask_app.extensions["markq"].engine.dispose(close=False)
    flask_app.extensions["markq"] = Resources(settings)
