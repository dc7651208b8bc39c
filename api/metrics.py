"""Prometheus metrics at /metrics (prometheus-client), for the school's IT admin.

What happens in the workers is read from where it is kept, at each scrape: papers by status and
provider calls, tokens and dollars from SQL (the ledger), queue depths from Redis; so every API
process answers the same, whichever worker did the work. HTTP requests are counted in each API
process. Off unless MARKQ_METRICS_TOKEN is set; then a scrape must bring it as a bearer token.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from api.context import bearer_token, resources
from api.errors import ApiError, not_found
from shared.models import Paper, Usage
from worker.celery_app import queue_keys

metrics = Blueprint("metrics", __name__)
REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "markq_http_requests", "API requests answered, by route and status (this process)", ["method", "route", "status"],
    registry=REGISTRY,
)  # fmt: skip


# Upper bounds of the call-duration histogram's buckets, in seconds.
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


def call_seconds(session: Any) -> HistogramMetricFamily:
    """How long live provider calls took (answered ones), by model: a histogram from the ledger."""
    family = HistogramMetricFamily(
        "markq_provider_call_seconds", "Duration of provider calls that were answered", labels=["model"]
    )
    took = Usage.seconds.isnot(None)
    columns = [func.count().filter(Usage.seconds <= bound) for bound in LATENCY_BUCKETS]
    rows = session.execute(
        select(Usage.model, *columns, func.count(), func.sum(Usage.seconds)).where(took).group_by(Usage.model)
    )
    for model, *counts in rows:
        *within, total, seconds = counts
        buckets = [(str(bound), n) for bound, n in zip(LATENCY_BUCKETS, within, strict=True)]
        family.add_metric([model], [*buckets, ("+Inf", total)], float(seconds or 0))
    return family


class StoredState(Collector):
    """Papers, provider calls and queues, read at each scrape from SQL and Redis."""

    def collect(self) -> Iterator[Any]:
        res = resources()
        with res.sessions() as session:
            papers = GaugeMetricFamily("markq_papers", "Papers by status", labels=["status"])
            for status, count in session.execute(select(Paper.status, func.count()).group_by(Paper.status)):
                papers.add_metric([str(status)], count)
            yield papers
            calls = CounterMetricFamily(
                "markq_provider_calls",
                "Provider calls by model and outcome (rate_limited: a 429)",
                labels=["model", "outcome"],
            )
            tokens = CounterMetricFamily("markq_provider_tokens", "Tokens billed", labels=["model", "kind"])
            spent = CounterMetricFamily(
                "markq_spent_usd", "Dollars spent (in-flight calls at their worst case)", labels=["model"]
            )
            rows = session.execute(
                select(
                    Usage.model,
                    Usage.outcome,
                    func.count(),
                    func.sum(Usage.prompt_tokens),
                    func.sum(Usage.cached_tokens),
                    func.sum(Usage.completion_tokens),
                    func.sum(Usage.cost_usd),
                ).group_by(Usage.model, Usage.outcome)
            )
            by_model: dict[str, list[float]] = {}
            for model, outcome, count, prompt, cached, completion, cost in rows:
                calls.add_metric([model, outcome.split(":")[0]], count)
                totals = by_model.setdefault(model, [0, 0, 0, 0.0])
                for n, value in enumerate((prompt, cached, completion, cost)):
                    totals[n] += float(value or 0)
            for model, (prompt, cached, completion, cost) in by_model.items():
                tokens.add_metric([model, "prompt"], prompt)
                tokens.add_metric([model, "cached"], cached)
                tokens.add_metric([model, "completion"], completion)
                spent.add_metric([model], cost)
            yield call_seconds(session)
            yield from (calls, tokens, spent)
        queues = GaugeMetricFamily("markq_queue_depth", "Messages waiting on each queue", labels=["queue"])
        settings = res.settings
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            for name in settings.queue_names:
                queues.add_metric([name], sum(client.llen(key) for key in queue_keys(name)))
        except redis.RedisError:
            pass  # Redis down: no queue figures in this scrape; /readyz says why
        finally:
            client.close()
        yield queues


REGISTRY.register(StoredState())


@metrics.get("/metrics")
def scrape() -> Response:
    token = resources().settings.metrics_token
    if not token:
        raise not_found("metrics (set MARKQ_METRICS_TOKEN to turn them on)")
    given = bearer_token() or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "metrics need the MARKQ_METRICS_TOKEN bearer token")
    return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)


def count_requests(app: Flask) -> None:
    @app.after_request
    def _count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response
