"""Bad input gets the right 4xx with the JSON error body, and changes nothing.

One node (started with --max-value-bytes 1000) serves the whole module. Before and
after every refused request the test takes a snapshot of the store: a set of
pre-written keys (value, content type, context), the keys the bad requests aim
at, `GET /v1/tables` and the key count of /healthz. The two must be identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.harness import Node, error_code, kv_path

VALUE_BYTES_MAX = 1000
KEY_BYTES_MAX = 1024

# Keys written before any bad request, one of each kind the store holds.
SEEDED = [
    ("default", "alpha", b"first value", "text/plain; charset=utf-8"),
    ("default", "dir/sub key \u00e9", b"nested", "application/x-nested"),
    ("default", "binary", bytes(range(256)), "application/octet-stream"),
    ("default", "limit-value", b"L" * VALUE_BYTES_MAX, "application/octet-stream"),
    ("default", "k" * KEY_BYTES_MAX, b"longest key", "text/plain"),
    ("other", "alpha", b"in another table", "text/plain"),
]
SIBLING_KEY = ("default", "siblings")
# Keys the bad requests try to write; they must stay absent.
TARGETS = [("default", "target"), ("default", "big"), ("default", "k" * (KEY_BYTES_MAX + 1)), ("other", "target")]


@pytest.fixture(scope="module")
def store(module_nodes) -> Node:
    node = module_nodes.start("--max-value-bytes", str(VALUE_BYTES_MAX))
    assert node.request("PUT", "/v1/tables/other").status == 201
    for table, key, value, content_type in SEEDED:
        reply = node.request("PUT", kv_path(table, key), body=value, headers={"Content-Type": content_type})
        assert reply.status == 204, reply
    for value in (b"left", b"right"):
        assert node.request("PUT", kv_path(*SIBLING_KEY), body=value).status == 204
    assert node.request("GET", kv_path(*SIBLING_KEY)).status == 300
    return node


def snapshot(node: Node) -> dict:
    """Everything a refused request must leave as it was."""
    state = {}
    for table, key in [(t, k) for t, k, _, _ in SEEDED] + [SIBLING_KEY] + TARGETS:
        reply = node.request("GET", kv_path(table, key))
        state[(table, key)] = (reply.status, reply.content_type, reply.header("X-Ringstore-Context"), reply.body)
    tables = node.request("GET", "/v1/tables")
    assert tables.status == 200
    state["tables"] = tables.json()
    health = node.request("GET", "/healthz")
    assert health.status == 200
    state["healthz keys"] = health.json()["keys"]
    return state


@pytest.fixture
def unchanged(store):
    """Asserts after the test that the store is exactly as before it."""
    before = snapshot(store)
    assert before[("default", "alpha")][0] == 200 and before[("default", "target")][0] == 404
    yield store
    after = snapshot(store)
    assert after == before, "a refused request changed the store"


@dataclass
class Case:
    id: str
    method: str
    path: str
    status: int
    code: str
    body: bytes | None = None
    headers: dict = field(default_factory=dict)
    chunked: bool = False
    allow: set[str] | None = None


TARGET = kv_path("default", "target")

CASES = [
    # Keys
    Case("empty key, trailing slash", "GET", "/v1/kv/default/", 400, "empty_key"),
    Case("empty key, no slash", "GET", "/v1/kv/default", 400, "empty_key"),
    Case("PUT empty key, trailing slash", "PUT", "/v1/kv/default/", 400, "empty_key", body=b"v"),
    Case("PUT empty key, no slash", "PUT", "/v1/kv/default", 400, "empty_key", body=b"v"),
    Case("DELETE empty key", "DELETE", "/v1/kv/default/", 400, "empty_key"),
    Case("PUT 1025-byte key", "PUT", kv_path("default", "k" * 1025), 400, "key_too_long", body=b"v"),
    Case("GET 1025-byte key", "GET", kv_path("default", "k" * 1025), 400, "key_too_long"),
    Case("PUT 1025-byte key of 2-byte characters", "PUT", kv_path("default", "\u00e9" * 512 + "k"), 400, "key_too_long", body=b"v"),
    Case("DELETE 1025-byte key", "DELETE", kv_path("default", "k" * 1025), 400, "key_too_long"),
    Case("PUT key not UTF-8", "PUT", "/v1/kv/default/%C3%28", 400, "key_not_utf8", body=b"v"),
    # Percent-encoding
    Case("PUT %zz in key", "PUT", "/v1/kv/default/a%zz", 400, "malformed_percent_encoding", body=b"v"),
    Case("PUT %4 at end of key", "PUT", "/v1/kv/default/a%4", 400, "malformed_percent_encoding", body=b"v"),
    Case("GET lone % in key", "GET", "/v1/kv/default/%", 400, "malformed_percent_encoding"),
    Case("DELETE %zz in key", "DELETE", "/v1/kv/default/%zz", 400, "malformed_percent_encoding"),
    Case("PUT %zz in table", "PUT", "/v1/kv/%zz/target", 400, "malformed_percent_encoding", body=b"v"),
    Case("PUT table %4", "PUT", "/v1/tables/%4", 400, "malformed_percent_encoding"),
    # Values
    Case("PUT value one byte over the limit", "PUT", kv_path("default", "big"), 413, "value_too_large", body=b"v" * 1001),
    Case("PUT value over the limit, chunked", "PUT", kv_path("default", "big"), 413, "value_too_large", body=b"v" * 1001, chunked=True),
    Case("PUT value far over the limit", "PUT", kv_path("default", "big"), 413, "value_too_large", body=b"v" * 200_000),
    Case("PUT over the limit onto an existing key", "PUT", kv_path("default", "alpha"), 413, "value_too_large", body=b"v" * 1001),
    Case("PUT content type over 256 bytes", "PUT", TARGET, 400, "content_type_too_long", body=b"v",
         headers={"Content-Type": "text/" + "x" * 252}),
    # Tables
    Case("GET unknown table", "GET", "/v1/kv/nope/target", 404, "table_not_found"),
    Case("PUT unknown table", "PUT", "/v1/kv/nope/target", 404, "table_not_found", body=b"v"),
    Case("DELETE unknown table", "DELETE", "/v1/kv/nope/target", 404, "table_not_found"),
    Case("GET table unknown", "GET", "/v1/tables/nope", 404, "table_not_found"),
    Case("DELETE table unknown", "DELETE", "/v1/tables/nope", 404, "table_not_found"),
    Case("PUT key, upper-case table", "PUT", "/v1/kv/Other/target", 400, "invalid_table_name", body=b"v"),
    Case("PUT key, reserved table _system", "PUT", "/v1/kv/_system/tables", 400, "invalid_table_name", body=b"v"),
    Case("GET key, reserved table _system", "GET", "/v1/kv/_system/tables", 400, "invalid_table_name"),
    Case("create upper-case table", "PUT", "/v1/tables/Bad", 400, "invalid_table_name"),
    Case("create table with '!'", "PUT", "/v1/tables/bad!", 400, "invalid_table_name"),
    Case("create table starting with '-'", "PUT", "/v1/tables/-bad", 400, "invalid_table_name"),
    Case("create table starting with '_'", "PUT", "/v1/tables/_bad", 400, "invalid_table_name"),
    Case("create table with a 65-character name", "PUT", "/v1/tables/" + "t" * 65, 400, "invalid_table_name"),
    Case("create table with an empty name", "PUT", "/v1/tables/", 400, "invalid_table_name"),
    Case("create table, body not JSON", "PUT", "/v1/tables/newtable", 400, "invalid_json", body=b"{n: 1"),
    Case("create table, body a JSON array", "PUT", "/v1/tables/newtable", 400, "invalid_json", body=b"[]"),
    Case("create table, n a string", "PUT", "/v1/tables/newtable", 400, "invalid_json", body=b'{"n": "1"}'),
    Case("create table, unknown consistency", "PUT", "/v1/tables/newtable", 400, "invalid_json", body=b'{"consistency": "strong"}'),
    Case("create table, n=0", "PUT", "/v1/tables/newtable", 400, "invalid_table", body=b'{"n": 0}'),
    Case("create table, n above cluster size", "PUT", "/v1/tables/newtable", 400, "invalid_table", body=b'{"n": 3}'),
    Case("create table, w above n", "PUT", "/v1/tables/newtable", 400, "invalid_table", body=b'{"n": 1, "w": 2}'),
    Case("create table, r=0", "PUT", "/v1/tables/newtable", 400, "invalid_table", body=b'{"r": 0}'),
    Case("create linearizable table with r", "PUT", "/v1/tables/newtable", 400, "invalid_table",
         body=b'{"consistency": "linearizable", "r": 1}'),
    Case("redefine default as linearizable", "PUT", "/v1/tables/default", 409, "table_exists",
         body=b'{"consistency": "linearizable"}'),
    Case("delete default table", "DELETE", "/v1/tables/default", 409, "table_protected"),
    # Methods and routes
    Case("POST to a key of an eventual table", "POST", TARGET + "/add?delta=1", 400, "not_linearizable"),
    Case("PATCH key", "PATCH", kv_path("default", "alpha"), 405, "method_not_allowed", body=b"v", allow={"GET", "HEAD", "PUT", "DELETE", "POST"}),
    Case("POST table", "POST", "/v1/tables/newtable", 405, "method_not_allowed", body=b"{}", allow={"GET", "PUT", "DELETE"}),
    Case("PATCH table", "PATCH", "/v1/tables/other", 405, "method_not_allowed", body=b"{}", allow={"GET", "PUT", "DELETE"}),
    Case("POST tables", "POST", "/v1/tables", 405, "method_not_allowed", body=b"{}", allow={"GET"}),
    Case("DELETE tables", "DELETE", "/v1/tables", 405, "method_not_allowed", allow={"GET"}),
    Case("PUT healthz", "PUT", "/healthz", 405, "method_not_allowed", body=b"x", allow={"GET"}),
    Case("POST metrics", "POST", "/metrics", 405, "method_not_allowed", body=b"x", allow={"GET"}),
    Case("unknown route", "PUT", "/v1/keys/default/target", 404, "route_not_found", body=b"v"),
    # Contexts
    Case("PUT context not base64", "PUT", TARGET, 400, "invalid_context", body=b"v", headers={"X-Ringstore-Context": "not base64!"}),
    Case("PUT context of unknown format", "PUT", kv_path("default", "alpha"), 400, "invalid_context", body=b"v",
         headers={"X-Ringstore-Context": "AAAA"}),
    Case("PUT context truncated", "PUT", kv_path("default", "alpha"), 400, "invalid_context", body=b"v",
         headers={"X-Ringstore-Context": "AQ=="}),
    Case("DELETE context garbage", "DELETE", kv_path("default", "alpha"), 400, "invalid_context",
         headers={"X-Ringstore-Context": "AQH/"}),
    Case("GET context not base64", "GET", kv_path("default", "alpha"), 400, "invalid_context",
         headers={"X-Ringstore-Context": "%%%"}),
    # Quorums
    Case("PUT w=0", "PUT", TARGET + "?w=0", 400, "invalid_quorum", body=b"v"),
    Case("PUT w above n", "PUT", TARGET + "?w=2", 400, "invalid_quorum", body=b"v"),
    Case("PUT w=-1", "PUT", TARGET + "?w=-1", 400, "invalid_quorum", body=b"v"),
    Case("DELETE w=abc", "DELETE", kv_path("default", "alpha") + "?w=abc", 400, "invalid_quorum"),
    Case("GET r=abc", "GET", kv_path("default", "alpha") + "?r=abc", 400, "invalid_quorum"),
    Case("GET r empty", "GET", kv_path("default", "alpha") + "?r=", 400, "invalid_quorum"),
    Case("GET r=0", "GET", kv_path("default", "alpha") + "?r=0", 400, "invalid_quorum"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_request_is_refused_and_changes_nothing(unchanged, case):
    """The bad request gets its 4xx status and JSON error code, and the store is unchanged afterwards."""
    reply = unchanged.request(case.method, case.path, body=case.body, headers=case.headers, chunked=case.chunked)
    assert reply.status == case.status, reply
    assert error_code(reply) == case.code, reply
    if case.allow is not None:
        assert {m.strip() for m in reply.header("Allow").split(",")} == case.allow, reply
    # The connection-level state is fine too: the next request is served normally.
    assert unchanged.request("GET", kv_path("default", "alpha")).body == b"first value"


def test_value_at_the_limit_and_key_at_the_limit_are_accepted(store):
    """A value of exactly --max-value-bytes and a key of exactly 1024 bytes (also in 2-byte characters) are stored."""
    value = bytes(range(250)) * 4
    assert len(value) == VALUE_BYTES_MAX
    path = kv_path("default", "limit-check")
    assert store.request("PUT", path, body=value).status == 204
    assert store.request("GET", path).body == value
    assert store.request("PUT", path + "-chunked", body=value, chunked=True).status == 204
    assert store.request("GET", path + "-chunked").body == value
    for key in ("q" * KEY_BYTES_MAX, "\u00e9" * (KEY_BYTES_MAX // 2)):
        assert len(key.encode()) == KEY_BYTES_MAX
        assert store.request("PUT", kv_path("default", key), body=b"edge").status == 204
        reply = store.request("GET", kv_path("default", key))
        assert (reply.status, reply.body) == (200, b"edge")


def test_too_many_siblings_is_refused_and_changes_nothing(store):
    """Once a key holds 100 concurrent versions, a 101st write or delete without context gets 409 too_many_siblings and the 100 stay."""
    path = kv_path("default", "crowded")
    for index in range(100):
        assert store.request("PUT", path, body=b"v%03d" % index).status == 204
    before = store.request("GET", path)
    assert before.status == 300 and len(before.json()["siblings"]) == 100
    for method, body in (("PUT", b"one too many"), ("DELETE", None)):
        reply = store.request(method, path, body=body)
        assert reply.status == 409, reply
        assert error_code(reply) == "too_many_siblings"
        after = store.request("GET", path)
        assert (after.status, after.header("X-Ringstore-Context"), after.json()) == (
            before.status, before.header("X-Ringstore-Context"), before.json())
    # Writing with the read's context resolves them.
    resolved = store.request("PUT", path, body=b"one", headers={"X-Ringstore-Context": before.header("X-Ringstore-Context")})
    assert resolved.status == 204
    assert store.request("GET", path).body == b"one"


def test_oversized_table_body_is_a_client_error(unchanged):
    """A PUT /v1/tables body over its 64 KiB limit gets a 4xx JSON error (not a 500), and no table is created."""
    body = b'{"n": 1' + b" " * (70 << 10) + b"}"
    reply = unchanged.request("PUT", "/v1/tables/hugebody", body=body)
    assert unchanged.request("GET", "/v1/tables/hugebody").status == 404
    assert reply.status in (400, 413), reply
    assert error_code(reply) in ("invalid_json", "value_too_large"), reply


def test_table_name_that_is_not_utf8_is_an_invalid_table_name(unchanged):
    """A table segment that decodes to bytes that are not UTF-8 is refused as invalid_table_name, not as a key error."""
    for method, path in (("PUT", "/v1/tables/%FF"), ("PUT", "/v1/kv/%FF/target")):
        reply = unchanged.request(method, path, body=b"v")
        assert reply.status == 400, reply
        assert error_code(reply) == "invalid_table_name", reply
