"""Webhooks: an exam's callback URL is told when each paper is graded and when the exam is done.

Requests follow Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
`webhook-signature` (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`), verifiable with any
Standard Webhooks library and the exam's `whsec_...` secret. Only hosts the admin allowed (MARKQ_WEBHOOK_ALLOWED_HOSTS) are called,
and never a loopback, private, link-local or otherwise internal address (nor one inside an IPv6
form: IPv4-mapped, NAT64, 6to4, Teredo) unless the admin allowed that too
(MARKQ_WEBHOOK_ALLOW_PRIVATE): the check runs on the addresses the name resolves to, at creation
and again before every delivery, and the delivery connects to the address it checked.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import uuid
from datetime import UTC, datetime
from fnmatch import fnmatch
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from shared.models import Exam, Paper, PaperStatus, WebhookDelivery, utcnow
from shared.settings import Settings

FINISHED = [PaperStatus.graded, PaperStatus.needs_review, PaperStatus.failed]


class DestinationRefused(ValueError):
    pass


def check_destination(url: str, settings: Settings) -> list[str]:
    """The addresses `url` may be called at (its host resolved once, each address vetted); raise
    DestinationRefused unless it may be called at all. Deliveries connect to these very addresses,
    so a name that resolves elsewhere a second time (DNS rebinding) cannot redirect them."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise DestinationRefused("the callback URL must be an http(s) URL")
    if parts.scheme == "http" and not settings.webhook_allow_http:
        raise DestinationRefused("the callback URL must use https")
    host = parts.hostname.lower()
    if not any(fnmatch(host, pattern.strip().lower()) for pattern in settings.webhook_allowed_hosts if pattern.strip()):
        raise DestinationRefused(f"{host} is not on the admin's list of allowed callback hosts")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})
    except socket.gaierror as exc:
        raise DestinationRefused(f"{host} does not resolve") from exc
    if not settings.webhook_allow_private:
        for address in addresses:
            if internal(ipaddress.ip_address(address.split("%")[0])):
                raise DestinationRefused(f"{host} resolves to {address}, an internal address")
    return addresses


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Not a public address, including an internal IPv4 address inside an IPv6 one: IPv4-mapped
    (::ffff:127.0.0.1), NAT64 (64:ff9b::7f00:1), 6to4 (2002:7f00:1::) or Teredo."""
    if not ip.is_global:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if any(ip in network for network in _NAT64):
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return any(v4 is not None and not v4.is_global for v4 in embedded)
    return False


def post_pinned(url: str, address: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to `url` over a connection to `address` (a vetted resolution of its host): the Host
    header and the TLS server name (SNI, and so the certificate check) stay the URL's host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    pinned = f"[{address}]" if ":" in address else address
    netloc = f"{pinned}:{parts.port}" if parts.port else pinned
    target = parts._replace(netloc=netloc).geturl()
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        return client.post(
            target,
            content=body,
            headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1]},
            extensions={"sni_hostname": host},
        )


def signing_secret(stored: str) -> str:
    """The exam's secret as Standard Webhooks writes it: `whsec_` and the key in base64 (the key is
    the 32 random bytes stored as hex). This is what the school's receiver verifies with."""
    return "whsec_" + base64.b64encode(bytes.fromhex(stored)).decode("ascii")


def signed_headers(stored: str, message_id: str, body: str, at: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of one message: webhook-id (the same on every retry, so a
    receiver can drop repeats), webhook-timestamp and webhook-signature, signed by the
    `standardwebhooks` library so any receiver's off-the-shelf verifier agrees."""
    at = at or datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(signing_secret(stored)).sign(message_id, at, body),
    }


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
        addresses = check_destination(exam.callback_url or "", settings)
    except DestinationRefused as exc:
        delivery.status, delivery.last_error = "failed", f"refused: {exc}"
        return True
    text = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":"))
    body = text.encode()
    headers = {
        "Content-Type": "application/json",
        **signed_headers(exam.callback_secret or "", f"msg_markq_{delivery.id}", text),
        "Markq-Event": delivery.event,
    }
    try:
        reply = post_pinned(exam.callback_url or "", addresses[0], body, headers)
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
