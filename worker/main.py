"""Worker entry point: `celery -A worker.main worker` and `celery -A worker.main beat`."""

from api import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
