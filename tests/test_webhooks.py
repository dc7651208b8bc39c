"""Webhooks: signed, retried, and only to hosts the admin allowed."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.settings import Settings
from shared.webhooks import DestinationRefused, check_destination, internal, post_pinned, signed_headers, signing_secret
from tests.helpers import make_exam, submit, wait_for, wait_until

pytestmark = pytest.mark.integration


class Receiver:
    """A school's endpoint on loopback: records what arrives, fails the first `fail` requests."""

    def __init__(self, fail: int = 0) -> None:
        self.received: list[tuple[dict, dict]] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(500)
                else:
                    receiver.received.append((dict(self.headers), {"raw": body, **json.loads(body)}))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/markq"

    def close(self) -> None:
        self.server.shutdown()


def test_a_graded_paper_and_the_finished_exam_are_told_signed_after_a_retry(live_api, auth, idle):
    receiver = Receiver(fail=1)
    try:
        created = make_exam(live_api, auth("A"), callback_url=receiver.url)
        secret = created["callback_secret"]
        assert secret.startswith("whsec_")
        assert (
            httpx.get(f"{live_api}/v1/exams/{created['id']}", headers=auth("A")).json().get("callback_secret") is None
        )
        paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), created["id"], pages=1)["id"])
        wait_until(
            lambda: len(receiver.received) >= 2,
            timeout=30,
            what=lambda: f"two webhooks received (got {[body['event'] for _, body in receiver.received]})",
        )
        events = {body["event"]: (headers, body) for headers, body in receiver.received}
        assert set(events) == {"paper.graded", "exam.done"}
        headers, body = events["paper.graded"]
        assert body["paper_id"] == paper["id"] and body["status"] == paper["status"]
        # verified as a school's receiver would, with the Standard Webhooks library
        verified = Webhook(secret).verify(body["raw"], {k.lower(): v for k, v in headers.items()})
        assert verified["paper_id"] == paper["id"]
        with pytest.raises(WebhookVerificationError):  # a body changed on the way fails
            Webhook(secret).verify(
                body["raw"].replace(b"graded", b"failed"), {k.lower(): v for k, v in headers.items()}
            )
        ids = {{k.lower(): v for k, v in h.items()}["webhook-id"] for h, _b in receiver.received}
        assert len(ids) == 2  # one id per message; the retried delivery kept its own
        assert events["exam.done"][1]["papers"] == {paper["status"]: 1}
        exam = httpx.get(f"{live_api}/v1/exams/{created['id']}", headers=auth("A")).json()
        assert exam["webhooks"] == {"pending": 0, "delivered": 2, "failed": 0}
    finally:
        receiver.close()


def test_callbacks_go_only_to_hosts_the_admin_allowed(live_api, auth):
    refused = httpx.post(
        f"{live_api}/v1/exams",
        headers=auth("A"),
        json={
            "title": "t",
            "subject": "math",
            "grade": 3,
            "callback_url": "https://hooks.elsewhere.example/x",
            "answer_key": {"questions": [{"id": "1", "answer": "1", "points": 1}]},
        },
    )
    assert refused.status_code == 422 and "allowed callback hosts" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://10.0.0.8/x",
        "https://169.254.169.254/latest",
        "https://[::1]/x",
        "https://192.168.1.20/x",
        "https://[::ffff:127.0.0.1]/x",  # IPv4-mapped
        "https://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
        "https://[64:ff9b::a00:8]/x",  # NAT64 of 10.0.0.8
        "https://[2002:7f00:1::1]/x",  # 6to4 of 127.0.0.1
        "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/x",  # Teredo, client 10.0.0.1
    ],
)
def test_internal_addresses_are_refused_unless_the_admin_allows_them(url):
    strict = Settings(webhook_allowed_hosts=["*"], webhook_allow_private=False)
    with pytest.raises(DestinationRefused, match="internal address"):
        check_destination(url, strict)


def test_a_public_nat64_or_6to4_address_is_allowed():
    for address in ("64:ff9b::5db8:d822", "2002:5db8:d822::1"):  # 93.184.216.34 inside
        assert not internal(ipaddress.ip_address(address))


def test_a_delivery_connects_to_the_address_it_checked_not_a_second_lookup(monkeypatch):
    """DNS rebinding: the name resolves to a public address when checked and to 127.0.0.1 after;
    the delivery must go to the checked address, never to this machine's receiver."""
    hits: list[str] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            hits.append(self.headers.get("Host", ""))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1", "127.0.0.1"])  # public; no route from here
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    strict = Settings(webhook_allowed_hosts=["rebind.example"], webhook_allow_private=False, webhook_allow_http=True)
    url = f"http://rebind.example:{port}/hook"
    try:
        [address] = check_destination(url, strict)
        assert address == "93.184.216.34"
        with contextlib.suppress(httpx.HTTPError):  # no route from here; wherever it went, not here
            post_pinned(url, address, b"{}", {"Content-Type": "application/json"})
        assert hits == []
        # pinned to a reachable address, the Host header is still the URL's
        post_pinned(url, "127.0.0.1", b"{}", {})
        assert hits == [f"rebind.example:{port}"]
    finally:
        server.shutdown()


def test_plain_http_is_refused_by_default():
    with pytest.raises(DestinationRefused, match="https"):
        check_destination(
            "http://school.example/x", Settings(webhook_allowed_hosts=["school.example"], webhook_allow_http=False)
        )


def test_the_signature_is_the_standard_webhooks_one():
    """Standard Webhooks' own vector: HMAC-SHA256 of "<id>.<timestamp>.<body>", base64, under v1."""
    stored = "11" * 32
    at = datetime(2026, 12, 1, tzinfo=UTC)
    headers = signed_headers(stored, "msg_markq_1", '{"a":1}', at)
    key = bytes.fromhex(stored)
    mac = hmac.new(key, f'msg_markq_1.{int(at.timestamp())}.{{"a":1}}'.encode(), hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    assert signing_secret(stored) == "whsec_" + base64.b64encode(key).decode()
