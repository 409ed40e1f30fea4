"""Every public path pays weight and obeys a ban; operator and infrastructure paths never
redirect; answers a client can read: a 413 that urllib, requests and httpx receive, a header
guard that counts headers only, the connection cap in Binance's JSON."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from tests.support import ADMIN_TOKEN, Server

#: Public paths the table does not serve: each costs weight 1 and is banned like any other.
UNKNOWN_PUBLIC = ["/fapi/v9/nothing", "/api/v3/nope", "//papi/v1/ping", "/nope", "/healthz/", "/"]
#: Public paths of Binance's other APIs that the table serves: banned like every public path.
OTHER_PUBLIC = ["/fapi/v1/time", "/api/v3/ping"]
#: Paths outside the public API: never weighed, never banned.
EXEMPT = ["/healthz", "/metrics", "/papi/openapi.json"]


def test_unknown_public_paths_are_weighed(server: Server) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        used = int(client.get("/papi/v1/ping").headers["X-MBX-USED-WEIGHT-1M"])
        for path in UNKNOWN_PUBLIC:
            r = client.get(path)
            assert (r.status_code, r.json()["code"]) == (404, -1000), (path, r.text)
            now = int(r.headers["X-MBX-USED-WEIGHT-1M"])
            assert now >= used + 1, path  # weight 1 (other tests may share this IP's minute)
            used = now
        for path in EXEMPT:
            r = client.get(path)
            assert r.status_code == 200, path
            assert "X-MBX-USED-WEIGHT-1M" not in r.headers, path
        # /readyz is infrastructure whether or not this server serves it (issue 11 adds it)
        assert "X-MBX-USED-WEIGHT-1M" not in client.get("/readyz").headers


@pytest.mark.parametrize(
    "path", ["/healthz/", "/metrics/", "/admin/v1/accounts/", "/admin/v1/verify/", "/admin/v1/"]
)
def test_trailing_slashes_answer_a_json_404_never_a_redirect(server: Server, path: str) -> None:
    r = httpx.get(server.base_url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 404, (path, r.status_code, r.headers)
    assert r.headers["content-type"] == "application/json"
    assert r.json()["code"] == -1000


@pytest.fixture
def ban_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "ban", ["--ip-weight-limit", "3", "--ban-after-429s", "1"])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_a_banned_ip_is_refused_on_every_public_path(ban_server: Server) -> None:
    with httpx.Client(base_url=ban_server.base_url) as client:
        statuses = [client.get("/fapi/v9/nothing").status_code for _ in range(6)]
        assert statuses[:3] == [404, 404, 404]  # unknown paths pay weight 1 ...
        assert 429 in statuses and statuses[-1] == 418  # ... and earn the ban like any other
        for path in [*UNKNOWN_PUBLIC, *OTHER_PUBLIC, "/papi/v1/ping", "/papi/v1/balance"]:
            r = client.get(path)
            assert (r.status_code, r.json()["code"]) == (418, -1003), (path, r.text)
            assert "Retry-After" in r.headers
        for path in EXEMPT:
            assert client.get(path).status_code == 200, path
        r = client.get("/admin/v1/verify", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200


# -- oversized bodies: the 413 reaches every client ---------------------------------------------

BIG = b"amount=" + b"1" * 1_000_000


@pytest.mark.parametrize("path", ["/papi/v1/bnb-transfer", "/admin/v1/accounts"])
def test_urllib_reads_the_413(server: Server, path: str) -> None:
    request = urllib.request.Request(
        server.base_url + path,
        data=BIG,
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 413
    assert json.loads(info.value.read())["code"] == -1101


@pytest.mark.parametrize("path", ["/papi/v1/bnb-transfer", "/admin/v1/accounts"])
def test_requests_reads_the_413(server: Server, path: str) -> None:
    r = requests.post(
        server.base_url + path,
        data=BIG,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert (r.status_code, r.json()["code"]) == (413, -1101)


@pytest.mark.parametrize("path", ["/papi/v1/bnb-transfer", "/admin/v1/accounts"])
def test_httpx_reads_the_413_and_keeps_its_connection(server: Server, path: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        r = client.post(path, content=BIG, headers=headers)
        assert (r.status_code, r.json()["code"]) == (413, -1101)
        assert client.get("/papi/v1/ping").status_code == 200  # the connection still works


def _exchange(server: Server, request: bytes) -> bytes:
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_the_header_guard_counts_headers_only(server: Server) -> None:
    """A 40 KB operator body under the operator body limit, sent in one write with its
    headers, is the operator API's to judge (accepted), not a 431."""
    body = b'{"label": "forty-kb"' + b" " * 40_000 + b"}"
    head = (
        f"POST /admin/v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = _exchange(server, head + body)
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:200]
    # headers over the guard are still refused, readably
    big_header = b"X-Big: " + b"y" * 40_000 + b"\r\n"
    answer = _exchange(server, b"GET /papi/v1/ping HTTP/1.1\r\nHost: x\r\n" + big_header + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == -1101


@pytest.fixture
def capped_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "cap", ["--max-connections", "2"])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_connection_cap_answers_binance_json(capped_server: Server) -> None:
    host, port = capped_server.base_url.removeprefix("http://").split(":")
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
    try:
        answers = []
        for sock in held:
            sock.sendall(b"GET /papi/v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
            answers.append(sock.recv(65536))
        busy = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
        assert busy, answers
        head, _, body = busy[0].partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower()
        assert json.loads(body) == {
            "code": -1008,
            "msg": "Server is currently overloaded with other requests. "
            "Please try again in a few minutes.",
        }
    finally:
        for sock in held:
            sock.close()
