"""Webhooks: an exam's callback URL is told when each paper is graded and when the exam is done.

Requests are signed: `Markq-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the
exam's callback secret>`. Only hosts the admin allowed (MARKQ_WEBHOOK_ALLOWED_HOSTS) are called,
and never a loopback, private, link-local or otherwise internal address unless the admin allowed
that too (MARKQ_WEBHOOK_ALLOW_PRIVATE): the check runs on the addresses the name resolves to, at
creation and again before every delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
import uuid
from fnmatch import fnmatch
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Exam, Paper, PaperStatus, WebhookDelivery, utcnow
from shared.settings import Settings

FINISHED = [PaperStatus.graded, PaperStatus.needs_review, PaperStatus.failed]


class DestinationRefused(ValueError):
    pass


def check_destination(url: str, settings: Settings) -> None:
    """Raise DestinationRefused unless `url` may be called."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise DestinationRefused("the callback URL must be an http(s) URL")
    if parts.scheme == "http" and not settings.webhook_allow_http:
        raise DestinationRefused("the callback URL must use https")
    host = parts.hostname.lower()
    if not any(fnmatch(host, pattern.strip().lower()) for pattern in settings.webhook_allowed_hosts if pattern.strip()):
        raise DestinationRefused(f"{host} is not on the admin's list of allowed callback hosts")
    if settings.webhook_allow_private:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as exc:
        raise DestinationRefused(f"{host} does not resolve") from exc
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            raise DestinationRefused(f"{host} resolves to {ip}, an internal address")


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = timestamp or int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def queue_events(session: Session, paper_id: uuid.UUID) -> list[int]:
    """Deliveries for a paper that just finished, and for its exam if that was the last one.
    Returns the new delivery ids (the caller sends them after its commit)."""
    paper = session.get_one(Paper, paper_id)
    exam = session.get_one(Exam, paper.exam_id)
    if not exam.callback_url:
        return []
    deliveries = [
        WebhookDelivery(
            exam_id=exam.id,
            event="paper.graded",
            payload={
                "event": "paper.graded",
                "exam_id": str(exam.id),
                "paper_id": str(paper.id),
                "student_ref": paper.student_ref,
                "status": paper.status.value,
                "score": paper.score,
                "max_score": paper.max_score,
            },
        )
    ]
    waiting = session.scalar(
        select(func.count()).select_from(Paper).where(Paper.exam_id == exam.id, Paper.status.notin_(FINISHED))
    )
    if waiting == 0 and exam.done_notified_at is None:
        exam.done_notified_at = utcnow()
        counts = dict(
            session.execute(
                select(Paper.status, func.count()).where(Paper.exam_id == exam.id).group_by(Paper.status)
            ).all()
        )
        deliveries.append(
            WebhookDelivery(
                exam_id=exam.id,
                event="exam.done",
                payload={
                    "event": "exam.done",
                    "exam_id": str(exam.id),
                    "papers": {status.value: int(n) for status, n in counts.items()},
                },
            )
        )
    session.add_all(deliveries)
    session.flush()
    return [d.id for d in deliveries]


def deliver(session: Session, delivery_id: int, settings: Settings) -> bool:
    """One attempt; True when delivered (or refused for good), False to try again later."""
    delivery = session.get_one(WebhookDelivery, delivery_id)
    if delivery.status != "pending":
        return True
    exam = session.get_one(Exam, delivery.exam_id)
    delivery.attempts += 1
    try:
        check_destination(exam.callback_url or "", settings)
    except DestinationRefused as exc:
        delivery.status, delivery.last_error = "failed", f"refused: {exc}"
        return True
    body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "Markq-Signature": sign(exam.callback_secret or "", body),
        "Markq-Event": delivery.event,
        "Markq-Delivery": str(delivery.id),
    }
    try:
        reply = httpx.post(exam.callback_url or "", content=body, headers=headers, timeout=10, follow_redirects=False)
    except httpx.HTTPError as exc:
        delivery.last_error = f"{type(exc).__name__}: {exc}"
        return False
    if 200 <= reply.status_code < 300:
        delivery.status, delivery.delivered_at, delivery.last_error = "delivered", utcnow(), None
        return True
    delivery.last_error = f"HTTP {reply.status_code}"
    return False


def give_up(session: Session, delivery_id: int) -> None:
    delivery = session.get_one(WebhookDelivery, delivery_id)
    delivery.status = "failed"


def summary(session: Session, exam_id: uuid.UUID) -> dict[str, Any]:
    counts = dict(
        session.execute(
            select(WebhookDelivery.status, func.count())
            .where(WebhookDelivery.exam_id == exam_id)
            .group_by(WebhookDelivery.status)
        ).all()
    )
    return {status: int(counts.get(status, 0)) for status in ("pending", "delivered", "failed")}
