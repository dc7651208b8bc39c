"""Celery bound to the Flask app, the way Flask's own docs wire it."""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask
from kombu import Queue

from shared.settings import Settings

# Redis has no message priorities: kombu keeps one list per priority step (0 first), named
# "<queue>:<step>" (the first plain "<queue>"), and a worker empties the higher ones first.
PRIORITY_STEPS = list(range(10))
PRIORITY_SEP = ":"


def queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold a queue's messages, one per priority step."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def celery_config(settings: Settings) -> dict[str, object]:
    return {
        "broker_url": settings.redis_url,
        "task_ignore_result": True,  # state lives in SQL, never in a result backend
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": settings.queue_name,
        # All three declared, so Flower's broker page shows every queue (each worker names its own with -Q).
        "task_queues": [Queue(name) for name in settings.queue_names],
        "task_routes": {
            "markq.verify_paper": {"queue": settings.image_queue_name},
            "markq.normalise_paper": {"queue": settings.image_queue_name},
            "markq.unpack_bulk": {"queue": settings.image_queue_name},
            "markq.read_paper": {"queue": settings.ocr_queue_name},
            "markq.read_template": {"queue": settings.ocr_queue_name},
            "markq.derive_template": {"queue": settings.ocr_queue_name},
        },
        # Countdowns must stay well under the visibility timeout, or Redis would deliver the message
        # twice. Priorities give each exam a fair share (worker/base.py: fair_priority).
        "broker_transport_options": {
            "visibility_timeout": 3600,
            "queue_order_strategy": "priority",
            "priority_steps": PRIORITY_STEPS,
            "sep": PRIORITY_SEP,
        },
        "broker_connection_retry_on_startup": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        "beat_schedule": {
            "sweep-stuck-papers": {
                "task": "markq.sweep_stuck_papers",
                "schedule": settings.sweep_interval_seconds,
            },
            "send-batches": {"task": "markq.send_batches", "schedule": settings.batch_interval_seconds},
            "poll-batches": {"task": "markq.poll_batches", "schedule": settings.batch_interval_seconds},
        },
        "worker_hijack_root_logger": False,
    }


class FlaskTask(Task):
    """Every task runs inside the Flask app's context (Flask's own Celery example)."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        with self.app.flask_app.app_context():  # type: ignore[attr-defined]
            return self.run(*args, **kwargs)


def celery_init_app(app: Flask, settings: Settings) -> Celery:
    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.flask_app = app  # type: ignore[attr-defined]
    celery_app.config_from_object(celery_config(settings))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
