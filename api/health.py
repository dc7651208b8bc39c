"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import redis
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import text

from api.context import db, resources

blp = Blueprint("health", __name__, description="Liveness and readiness")


@blp.route("/healthz")
class Health(MethodView):
    @blp.doc(security=[])
    def get(self) -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.doc(security=[])
    def get(self) -> tuple[dict[str, Any], int]:
        """Database, Redis and storage all answer."""
        checks: dict[str, str] = {}
        res = resources()
        try:
            db().execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {exc.__class__.__name__}"
        try:
            client = redis.Redis.from_url(res.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            client.ping()
            client.close()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
        try:
            res.storage.check()
            checks["storage"] = "ok"
        except Exception as exc:
            checks["storage"] = f"error: {exc}"
        ready = all(v == "ok" for v in checks.values())
        if not ready:
            return {"error": {"code": "not_ready", "message": "a dependency is down", "details": checks}}, 503
        return {"status": "ready", "checks": checks}, 200
