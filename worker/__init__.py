"""Celery app and tasks. Tasks stay thin: claim, call the pipeline in shared/, record."""
