"""The rules of webhooks that need no database: which addresses and URLs are refused, how
a delivery is signed, and how Retry-After is read."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import ip_address
from uuid import uuid4

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from reportsvc.webhooks.addresses import (
    AddressRefusedError,
    IPAddress,
    check_host,
    parse_webhook_url,
    refusal,
)
from reportsvc.webhooks.events import webhook_id
from reportsvc.webhooks.sender import public_socket, retry_after_seconds
from reportsvc.webhooks.signing import Signer
from tests.receiver import new_secret

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "0.0.0.0": "loopback",
    "::": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "100.64.0.1": "private",
    "fd12:3456::1": "private",
    "169.254.1.1": "link-local",
    "fe80::1": "link-local",
    "169.254.169.254": "metadata",
    "169.254.170.2": "metadata",
    "fd00:ec2::254": "metadata",
    "100.100.100.200": "metadata",
    "192.0.0.192": "metadata",
    # IPv6 forms that carry a refused IPv4 address.
    "::ffff:127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "metadata",
    "64:ff9b::a01:203": "private",
    "2002:a00:1::1": "private",
}
ALLOWED = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1"]


@pytest.mark.parametrize(("address", "kind"), REFUSED.items())
def test_loopback_private_link_local_and_metadata_addresses_are_refused(
    address: str, kind: str
) -> None:
    reason = refusal(ip_address(address))
    assert reason is not None
    assert kind in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://example.com/hooks", "example.com", 443),
        ("http://example.com:8080/a?b=c", "example.com", 8080),
        ("  HTTPS://Example.com/x  ", "example.com", 443),
        ("http://[2606:4700:4700::1111]/", "2606:4700:4700::1111", 80),
    ],
)
def test_http_and_https_urls_are_taken(url: str, host: str, port: int) -> None:
    parsed = parse_webhook_url(url)
    assert (parsed.host, parsed.port) == (host, port)
    assert parsed.url == url.strip()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://example.com", "http or https"),
        ("example.com/hooks", "http or https"),
        ("https://", "host"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://example.com:99999/", "port"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/a\nb", "spaces"),
        ("https://example.com/" + "a" * 2048, "2048"),
        ("", "2048"),
    ],
)
def test_other_urls_are_refused_with_a_reason(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_webhook_url(url)


async def test_a_host_with_any_refused_address_is_refused() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        table = {
            "public.test": ["93.184.216.34"],
            "mixed.test": ["93.184.216.34", "10.0.0.7"],
            "metadata.test": ["169.254.169.254"],
        }
        return [ip_address(a) for a in table[host]]

    await check_host("public.test", 443, resolver)
    for host in ("mixed.test", "metadata.test"):
        with pytest.raises(AddressRefusedError):
            await check_host(host, 443, resolver)


async def test_localhost_is_refused_through_the_system_resolver() -> None:
    with pytest.raises(AddressRefusedError) as refused:
        await check_host("localhost", 80)
    assert refused.value.reason == "a loopback address"


def test_a_delivery_is_signed_with_every_secret_and_verifies_with_the_library() -> None:
    old, new = new_secret(), new_secret()
    body = json.dumps({"type": "report.completed", "data": {"jobId": "x"}})
    now = datetime.now(UTC)
    headers = Signer([new, old]).headers("msg_abc_0", body, now)
    assert headers["webhook-id"] == "msg_abc_0"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert [s.split(",")[0] for s in headers["webhook-signature"].split(" ")] == ["v1", "v1"]
    # A receiver that knows only one of the secrets (mid-rotation) verifies it.
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + " ", headers)


def test_the_signature_is_for_the_attempts_time_in_utc_whatever_the_zone() -> None:
    secret = new_secret()
    local = datetime.now(UTC).astimezone(timezone(timedelta(hours=5)))
    headers = Signer([secret]).headers("msg_1_0", "{}", local)
    assert headers["webhook-timestamp"] == str(int(local.timestamp()))
    Webhook(secret).verify("{}", headers)


def test_webhook_ids_are_stable_per_event_and_have_no_dots() -> None:
    job = uuid4()
    assert webhook_id(job, 0) == webhook_id(job, 0)
    assert webhook_id(job, 0) != webhook_id(job, 1)
    assert "." not in webhook_id(job, 3)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Tue, 01 Dec 2026 12:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Tue, 01 Dec 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None


def test_the_socket_factory_refuses_to_dial_a_refused_address() -> None:
    family, kind = socket.AF_INET, socket.SOCK_STREAM
    with pytest.raises(AddressRefusedError, match="loopback"):
        public_socket((family, kind, 6, "", ("127.0.0.1", 80)))
    with pytest.raises(AddressRefusedError, match="metadata"):
        public_socket((socket.AF_INET6, kind, 6, "", ("fd00:ec2::254", 80, 0, 0)))
    public_socket((family, kind, 6, "", ("93.184.216.34", 80))).close()
