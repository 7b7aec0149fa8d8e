"""The happy paths of the HTTP API against a real node."""

from __future__ import annotations

import base64
import re
import socket

import pytest

from tests.harness import LOOPBACK, Node, error_code, kv_path

CONTEXT_HEADER = "X-Ringstore-Context"


@pytest.fixture(scope="module")
def api(module_nodes) -> Node:
    return module_nodes.start()


def put(node: Node, table: str, key: str, value: bytes, content_type: str | None = None,
        context: str | None = None, query: str = "") -> str:
    """PUTs and returns the new context; fails the test on anything but 204."""
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if context is not None:
        headers[CONTEXT_HEADER] = context
    reply = node.request("PUT", kv_path(table, key) + query, body=value, headers=headers)
    assert reply.status == 204, reply
    assert reply.body == b""
    return _context_of(reply)


def _context_of(reply) -> str:
    context = reply.header(CONTEXT_HEADER)
    assert context, f"no {CONTEXT_HEADER} in {reply}"
    base64.b64decode(context, validate=True)
    return context


def siblings_of(reply) -> list[tuple[str, bytes, bool]]:
    """The (content type, value, deleted) of a 300 reply, sorted."""
    assert reply.status == 300, reply
    assert reply.content_type == "application/json"
    body = reply.json()
    assert body["context"] == reply.header(CONTEXT_HEADER)
    return sorted((s["content_type"], base64.b64decode(s["value_base64"]), s["deleted"]) for s in body["siblings"])


def test_put_get_round_trip_keeps_every_byte_and_the_content_type(api):
    """A value holding all 256 byte values comes back byte for byte, with its Content-Type and a context."""
    value = bytes(range(256)) * 3
    context = put(api, "default", "round-trip", value, "application/x-ringstore-test; charset=binary")
    reply = api.request("GET", kv_path("default", "round-trip"))
    assert reply.status == 200, reply
    assert reply.body == value
    assert reply.content_type == "application/x-ringstore-test; charset=binary"
    assert _context_of(reply) == context


def test_value_without_content_type_is_octet_stream_and_empty_value_is_kept(api):
    """A PUT without Content-Type reads back as application/octet-stream; an empty body is a stored empty value."""
    put(api, "default", "no-content-type", b"raw")
    reply = api.request("GET", kv_path("default", "no-content-type"))
    assert (reply.status, reply.content_type, reply.body) == (200, "application/octet-stream", b"raw")
    put(api, "default", "empty-value", b"", "text/plain")
    reply = api.request("GET", kv_path("default", "empty-value"))
    assert (reply.status, reply.content_type, reply.body) == (200, "text/plain", b"")


def test_overwrite_with_context_leaves_a_single_value(api):
    """A write that sends the read's context supersedes the old value: one value, new content type, a newer context."""
    first = put(api, "default", "overwrite", b"v1", "text/plain")
    read = api.request("GET", kv_path("default", "overwrite"))
    second = put(api, "default", "overwrite", b"v2", "application/json", context=_context_of(read))
    assert second != first
    reply = api.request("GET", kv_path("default", "overwrite"))
    assert (reply.status, reply.body, reply.content_type) == (200, b"v2", "application/json")
    assert _context_of(reply) == second


def test_writes_without_context_become_siblings_and_a_write_with_their_context_resolves_them(api):
    """Two writes without context give 300 listing both; a write with the 300's context leaves one value."""
    put(api, "default", "conflict", b"left", "text/plain")
    put(api, "default", "conflict", b"right", "application/json")
    reply = api.request("GET", kv_path("default", "conflict"))
    assert siblings_of(reply) == [("application/json", b"right", False), ("text/plain", b"left", False)]
    body = reply.json()
    assert (body["table"], body["key"]) == ("default", "conflict")
    put(api, "default", "conflict", b"merged", "text/plain", context=body["context"])
    resolved = api.request("GET", kv_path("default", "conflict"))
    assert (resolved.status, resolved.body) == (200, b"merged")


def test_write_with_a_stale_context_is_kept_as_a_sibling(api):
    """A write whose context misses a newer version does not overwrite it: both become siblings."""
    old = put(api, "default", "stale", b"v1")
    put(api, "default", "stale", b"v2", context=old)
    put(api, "default", "stale", b"v3-from-stale-context", context=old)
    reply = api.request("GET", kv_path("default", "stale"))
    assert [value for _, value, _ in siblings_of(reply)] == [b"v2", b"v3-from-stale-context"]


def test_delete_with_context_then_get_is_404_and_the_key_can_be_written_again(api):
    """DELETE with the read's context answers 204 with a context; the key then reads 404 key_not_found; a new PUT brings it back."""
    put(api, "default", "deleted", b"soon gone")
    read = api.request("GET", kv_path("default", "deleted"))
    reply = api.request("DELETE", kv_path("default", "deleted"), headers={CONTEXT_HEADER: _context_of(read)})
    assert reply.status == 204 and reply.body == b"", reply
    tombstone_context = _context_of(reply)
    gone = api.request("GET", kv_path("default", "deleted"))
    assert gone.status == 404
    assert error_code(gone) == "key_not_found"
    put(api, "default", "deleted", b"back", context=tombstone_context)
    again = api.request("GET", kv_path("default", "deleted"))
    assert (again.status, again.body) == (200, b"back")
    put(api, "default", "never-there", b"x")
    assert api.request("DELETE", kv_path("default", "never-there"),
                       headers={CONTEXT_HEADER: _context_of(api.request("GET", kv_path("default", "never-there")))}).status == 204
    put(api, "default", "never-there", b"fresh")
    assert api.request("GET", kv_path("default", "never-there")).body == b"fresh"


def test_delete_without_context_is_a_concurrent_tombstone(api):
    """DELETE without a context does not erase what it never read: the read answers 300 with a deleted sibling."""
    put(api, "default", "blind-delete", b"kept", "text/plain")
    assert api.request("DELETE", kv_path("default", "blind-delete")).status == 204
    reply = api.request("GET", kv_path("default", "blind-delete"))
    assert siblings_of(reply) == [("", b"", True), ("text/plain", b"kept", False)]


def test_delete_of_a_missing_key_is_204(api):
    """Deleting a key that never existed answers 204 and it still reads 404."""
    reply = api.request("DELETE", kv_path("default", "no-such-key"))
    assert reply.status == 204, reply
    assert api.request("GET", kv_path("default", "no-such-key")).status == 404


KEYS = [
    "a/b/c", "/leading-slash", "trailing-slash/", "double//slash", "with space", "plus+sign", "percent%25sign",
    "query?and#hash&amp=", "\u00fcn\u00efc\u00f6d\u00e9/\u65e5\u672c\u8a9e", "emoji \U0001F389", "tab\tand\nnewline",
    ".", "..", "%",
]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_keys_with_slashes_spaces_and_unicode_round_trip(api, key):
    """Percent-encoded keys with '/', spaces, reserved characters and unicode are stored and read back under that exact key."""
    value = f"value of {key}".encode()
    put(api, "default", key, value, "text/plain; charset=utf-8")
    reply = api.request("GET", kv_path("default", key))
    assert (reply.status, reply.body) == (200, value), reply
    # The 300 body names the decoded key.
    put(api, "default", key, b"concurrent")
    assert api.request("GET", kv_path("default", key)).json()["key"] == key


def test_slash_in_a_key_may_be_literal_or_encoded(api):
    """`/v1/kv/default/a/b` and `/v1/kv/default/a%2Fb` name the same key, and neither is `a`."""
    put(api, "default", "dir/file", b"nested")
    literal = api.request("GET", kv_path("default", "dir/file", safe="/"))
    encoded = api.request("GET", "/v1/kv/default/dir%2ffile")
    assert (literal.status, literal.body) == (200, b"nested")
    assert (encoded.status, encoded.body) == (200, b"nested")
    assert api.request("GET", kv_path("default", "dir")).status == 404


def test_keys_are_case_sensitive_and_scoped_by_table(api):
    """`Key` and `key` are different keys, and a key in one table is not visible in another."""
    assert api.request("PUT", "/v1/tables/scoped").status == 201
    put(api, "default", "Key", b"upper")
    put(api, "default", "key", b"lower")
    put(api, "scoped", "Key", b"other table")
    assert api.request("GET", kv_path("default", "Key")).body == b"upper"
    assert api.request("GET", kv_path("default", "key")).body == b"lower"
    assert api.request("GET", kv_path("scoped", "Key")).body == b"other table"
    assert api.request("GET", kv_path("scoped", "key")).status == 404


def test_table_create_list_get_and_delete(api):
    """Tables are created (201, then 200 when identical), listed sorted, read, deleted; a deleted table's keys are gone when it is created again."""
    created = api.request("PUT", "/v1/tables/orders")
    assert created.status == 201, created
    definition = {"name": "orders", "n": 1, "r": 1, "w": 1, "consistency": "eventual"}
    assert created.json() == definition
    assert api.request("PUT", "/v1/tables/orders").json() == definition
    for body in (b"", b"{}", b'{"n": 1, "r": 1, "w": 1, "consistency": "eventual"}'):
        again = api.request("PUT", "/v1/tables/orders", body=body, headers={"Content-Type": "application/json"})
        assert (again.status, again.json()) == (200, definition), again
    assert api.request("GET", "/v1/tables/orders").json() == definition
    assert api.request("GET", "/v1/tables/default").json() == dict(definition, name="default")
    names = [table["name"] for table in api.request("GET", "/v1/tables").json()["tables"]]
    assert names == sorted(names) and {"default", "orders"} <= set(names)

    put(api, "orders", "order-1", b"two books")
    deleted = api.request("DELETE", "/v1/tables/orders")
    assert (deleted.status, deleted.body) == (204, b"")
    assert error_code(api.request("GET", "/v1/tables/orders")) == "table_not_found"
    assert "orders" not in [t["name"] for t in api.request("GET", "/v1/tables").json()["tables"]]
    assert error_code(api.request("GET", kv_path("orders", "order-1"))) == "table_not_found"

    assert api.request("PUT", "/v1/tables/orders").status == 201
    reply = api.request("GET", kv_path("orders", "order-1"))
    assert reply.status == 404 and error_code(reply) == "key_not_found"


def test_quorum_overrides_of_one_are_accepted(api):
    """?w=1 on PUT and DELETE and ?r=1 on GET are valid overrides on a cluster of one."""
    context = put(api, "default", "quorum", b"q", query="?w=1")
    reply = api.request("GET", kv_path("default", "quorum") + "?r=1")
    assert (reply.status, reply.body) == (200, b"q")
    assert api.request("DELETE", kv_path("default", "quorum") + "?w=1", headers={CONTEXT_HEADER: context}).status == 204
    assert api.request("GET", kv_path("default", "quorum") + "?r=1").status == 404


def test_healthz_reports_the_node_and_counts_keys(api):
    """/healthz answers JSON {status: ok, role: node, actor, keys, uptime_seconds}, and keys grows by one with a new key."""
    before = api.request("GET", "/healthz")
    assert before.status == 200 and before.content_type == "application/json"
    body = before.json()
    assert set(body) == {"status", "role", "actor", "keys", "uptime_seconds"}
    assert (body["status"], body["role"]) == ("ok", "node")
    assert re.fullmatch(r"[0-9a-f]{1,16}", body["actor"])
    assert isinstance(body["uptime_seconds"], int) and body["uptime_seconds"] >= 0
    put(api, "default", "healthz-new-key", b"1")
    after = api.request("GET", "/healthz").json()
    assert after["keys"] == body["keys"] + 1
    assert after["actor"] == body["actor"]


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + labels + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name}{{{labels}}} not in /metrics"
    return float(match.group(1))


def test_metrics_count_requests_and_storage_writes(api):
    """/metrics is Prometheus text with ringstore_http_requests_total and ringstore_storage_writes_total, and both count a PUT."""
    put(api, "default", "metrics-warmup", b"1")
    before = api.request("GET", "/metrics")
    assert before.status == 200
    assert before.content_type.startswith("text/plain")
    text = before.body.decode()
    assert "# TYPE ringstore_http_requests_total counter" in text
    assert "# TYPE ringstore_storage_writes_total counter" in text
    put_label = r'route="/v1/kv/\{table\}/\{key\}",method="PUT",status="204"'
    puts, writes = _metric(text, "ringstore_http_requests_total", put_label), _metric(text, "ringstore_storage_writes_total")
    put(api, "default", "metrics-counted", b"1")
    after = api.request("GET", "/metrics").body.decode()
    assert _metric(after, "ringstore_http_requests_total", put_label) == puts + 1
    assert _metric(after, "ringstore_storage_writes_total") >= writes + 1


def _read_responses(stream, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Reads `count` HTTP/1.1 responses with Content-Length (or none, for 204) off a socket file."""
    responses = []
    for _ in range(count):
        status = int(stream.readline().split()[1])
        headers = {}
        while (line := stream.readline().decode()) not in ("\r\n", ""):
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = stream.read(int(headers.get("content-length", "0")))
        responses.append((status, headers, body))
    return responses


def test_pipelined_requests_are_answered_in_order(api):
    """Requests sent back to back on one connection, mixing key routes (served on the event loop)
    with other routes (served by the router), are answered in the order they were sent."""
    key, other = kv_path("default", "pipelined"), kv_path("default", "pipelined-2")
    requests = (
        f"PUT {key} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfirst"
        f"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        f"GET {key} HTTP/1.1\r\nHost: x\r\n\r\n"
        f"GET /v1/tables HTTP/1.1\r\nHost: x\r\n\r\n"
        f"PUT {other} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
        f"GET {other} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((LOOPBACK, api.port), timeout=10) as connection:
        connection.sendall(requests.encode())
        stream = connection.makefile("rb")
        responses = _read_responses(stream, 6)
        assert stream.read() == b"", "the connection stays open after Connection: close"
    assert [status for status, _, _ in responses] == [204, 200, 200, 200, 204, 200]
    assert b'"status":"ok"' in responses[1][2]
    assert responses[2][2] == b"first" and responses[2][1]["content-type"] == "text/plain"
    assert b'"tables"' in responses[3][2]
    assert responses[5][2] == b"second"
    for _, headers, _ in responses:
        assert headers.get("date", "").endswith(" GMT"), headers
