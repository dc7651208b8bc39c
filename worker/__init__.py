"""Celery app and tasks. Tasks stay thin: each names its lane step; worker.base runs it."""
