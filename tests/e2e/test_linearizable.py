"""Linearizable tables through the HTTP API: table creation, reads and writes with
ETag, If-Match and If-None-Match, bounded counters, capped sets, and every refusal
with its status, error code and extra fields, each refusal leaving the store as it
was.

Every test that takes `api` runs three times: against a node alone (n=1), and on a
cluster of three nodes joined to two ring servers (n=3), once through a ring server
and once straight to a node. Each of the three has its own table."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import pytest

from tests.harness import Reply, error_code, kv_path
from tests.lincheck import INT64_MAX, INT64_MIN
from tests.ring_harness import RingCluster

KIND = "X-Ringstore-Kind"
ETAG = re.compile(r'^"([1-9][0-9]*)"$')
TARGETS = ["single-node", "ring-server", "cluster-node"]


# ---------------------------------------------------------------------------
# Where requests go


@pytest.fixture(scope="module")
def single(module_nodes):
    return module_nodes.start()


@pytest.fixture(scope="module")
def ring(ringstore_bin, tmp_path_factory):
    cluster = RingCluster(ringstore_bin, tmp_path_factory.mktemp("ring"), node_count=3)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class Target:
    """One process to send requests to, every process that must learn a new table,
    the cluster size, and the linearizable table of this target."""

    def __init__(self, name: str, server, everyone: list, size: int):
        self.name = name
        self.server = server
        self.everyone = everyone
        self.size = size
        self.table = f"lin-{name}"

    def request(self, method: str, path: str, **kwargs) -> Reply:
        return self.server.request(method, path, **kwargs)

    def create_table(self, name: str, definition: dict) -> Reply:
        """PUT /v1/tables/{name}; once it exists, waits until every process knows it."""
        reply = self.request("PUT", f"/v1/tables/{name}", body=json.dumps(definition))
        if reply.status in (200, 201):
            wait_for_table(self.everyone, name)
        return reply

    def path(self, key: str, operation: str | None = None, **query) -> str:
        """The key's path, with `/{operation}` and a query string when given."""
        path = kv_path(self.table, key)
        if operation is not None:
            path += "/" + operation
        if query:
            path += "?" + urlencode(query, quote_via=quote)
        return path


def wait_for_table(processes: list, name: str, timeout: float = 10.0) -> None:
    for proc in processes:
        deadline = time.monotonic() + timeout
        while proc.request("GET", f"/v1/tables/{name}").status != 200:
            assert time.monotonic() < deadline, f"{getattr(proc, 'name', proc)} never learned table {name}"
            time.sleep(0.05)


@pytest.fixture(scope="module", params=TARGETS)
def api(request) -> Target:
    if request.param == "single-node":
        node = request.getfixturevalue("single")
        target = Target(request.param, node, [node], 1)
    else:
        cluster: RingCluster = request.getfixturevalue("ring")
        everyone = [*cluster.ring_servers.values(), *cluster.nodes.values()]
        server = cluster.ring_servers["rs2"] if request.param == "ring-server" else cluster.nodes["n2"]
        target = Target(request.param, server, everyone, 3)
    created = target.create_table(target.table, {"consistency": "linearizable"})
    assert created.status == 201, created
    return target


# ---------------------------------------------------------------------------
# Replies


def etag_of(reply: Reply) -> int:
    """The version in the reply's ETag, which must be a quoted decimal number."""
    value = reply.header("ETag")
    assert value is not None, f"no ETag in {reply}"
    match = ETAG.match(value)
    assert match, f"ETag {value!r} is not a quoted decimal number"
    return int(match.group(1))


def refusal(reply: Reply, status: int, code: str, **extra) -> dict:
    """Asserts a JSON error with exactly `error`, `message` and the given extra fields and values."""
    assert reply.status == status, reply
    assert reply.content_type == "application/json", reply
    body = reply.json()
    assert set(body) == {"error", "message", *extra}, reply
    assert body["error"] == code, reply
    assert isinstance(body["message"], str) and body["message"], reply
    for name, value in extra.items():
        assert body[name] == value, f"{name}: {body[name]!r} != {value!r} in {reply}"
    return body


def state(api: Target, key: str) -> tuple:
    """Everything a read shows of a key: status, ETag, kind, content type, body."""
    reply = api.request("GET", api.path(key))
    return reply.status, reply.header("ETag"), reply.header(KIND), reply.content_type, reply.body


def put(api: Target, key: str, value: bytes, headers: dict | None = None) -> int:
    """PUTs and returns the new version; fails the test on anything but 204."""
    reply = api.request("PUT", api.path(key), body=value, headers=headers or {})
    assert reply.status == 204, reply
    assert reply.body == b""
    return etag_of(reply)


def delete(api: Target, key: str, headers: dict | None = None) -> Reply:
    reply = api.request("DELETE", api.path(key), headers=headers or {})
    assert reply.status == 204, reply
    assert reply.body == b""
    return reply


def add(api: Target, key: str, delta, **bounds) -> Reply:
    return api.request("POST", api.path(key, "add", delta=delta, **bounds))


def set_add(api: Target, key: str, member: str, **cap) -> Reply:
    return api.request("POST", api.path(key, "set-add", member=member, **cap))


def set_remove(api: Target, key: str, member: str) -> Reply:
    return api.request("POST", api.path(key, "set-remove", member=member))


def counter(reply: Reply) -> int:
    """The value of a 200 counter reply, checking its kind and content type."""
    assert reply.status == 200, reply
    assert reply.content_type == "application/json" and reply.header(KIND) == "counter", reply
    body = reply.json()
    assert set(body) == {"value"}, reply
    return body["value"]


def members(reply: Reply) -> list[str]:
    """The members of a 200 set reply, checking its kind, content type, order and count."""
    assert reply.status == 200, reply
    assert reply.content_type == "application/json" and reply.header(KIND) == "set", reply
    body = reply.json()
    assert set(body) == {"members", "count"}, reply
    assert body["members"] == sorted(body["members"]) and len(set(body["members"])) == len(body["members"]), reply
    assert body["count"] == len(body["members"]), reply
    return body["members"]


def absent(api: Target, key: str) -> None:
    reply = api.request("GET", api.path(key))
    assert reply.status == 404 and error_code(reply) == "key_not_found", reply
    assert reply.header("ETag") is None and reply.header(KIND) is None, reply


# ---------------------------------------------------------------------------
# Tables


def test_a_linearizable_table_is_created_with_majority_quorums(api):
    """PUT /v1/tables with consistency linearizable answers 201 with n (default min(3, nodes)) and
    r = w = n/2+1; the same PUT again answers 200; GET and the table list show it."""
    name = f"{api.table}-create"
    majority = api.size // 2 + 1
    definition = {"name": name, "n": api.size, "r": majority, "w": majority, "consistency": "linearizable"}
    created = api.create_table(name, {"consistency": "linearizable"})
    assert (created.status, created.content_type, created.json()) == (201, "application/json", definition), created
    again = api.request("PUT", f"/v1/tables/{name}", body=b'{"consistency": "linearizable"}')
    assert (again.status, again.json()) == (200, definition), again
    assert api.request("GET", f"/v1/tables/{name}").json() == definition
    assert definition in api.request("GET", "/v1/tables").json()["tables"]
    if api.size == 3:
        for n, quorum in ((1, 1), (2, 2), (3, 2)):
            reply = api.create_table(f"{name}-n{n}", {"consistency": "linearizable", "n": n})
            assert reply.status == 201, reply
            assert reply.json() == {"name": f"{name}-n{n}", "n": n, "r": quorum, "w": quorum, "consistency": "linearizable"}


@pytest.mark.parametrize("body", [{"r": 1}, {"w": 1}, {"r": 1, "w": 1}, {"n": 1, "r": 1, "w": 1}],
                         ids=["r", "w", "r and w", "n, r and w"])
def test_r_or_w_for_a_linearizable_table_is_refused(api, body):
    """Giving r or w for a linearizable table is 400 invalid_table, and no table is created."""
    name = f"{api.table}-quorum"
    reply = api.request("PUT", f"/v1/tables/{name}", body=json.dumps({"consistency": "linearizable", **body}))
    assert reply.status == 400 and error_code(reply) == "invalid_table", reply
    assert api.request("GET", f"/v1/tables/{name}").status == 404
    assert name not in [table["name"] for table in api.request("GET", "/v1/tables").json()["tables"]]


def test_a_table_keeps_its_consistency(api):
    """A linearizable table cannot be redefined as eventual, nor the default table as linearizable: 409 table_exists, nothing changes."""
    before = api.request("GET", f"/v1/tables/{api.table}").json()
    reply = api.request("PUT", f"/v1/tables/{api.table}", body=b'{"consistency": "eventual"}')
    assert reply.status == 409 and error_code(reply) == "table_exists", reply
    assert api.request("GET", f"/v1/tables/{api.table}").json() == before
    default = api.request("GET", "/v1/tables/default").json()
    reply = api.request("PUT", "/v1/tables/default", body=b'{"consistency": "linearizable"}')
    assert reply.status == 409 and error_code(reply) == "table_exists", reply
    assert api.request("GET", "/v1/tables/default").json() == default


# ---------------------------------------------------------------------------
# Bytes: GET, HEAD, PUT, DELETE with ETag


def test_put_get_head_round_trip_with_etag_kind_and_content_type(api):
    """A never-written key reads 404 key_not_found; PUT answers 204 with ETag "1", then "2";
    GET returns the bytes, their Content-Type (octet-stream by default), the ETag and kind
    bytes; HEAD the same status and headers without a body."""
    absent(api, "bytes")
    head = api.request("HEAD", api.path("bytes"))
    assert (head.status, head.body) == (404, b""), head
    value = bytes(range(256)) * 2
    assert put(api, "bytes", value, {"Content-Type": "application/x-test; charset=binary"}) == 1
    reply = api.request("GET", api.path("bytes"))
    assert (reply.status, reply.body, reply.content_type) == (200, value, "application/x-test; charset=binary"), reply
    assert (etag_of(reply), reply.header(KIND)) == (1, "bytes")
    head = api.request("HEAD", api.path("bytes"))
    assert (head.status, head.body, head.header("ETag"), head.header(KIND)) == (200, b"", '"1"', "bytes"), head
    assert head.content_type == "application/x-test; charset=binary"
    assert put(api, "bytes", b"second") == 2
    reply = api.request("GET", api.path("bytes"))
    assert (reply.body, reply.content_type, etag_of(reply), reply.header(KIND)) == (b"second", "application/octet-stream", 2, "bytes")
    assert put(api, "bytes", b"") == 3
    reply = api.request("GET", api.path("bytes"))
    assert (reply.status, reply.body, etag_of(reply)) == (200, b"", 3)


def test_delete_makes_the_key_absent_and_versions_go_on(api):
    """DELETE answers 204 and the key reads 404 (GET and HEAD); deleting an absent key is
    also 204; a new PUT continues the versions: a delete counts as a change."""
    assert put(api, "deleted", b"v1") == 1
    delete(api, "deleted")
    absent(api, "deleted")
    head = api.request("HEAD", api.path("deleted"))
    assert (head.status, head.body, head.header("ETag")) == (404, b"", None), head
    delete(api, "deleted")
    absent(api, "deleted")
    assert put(api, "deleted", b"v3") == 3
    delete(api, "never-written")
    absent(api, "never-written")


def test_if_match_writes_only_over_the_current_etag(api):
    """PUT and DELETE with If-Match of the current ETag apply; with an older one they get 412
    precondition_failed with the current ETag in the header and in current_etag, and change nothing."""
    assert put(api, "cas", b"one", {"Content-Type": "text/plain"}) == 1
    assert put(api, "cas", b"two", {"If-Match": '"1"', "Content-Type": "text/plain"}) == 2
    before = state(api, "cas")
    for method, body in (("PUT", b"lost update"), ("DELETE", None)):
        reply = api.request(method, api.path("cas"), body=body, headers={"If-Match": '"1"'})
        refusal(reply, 412, "precondition_failed", current_etag='"2"')
        assert reply.header("ETag") == '"2"', reply
        assert state(api, "cas") == before
    assert before[4] == b"two"
    delete(api, "cas", {"If-Match": '"2"'})
    absent(api, "cas")


def test_if_match_on_an_absent_key_fails_without_an_etag(api):
    """If-Match on a never-written or deleted key is 412 with current_etag null and no ETag header; the key stays absent."""
    put(api, "cas-gone", b"x")
    delete(api, "cas-gone")
    for key in ("cas-never", "cas-gone"):
        for method, body in (("PUT", b"x"), ("DELETE", None)):
            for condition in ('"1"', '"2"', "*"):
                reply = api.request(method, api.path(key), body=body, headers={"If-Match": condition})
                refusal(reply, 412, "precondition_failed", current_etag=None)
                assert reply.header("ETag") is None, reply
                absent(api, key)


def test_if_none_match_star_only_creates(api):
    """PUT with If-None-Match: * creates an absent key (204); on an existing key it is 412 with
    that key's ETag and changes nothing; after a delete it creates again."""
    assert put(api, "create-only", b"first", {"If-None-Match": "*"}) == 1
    before = state(api, "create-only")
    for method, body in (("PUT", b"second"), ("DELETE", None)):
        reply = api.request(method, api.path("create-only"), body=body, headers={"If-None-Match": "*"})
        refusal(reply, 412, "precondition_failed", current_etag='"1"')
        assert reply.header("ETag") == '"1"'
        assert state(api, "create-only") == before
    delete(api, "create-only")
    assert put(api, "create-only", b"again", {"If-None-Match": "*"}) == 3
    assert api.request("GET", api.path("create-only")).body == b"again"
    delete(api, "create-only-never", {"If-None-Match": "*"})
    absent(api, "create-only-never")


def test_if_match_star_needs_an_existing_key(api):
    """PUT and DELETE with If-Match: * apply when the key exists, whatever its version."""
    put(api, "exists", b"a")
    put(api, "exists", b"b")
    assert put(api, "exists", b"c", {"If-Match": "*"}) == 3
    delete(api, "exists", {"If-Match": "*"})
    absent(api, "exists")
    refusal(api.request("PUT", api.path("exists"), body=b"d", headers={"If-Match": "*"}), 412, "precondition_failed", current_etag=None)
    absent(api, "exists")


def test_an_etag_from_before_a_delete_never_matches_after_re_creation(api):
    """A key written, deleted and written again never hands out an ETag it had before the
    delete, so If-Match with an old ETag fails even though the key exists again."""
    seen = {put(api, "reborn", b"first")}
    delete(api, "reborn")
    recreated = put(api, "reborn", b"second", {"If-None-Match": "*"})
    assert recreated not in seen
    for old in seen:
        reply = api.request("PUT", api.path("reborn"), body=b"stale", headers={"If-Match": f'"{old}"'})
        refusal(reply, 412, "precondition_failed", current_etag=f'"{recreated}"')
    assert api.request("GET", api.path("reborn")).body == b"second"
    # A counter started on the deleted key goes on from its versions too.
    delete(api, "reborn")
    reply = add(api, "reborn", 5)
    assert counter(reply) == 5 and etag_of(reply) > recreated + 1
    refusal(api.request("DELETE", api.path("reborn"), headers={"If-Match": f'"{recreated}"'}), 412, "precondition_failed",
            current_etag=reply.header("ETag"))


def test_an_etag_matches_only_as_the_server_spelled_it(api):
    """ETags compare as strings: If-Match "01" or "+1" is not the ETag "1" (refused as malformed
    or as failed, never applied), and nothing is written or deleted."""
    put(api, "spelling", b"v1")
    before = state(api, "spelling")
    for spelled in ('"01"', '"+1"', '"1 "'):
        for method, body in (("PUT", b"respelled"), ("DELETE", None)):
            reply = api.request(method, api.path("spelling"), body=body, headers={"If-Match": spelled})
            assert reply.status in (400, 412), (method, spelled, reply)
            assert state(api, "spelling") == before


# ---------------------------------------------------------------------------
# Counters


def test_counter_add_counts_from_zero_and_stays_within_bounds(api):
    """add on an absent key starts from 0; each add answers 200 {"value"} with the next ETag and
    kind counter; bounds allow reaching them exactly; delta 0 changes nothing; GET and HEAD show the counter."""
    reply = add(api, "counter", 5)
    assert (counter(reply), etag_of(reply)) == (5, 1)
    read = api.request("GET", api.path("counter"))
    assert (counter(read), etag_of(read)) == (5, 1)
    head = api.request("HEAD", api.path("counter"))
    assert (head.status, head.body, head.header(KIND), head.header("ETag")) == (200, b"", "counter", '"1"'), head
    reply = add(api, "counter", -3)
    assert (counter(reply), etag_of(reply)) == (2, 2)
    reply = add(api, "counter", 8, min=0, max=10)
    assert (counter(reply), etag_of(reply)) == (10, 3)
    reply = add(api, "counter", 0)
    assert (counter(reply), etag_of(reply)) == (10, 3)
    reply = add(api, "counter", -10, min=0, max=10)
    assert (counter(reply), etag_of(reply)) == (0, 4)
    reply = add(api, "counter", -7)
    assert (counter(reply), etag_of(reply)) == (-7, 5)
    reply = add(api, "counter", INT64_MAX, min=INT64_MIN, max=INT64_MAX)
    assert counter(reply) == INT64_MAX - 7
    reply = add(api, "counter", 7)
    assert counter(reply) == INT64_MAX
    read = api.request("GET", api.path("counter"))
    assert (counter(read), etag_of(read)) == (INT64_MAX, 7)


def test_counter_refusals_report_the_numbers_and_change_nothing(api):
    """An add that would leave [min, max] (or overflow 64 bits) is 409 counter_out_of_bounds
    with the current value, delta, min and max; the value and its ETag stay as they were."""
    add(api, "bounded", 10)
    before = state(api, "bounded")
    cases = [
        (dict(delta=1, max=10), dict(value=10, delta=1, min=INT64_MIN, max=10)),
        (dict(delta=-11, min=0), dict(value=10, delta=-11, min=0, max=INT64_MAX)),
        (dict(delta=-1, min=10, max=10), None),
        (dict(delta=0, min=20, max=30), dict(value=10, delta=0, min=20, max=30)),
        (dict(delta=INT64_MAX), dict(value=10, delta=INT64_MAX, min=INT64_MIN, max=INT64_MAX)),
    ]
    for query, extra in cases:
        reply = api.request("POST", api.path("bounded", "add", **query))
        extra = extra or dict(value=10, delta=query["delta"], min=query["min"], max=query["max"])
        refusal(reply, 409, "counter_out_of_bounds", **extra)
        assert state(api, "bounded") == before
    # On an absent key, the value refused is 0 and the key stays absent.
    refusal(add(api, "bounded-absent", -1, min=0), 409, "counter_out_of_bounds", value=0, delta=-1, min=0, max=INT64_MAX)
    absent(api, "bounded-absent")


def test_operations_on_a_key_of_another_kind_are_wrong_kind(api):
    """add on bytes or a set, set-add and set-remove on bytes or a counter: 409 wrong_kind, nothing changes.
    A deleted key takes any kind again."""
    put(api, "kind-bytes", b"raw")
    add(api, "kind-counter", 1)
    set_add(api, "kind-set", "m")
    attempts = [
        ("kind-bytes", lambda key: add(api, key, 1)),
        ("kind-bytes", lambda key: set_add(api, key, "m")),
        ("kind-bytes", lambda key: set_remove(api, key, "m")),
        ("kind-counter", lambda key: set_add(api, key, "m")),
        ("kind-counter", lambda key: set_remove(api, key, "m")),
        ("kind-set", lambda key: add(api, key, 1)),
    ]
    for key, attempt in attempts:
        before = state(api, key)
        refusal(attempt(key), 409, "wrong_kind")
        assert state(api, key) == before
    delete(api, "kind-bytes")
    assert members(set_add(api, "kind-bytes", "now a set")) == ["now a set"]
    delete(api, "kind-set")
    reply = add(api, "kind-set", 3)
    assert counter(reply) == 3 and etag_of(reply) == 3


# ---------------------------------------------------------------------------
# Sets


def test_set_add_and_remove_keep_members_sorted(api):
    """set-add answers 200 {"members" sorted, "count"} with the next ETag and kind set; adding a
    member already there or removing one that is not changes nothing (same ETag)."""
    reply = set_add(api, "set", "b")
    assert (members(reply), etag_of(reply)) == (["b"], 1)
    set_add(api, "set", "c")
    reply = set_add(api, "set", "a")
    assert (members(reply), etag_of(reply)) == (["a", "b", "c"], 3)
    reply = set_add(api, "set", "a")
    assert (members(reply), etag_of(reply)) == (["a", "b", "c"], 3)
    read = api.request("GET", api.path("set"))
    assert (members(read), etag_of(read)) == (["a", "b", "c"], 3)
    head = api.request("HEAD", api.path("set"))
    assert (head.status, head.body, head.header(KIND), head.header("ETag")) == (200, b"", "set", '"3"'), head
    reply = set_remove(api, "set", "b")
    assert (members(reply), etag_of(reply)) == (["a", "c"], 4)
    reply = set_remove(api, "set", "b")
    assert (members(reply), etag_of(reply)) == (["a", "c"], 4)
    set_remove(api, "set", "a")
    reply = set_remove(api, "set", "c")
    assert (members(reply), etag_of(reply)) == ([], 6)
    read = api.request("GET", api.path("set"))
    assert members(read) == [] and etag_of(read) == 6


def test_set_members_may_be_any_utf8_up_to_256_bytes(api):
    """Members with spaces, '&', '=', '/', '%', '+' and non-ASCII characters, and members of
    exactly 256 bytes, are stored as given."""
    odd = ["with space", "a&b=c", "slash/and?query#", "100%", "1+1", "caf\u00e9", "\u65e5\u672c", "x" * 256, "\u00e9" * 128]
    for member in odd:
        assert member in members(set_add(api, "odd-set", member)), member
    assert members(api.request("GET", api.path("odd-set"))) == sorted(odd)
    assert members(set_remove(api, "odd-set", "\u00e9" * 128)) == sorted(odd[:-1])


def test_a_full_set_refuses_new_members_only(api):
    """With cap C, the (C+1)th distinct member is 409 set_full with count and cap, and nothing
    changes; adding a member already present still answers 200; the cap is per request."""
    for member in ("a", "b", "c"):
        set_add(api, "capped", member, cap=3)
    before = state(api, "capped")
    refusal(set_add(api, "capped", "d", cap=3), 409, "set_full", count=3, cap=3)
    assert state(api, "capped") == before
    refusal(set_add(api, "capped", "d", cap=1), 409, "set_full", count=3, cap=1)
    assert state(api, "capped") == before
    assert members(set_add(api, "capped", "a", cap=3)) == ["a", "b", "c"]
    assert state(api, "capped") == before
    assert members(set_add(api, "capped", "d", cap=4)) == ["a", "b", "c", "d"]
    assert members(set_add(api, "capped", "e", cap=65536)) == ["a", "b", "c", "d", "e"]
    assert members(set_add(api, "capped-one", "a", cap=1)) == ["a"]
    refusal(set_add(api, "capped-one", "b", cap=1), 409, "set_full", count=1, cap=1)


def test_set_remove_on_an_absent_key_is_an_empty_set(api):
    """set-remove on a never-written or deleted key answers 200 with no members and leaves the key absent."""
    set_add(api, "empty-gone", "x")
    delete(api, "empty-gone")
    for key in ("empty-never", "empty-gone"):
        reply = set_remove(api, key, "x")
        assert reply.status == 200, reply
        assert reply.json() == {"members": [], "count": 0}, reply
        absent(api, key)


def test_post_takes_the_last_segment_as_the_operation(api):
    """Keys may contain '/': POST …/a/b/add works on key "a/b" (also spelled a%2Fb), and a key
    whose last segment is an operation name is still just a key for GET and PUT."""
    assert counter(api.request("POST", kv_path(api.table, "dir/sub", safe="/") + "/add?delta=2")) == 2
    assert counter(api.request("POST", f"/v1/kv/{api.table}/dir%2Fsub/add?delta=3")) == 5
    assert counter(api.request("GET", kv_path(api.table, "dir/sub", safe="/"))) == 5
    absent(api, "dir")
    put(api, "file/add", b"bytes under a key named like an operation")
    assert api.request("GET", kv_path(api.table, "file/add", safe="/")).header(KIND) == "bytes"
    refusal(api.request("POST", kv_path(api.table, "file/add", safe="/") + "/add?delta=1"), 409, "wrong_kind")
    assert counter(api.request("POST", kv_path(api.table, "file", safe="/") + "/add?delta=1")) == 1


# ---------------------------------------------------------------------------
# Bad input: 400 and nothing changed


SEEDED = ["seed-bytes", "seed-counter", "seed-set", "seed-absent"]
EVENTUAL_KEY = "lin-eventual-neighbour"


@pytest.fixture(scope="module")
def seeded(api):
    """The seeded keys of this target's table, and the context of a write to an eventual table."""
    put(api, "seed-bytes", b"seed", {"Content-Type": "text/plain"})
    add(api, "seed-counter", 7)
    set_add(api, "seed-set", "m")
    written = api.request("PUT", kv_path("default", f"{EVENTUAL_KEY}-{api.name}"), body=b"eventual")
    assert written.status == 204, written
    return api, written.header("X-Ringstore-Context")


def snapshot(api: Target) -> dict:
    everything = {key: state(api, key) for key in SEEDED}
    eventual = api.request("GET", kv_path("default", f"{EVENTUAL_KEY}-{api.name}"))
    everything["eventual"] = (eventual.status, eventual.body)
    everything["tables"] = api.request("GET", "/v1/tables").json()
    return everything


@dataclass
class Case:
    id: str
    method: str
    key: str
    operation: str | None = None
    query: str = ""
    headers: dict = field(default_factory=dict)
    code: str = "invalid_parameter"
    table: str | None = None
    context: bool = False


CASES = [
    # add
    Case("add without delta", "POST", "seed-counter", "add"),
    Case("add with empty delta", "POST", "seed-counter", "add", "delta="),
    Case("add delta not a number", "POST", "seed-counter", "add", "delta=abc"),
    Case("add delta not whole", "POST", "seed-counter", "add", "delta=1.5"),
    Case("add delta over int64", "POST", "seed-counter", "add", "delta=9223372036854775808"),
    Case("add delta under int64", "POST", "seed-counter", "add", "delta=-9223372036854775809"),
    Case("add min not a number", "POST", "seed-counter", "add", "delta=1&min=x"),
    Case("add max not a number", "POST", "seed-counter", "add", "delta=1&max=1e3"),
    Case("add min above max", "POST", "seed-counter", "add", "delta=1&min=5&max=1"),
    Case("add min above max, absent key", "POST", "seed-absent", "add", "delta=1&min=5&max=1"),
    # set-add and set-remove
    Case("set-add without member", "POST", "seed-set", "set-add"),
    Case("set-add empty member", "POST", "seed-set", "set-add", "member="),
    Case("set-add member of 257 bytes", "POST", "seed-set", "set-add", "member=" + "m" * 257),
    Case("set-add member of 258 bytes in 2-byte characters", "POST", "seed-absent", "set-add", "member=" + "%C3%A9" * 129),
    Case("set-add cap 0", "POST", "seed-set", "set-add", "member=new&cap=0"),
    Case("set-add cap negative", "POST", "seed-set", "set-add", "member=new&cap=-1"),
    Case("set-add cap 65537", "POST", "seed-set", "set-add", "member=new&cap=65537"),
    Case("set-add cap not a number", "POST", "seed-set", "set-add", "member=new&cap=many"),
    Case("set-add cap 0 on an absent key", "POST", "seed-absent", "set-add", "member=new&cap=0"),
    Case("set-remove without member", "POST", "seed-set", "set-remove"),
    Case("set-remove empty member", "POST", "seed-set", "set-remove", "member="),
    Case("set-remove member of 257 bytes", "POST", "seed-set", "set-remove", "member=" + "m" * 257),
    # operations
    Case("unknown operation", "POST", "seed-counter", "increment", "delta=1", code="unknown_operation"),
    Case("operation names are case-sensitive", "POST", "seed-counter", "ADD", "delta=1", code="unknown_operation"),
    Case("empty operation", "POST", "seed-counter", "", "delta=1", code="unknown_operation"),
    Case("POST on an eventual table", "POST", EVENTUAL_KEY, "add", "delta=1", code="not_linearizable", table="default"),
    Case("set-add on an eventual table", "POST", EVENTUAL_KEY, "set-add", "member=m", code="not_linearizable", table="default"),
    # eventual parameters
    Case("GET with r", "GET", "seed-bytes", query="r=1", code="not_applicable"),
    Case("GET with r on an absent key", "GET", "seed-absent", query="r=1", code="not_applicable"),
    Case("PUT with w", "PUT", "seed-bytes", query="w=1", code="not_applicable"),
    Case("DELETE with w", "DELETE", "seed-bytes", query="w=1", code="not_applicable"),
    Case("add with w", "POST", "seed-counter", "add", "delta=1&w=1", code="not_applicable"),
    Case("GET with a context", "GET", "seed-bytes", code="not_applicable", context=True),
    Case("PUT with a context", "PUT", "seed-bytes", code="not_applicable", context=True),
    Case("DELETE with a context", "DELETE", "seed-bytes", code="not_applicable", context=True),
    Case("add with a context", "POST", "seed-counter", "add", "delta=1", code="not_applicable", context=True),
    # preconditions
    Case("PUT with both preconditions", "PUT", "seed-bytes", headers={"If-Match": '"1"', "If-None-Match": "*"}, code="invalid_precondition"),
    Case("PUT both preconditions, absent key", "PUT", "seed-absent", headers={"If-Match": "*", "If-None-Match": "*"}, code="invalid_precondition"),
    Case("DELETE with both preconditions", "DELETE", "seed-bytes", headers={"If-Match": "*", "If-None-Match": "*"}, code="invalid_precondition"),
    Case("If-Match not quoted", "PUT", "seed-bytes", headers={"If-Match": "1"}, code="invalid_precondition"),
    Case("If-Match not a number", "PUT", "seed-bytes", headers={"If-Match": '"abc"'}, code="invalid_precondition"),
    Case("If-Match empty quotes", "PUT", "seed-bytes", headers={"If-Match": '""'}, code="invalid_precondition"),
    Case("If-Match unterminated", "PUT", "seed-bytes", headers={"If-Match": '"1'}, code="invalid_precondition"),
    Case("If-Match weak", "PUT", "seed-bytes", headers={"If-Match": 'W/"1"'}, code="invalid_precondition"),
    Case("If-Match negative", "DELETE", "seed-bytes", headers={"If-Match": '"-1"'}, code="invalid_precondition"),
    Case("If-Match garbage on DELETE", "DELETE", "seed-bytes", headers={"If-Match": "abc"}, code="invalid_precondition"),
    Case("If-None-Match with an ETag", "PUT", "seed-absent", headers={"If-None-Match": '"1"'}, code="invalid_precondition"),
    Case("If-None-Match weak", "PUT", "seed-absent", headers={"If-None-Match": 'W/"1"'}, code="invalid_precondition"),
    Case("If-None-Match with an ETag on DELETE", "DELETE", "seed-bytes", headers={"If-None-Match": '"1"'}, code="invalid_precondition"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_request_is_400_and_changes_nothing(seeded, case):
    """The malformed request gets 400 with its error code, and every seeded key (its value,
    ETag and kind), the eventual neighbour and the table list are as before."""
    api, context = seeded
    before = snapshot(api)
    assert before["seed-counter"][0] == 200 and before["seed-absent"][0] == 404
    key = f"{case.key}-{api.name}" if case.table == "default" else case.key
    path = kv_path(case.table or api.table, key)
    if case.operation is not None:
        path += "/" + case.operation
    if case.query:
        path += "?" + case.query
    headers = dict(case.headers)
    if case.context:
        headers["X-Ringstore-Context"] = context
    body = b"must not be written" if case.method == "PUT" else None
    reply = api.request(case.method, path, body=body, headers=headers)
    assert reply.status == 400, reply
    assert error_code(reply) == case.code, reply
    assert snapshot(api) == before, "a refused request changed the store"


# ---------------------------------------------------------------------------
# The cluster: every process serves the same keys; no majority, no service


def test_every_process_of_the_cluster_serves_the_same_value(ring):
    """A value written through one ring server reads back with the same ETag through the other
    and every node; If-Match with it works through a node; adds through each process in turn
    count exactly."""
    processes = [*ring.ring_servers.values(), *ring.nodes.values()]
    name = "lin-shared"
    assert ring.ring_servers["rs1"].request("PUT", f"/v1/tables/{name}", body=b'{"consistency": "linearizable"}').status == 201
    wait_for_table(processes, name)
    path = kv_path(name, "shared")
    reply = ring.ring_servers["rs1"].request("PUT", path, body=b"from rs1", headers={"Content-Type": "text/plain"})
    assert (reply.status, reply.header("ETag")) == (204, '"1"'), reply
    for proc in processes:
        read = proc.request("GET", path)
        assert (read.status, read.body, read.header("ETag"), read.header(KIND)) == (200, b"from rs1", '"1"', "bytes"), (proc.name, read)
    reply = ring.nodes["n3"].request("PUT", path, body=b"from n3", headers={"If-Match": '"1"'})
    assert (reply.status, reply.header("ETag")) == (204, '"2"'), reply
    stale = ring.ring_servers["rs2"].request("PUT", path, body=b"stale", headers={"If-Match": '"1"'})
    refusal(stale, 412, "precondition_failed", current_etag='"2"')
    assert stale.header("ETag") == '"2"'
    for round_ in range(2):
        for index, proc in enumerate(processes):
            reply = proc.request("POST", kv_path(name, "shared-counter") + "/add?delta=1")
            assert counter(reply) == round_ * len(processes) + index + 1, (proc.name, reply)
    for proc in processes:
        assert counter(proc.request("GET", kv_path(name, "shared-counter"))) == 2 * len(processes)


def test_without_a_majority_of_replicas_requests_fail_as_not_applied(ring):
    """With two of the three replicas killed, reads and writes on the last node get 503
    no_quorum with Retry-After and outcome not_applied; once the nodes are back, the
    key holds what it held before."""
    name = "lin-quorum"
    processes = [*ring.ring_servers.values(), *ring.nodes.values()]
    assert ring.ring_servers["rs1"].request("PUT", f"/v1/tables/{name}", body=b'{"consistency": "linearizable"}').status == 201
    wait_for_table(processes, name)
    n1 = ring.nodes["n1"]
    path = kv_path(name, "k")
    assert n1.request("PUT", path, body=b"before").status == 204
    try:
        ring.nodes["n2"].kill()
        ring.nodes["n3"].kill()
        attempts = [("GET", path, None), ("PUT", path, b"during"), ("DELETE", path, None),
                    ("POST", kv_path(name, "c") + "/add?delta=1", None), ("POST", kv_path(name, "s") + "/set-add?member=m", None)]
        for method, target, body in attempts:
            reply = n1.request(method, target, body=body)
            refusal(reply, 503, "no_quorum", outcome="not_applied")
            assert reply.header("Retry-After"), reply
    finally:
        for name_ in ("n2", "n3"):
            if not ring.nodes[name_].running:
                ring.nodes[name_].start()
        ring.wait_until_formed()
    read = ring.ring_servers["rs1"].request("GET", path)
    assert (read.status, read.body, read.header("ETag")) == (200, b"before", '"1"'), read
    assert ring.ring_servers["rs1"].request("GET", kv_path(name, "c")).status == 404
    assert ring.ring_servers["rs1"].request("GET", kv_path(name, "s")).status == 404


def create_linearizable_table(ring, name: str) -> None:
    """Creates the table through rs1, waiting out a failover an earlier test caused."""
    deadline = time.monotonic() + 20
    while (reply := ring.ring_servers["rs1"].request("PUT", f"/v1/tables/{name}", body=b'{"consistency": "linearizable"}')).status == 503:
        assert time.monotonic() < deadline, reply
        time.sleep(0.2)
    assert reply.status == 201, reply
    wait_for_table([*ring.ring_servers.values(), *ring.nodes.values()], name)


def one_round_attempts(ring) -> float:
    """ringstore_linearizable_one_round_attempts_total summed over the nodes."""
    total = 0.0
    for node in ring.nodes.values():
        text = node.request("GET", "/metrics").body.decode()
        total += sum(float(m.group(1)) for m in re.finditer(r"^ringstore_linearizable_one_round_attempts_total(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE))
    return total


def test_repeated_changes_to_a_key_skip_the_prepare(ring):
    """Each accept earns its proposer the promise of its next ballot, so the key's
    next change goes straight to the accept phase: 30 adds in a row on one key give
    30, and nearly all of them ran in one round trip."""
    name = "lin-onephase"
    create_linearizable_table(ring, name)
    before = one_round_attempts(ring)
    for _ in range(30):
        reply = ring.ring_servers["rs1"].request("POST", kv_path(name, "hot") + "/add?delta=1")
        assert reply.status == 200, reply
    assert reply.json()["value"] == 30
    assert one_round_attempts(ring) - before >= 25


def test_a_held_promise_is_not_used_without_a_majority(ring):
    """The key's leader holds a promise for it; with the other two replicas killed
    (and seen down), an add is refused as not applied, never left unknown, and once
    they are back the counter holds what it held."""
    name = "lin-onephase-quorum"
    create_linearizable_table(ring, name)
    located = ring.ring_servers["rs1"].request("GET", f"/v1/cluster/locate/{name}/c").json()["preference_list"]
    leader, others = ring.nodes[located[0]], [ring.nodes[name_] for name_ in located[1:3]]
    path = kv_path(name, "c") + "/add?delta=1"
    for _ in range(3):
        assert leader.request("POST", path).status == 200
    try:
        for node in others:
            node.kill()
        deadline = time.monotonic() + 10
        while any(m["reachable"] for m in leader.request("GET", "/v1/cluster").json()["members"] if m["id"] != located[0]):
            assert time.monotonic() < deadline, "the leader never saw the others down"
            time.sleep(0.1)
        refusal(leader.request("POST", path), 503, "no_quorum", outcome="not_applied")
    finally:
        for node in others:
            if not node.running:
                node.start()
        ring.wait_until_formed()
    read = ring.ring_servers["rs1"].request("GET", kv_path(name, "c"))
    assert read.status == 200 and read.json()["value"] == 3, read
