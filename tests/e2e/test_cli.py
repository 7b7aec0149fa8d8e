"""`ringstore put/get/delete` against a real node: output, exit codes and messages."""

from __future__ import annotations

import re

import pytest

from tests.harness import Node, kv_path, run_cli, unused_loopback_port

STORED_LINE = re.compile(r"^stored (\S+)/(.+) \((\d+) bytes\) context=([A-Za-z0-9+/=]+)\n$")
SIBLINGS_LINE = re.compile(r"^(\d+) concurrent versions; write with --context (\S+) to resolve them:$", re.MULTILINE)


@pytest.fixture(scope="module")
def server(module_nodes) -> Node:
    return module_nodes.start()


@pytest.fixture
def cli(ringstore_bin, server):
    """Runs `ringstore <command> --url <node> ...`."""
    def run(command: str, *args: str, input: bytes | None = None, url: str | None = None):
        return run_cli(ringstore_bin, command, "--url", url or server.url, *args, input=input)
    return run


def test_put_get_delete_round_trip(cli, server):
    """put prints what it stored and exits 0; get prints the value and exits 0; delete with the context exits 0 and the key is gone."""
    put = cli("put", "cli-key", "hello world")
    assert put.returncode == 0, put.stderr
    stored = STORED_LINE.match(put.stdout.decode())
    assert stored, put.stdout
    assert stored.groups()[:3] == ("default", "cli-key", "11")
    assert server.request("GET", kv_path("default", "cli-key")).header("X-Ringstore-Context") == stored.group(4)

    get = cli("get", "cli-key")
    assert (get.returncode, get.stdout) == (0, b"hello world"), get.stderr

    verbose = cli("get", "--verbose", "cli-key")
    assert verbose.returncode == 0 and verbose.stdout == b"hello world"
    assert b"content-type: text/plain; charset=utf-8" in verbose.stderr
    context = re.search(rb"context: (\S+)", verbose.stderr).group(1).decode()
    assert context == stored.group(4)

    delete = cli("delete", "cli-key", "--context", context)
    assert delete.returncode == 0, delete.stderr
    assert delete.stdout.decode().strip() == "deleted default/cli-key"
    assert server.request("GET", kv_path("default", "cli-key")).status == 404


def test_get_of_a_missing_key_exits_1_with_a_message(cli):
    """get of a key with no value exits 1, prints nothing on stdout and says 'not found' on stderr."""
    get = cli("get", "cli-never-written")
    assert get.returncode == 1
    assert get.stdout == b""
    assert b"default/cli-never-written not found" in get.stderr


def test_unreachable_server_exits_2_with_a_message(cli):
    """Every client command exits 2 and names the address on stderr when nothing listens there."""
    url = f"http://127.0.0.1:{unused_loopback_port()}"
    for command, args in (("put", ("k", "v")), ("get", ("k",)), ("delete", ("k",))):
        result = cli(command, *args, url=url)
        assert result.returncode == 2, (command, result)
        assert b"could not reach" in result.stderr and url.encode() in result.stderr, result.stderr
        assert result.stdout == b""


def test_server_error_exits_2_with_its_message(cli):
    """An error reply (unknown table, empty key, bad context) exits 2 with the server's message and code on stderr."""
    missing_table = cli("put", "--table", "no-such-table", "k", "v")
    assert missing_table.returncode == 2
    assert b"There is no table named 'no-such-table'" in missing_table.stderr
    assert b"HTTP 404, table_not_found" in missing_table.stderr
    get_missing_table = cli("get", "--table", "no-such-table", "k")
    assert get_missing_table.returncode == 2 and b"table_not_found" in get_missing_table.stderr
    empty_key = cli("put", "", "v")
    assert empty_key.returncode == 2 and b"HTTP 400, empty_key" in empty_key.stderr
    bad_context = cli("put", "k", "v", "--context", "not-a-context!")
    assert bad_context.returncode == 2 and b"invalid_context" in bad_context.stderr


def test_error_reply_sent_before_the_whole_value_is_reported(ringstore_bin, nodes, tmp_path):
    """put of a value the node refuses early (413 from Content-Length) reports the server's error every time, not a transport failure."""
    small = nodes.start("--max-value-bytes", "1000")
    source = tmp_path / "large.bin"
    source.write_bytes(b"x" * (4 << 20))
    reports = []
    for _ in range(10):
        result = run_cli(ringstore_bin, "put", "--url", small.url, "too-large", "--file", str(source))
        reports.append((result.returncode, result.stderr.decode().strip()))
    wrong = [report for report in reports if report[0] != 2 or "HTTP 413, value_too_large" not in report[1]]
    assert wrong == [], f"{len(wrong)} of {len(reports)} runs did not report the 413: {wrong[:3]}"
    assert small.request("GET", kv_path("default", "too-large")).status == 404


def test_bad_url_exits_non_zero_with_a_message(cli):
    """A --url that is not http://HOST:PORT is refused before any request, with a message naming --url."""
    for url in ("bogus", "http://127.0.0.1", "http://127.0.0.1:99999"):
        result = cli("get", "k", url=url)
        assert result.returncode not in (0, 1), (url, result)
        assert b"--url" in result.stderr, result.stderr


def test_context_round_trip_resolves_siblings(cli, server):
    """Two puts without context make get list both versions and a context; put --context with it leaves one value."""
    assert cli("put", "cli-conflict", "from laptop").returncode == 0
    assert cli("put", "cli-conflict", "from phone").returncode == 0
    get = cli("get", "cli-conflict")
    assert get.returncode == 0
    text = get.stdout.decode()
    listed = SIBLINGS_LINE.search(text)
    assert listed and listed.group(1) == "2", text
    assert "text/plain; charset=utf-8: from laptop" in text and "text/plain; charset=utf-8: from phone" in text
    resolve = cli("put", "cli-conflict", "merged", "--context", listed.group(2))
    assert resolve.returncode == 0, resolve.stderr
    assert cli("get", "cli-conflict").stdout == b"merged"
    assert server.request("GET", kv_path("default", "cli-conflict")).status == 200


def test_put_reads_standard_input_or_a_file_and_keeps_the_content_type(cli, server, tmp_path):
    """put takes the value from stdin or --file (bytes kept exactly) and stores --content-type with it."""
    data = bytes(range(256))
    piped = cli("put", "cli-stdin", "--content-type", "application/x-bytes", input=data)
    assert piped.returncode == 0, piped.stderr
    reply = server.request("GET", kv_path("default", "cli-stdin"))
    assert (reply.body, reply.content_type) == (data, "application/x-bytes")
    assert cli("get", "cli-stdin").stdout == data

    source = tmp_path / "value.bin"
    source.write_bytes(data[::-1])
    from_file = cli("put", "cli-file", "--file", str(source))
    assert from_file.returncode == 0, from_file.stderr
    assert cli("get", "cli-file").stdout == data[::-1]


def test_table_option_and_keys_with_slashes_and_unicode(cli, server):
    """--table selects the table, and keys with '/', spaces and unicode reach the server as that exact key."""
    assert server.request("PUT", "/v1/tables/cli-table").status in (200, 201)
    key = "shelf/b\u00fccher 1"
    assert cli("put", "--table", "cli-table", key, "novel").returncode == 0
    assert server.request("GET", kv_path("cli-table", key)).body == b"novel"
    assert server.request("GET", kv_path("default", key)).status == 404
    assert cli("get", "--table", "cli-table", key).stdout == b"novel"


def test_next_url_is_tried_when_the_first_is_unreachable(cli, server):
    """With --url DEAD,LIVE the command fails over to the live node and succeeds."""
    dead = f"http://127.0.0.1:{unused_loopback_port()}"
    result = cli("put", "cli-failover", "ok", url=f"{dead},{server.url}")
    assert result.returncode == 0, result.stderr
    assert server.request("GET", kv_path("default", "cli-failover")).body == b"ok"


def test_ringstore_url_environment_variable_is_the_default_url(ringstore_bin, server):
    """Without --url the client commands use $RINGSTORE_URL."""
    put = run_cli(ringstore_bin, "put", "cli-env", "from env", env={"RINGSTORE_URL": server.url})
    assert put.returncode == 0, put.stderr
    get = run_cli(ringstore_bin, "get", "cli-env", env={"RINGSTORE_URL": server.url})
    assert get.stdout == b"from env"


def _key_value_http_requests(node) -> float:
    """Requests the node served on the HTTP key-value route, from its /metrics."""
    text = node.request("GET", "/metrics").body.decode()
    prefix = 'ringstore_http_requests_total{route="/v1/kv/{table}/{key}"'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_against_a_cluster_the_commands_talk_to_the_nodes_directly(ringstore_bin, nodes):
    """With a cluster's URLs (the first one dead), put/get/delete reach the nodes over the node protocol, not the HTTP key-value API, with the same output and exit codes."""
    from tests.e2e.test_cluster import Cluster

    cluster = Cluster(nodes, 3)
    dead = f"http://127.0.0.1:{unused_loopback_port()}"
    urls = ",".join([dead] + [cluster.nodes[node_id].url for node_id in cluster.ids])

    def cli(*args: str):
        return run_cli(ringstore_bin, args[0], "--url", urls, *args[1:])

    put = cli("put", "direct-key", "direct value")
    assert put.returncode == 0, put.stderr
    stored = STORED_LINE.match(put.stdout.decode())
    assert stored and stored.groups()[:3] == ("default", "direct-key", "12"), put.stdout
    get = cli("get", "--verbose", "direct-key")
    assert (get.returncode, get.stdout) == (0, b"direct value"), get.stderr
    assert f"context: {stored.group(4)}".encode() in get.stderr
    missing = cli("get", "direct-never-written")
    assert missing.returncode == 1 and b"default/direct-never-written not found" in missing.stderr
    delete = cli("delete", "direct-key", "--context", stored.group(4))
    assert delete.returncode == 0 and delete.stdout.decode().strip() == "deleted default/direct-key", delete.stderr
    empty_key = cli("put", "", "v")
    assert empty_key.returncode == 2 and b"HTTP 400, empty_key" in empty_key.stderr
    assert sum(_key_value_http_requests(cluster.nodes[node_id]) for node_id in cluster.ids) == 0

    assert cluster.request("n2", "GET", kv_path("default", "direct-key")).status == 404
