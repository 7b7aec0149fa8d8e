"""docs/openapi.yaml against the running server: the spec is valid, it lists exactly
the routes the server serves, and real replies match what it documents."""

from __future__ import annotations

import re

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.harness import REPO_ROOT, Reply, kv_path

SPEC_PATH = REPO_ROOT / "docs" / "openapi.yaml"
SPEC_URI = "urn:ringstore:openapi"
OPERATION_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
PROBE_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS")

# Replies a single healthy node cannot be made to give: storage failures, a full
# disk, shutting down, and no majority of a key's replicas.
UNREACHABLE_ON_ONE_NODE = {"500", "503", "507"}


# ---------------------------------------------------------------------------
# The spec as data


class Spec:
    """The parsed spec, with $ref resolution, path matching and schema validation."""

    def __init__(self, document: dict):
        self.document = document
        self.registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(document))
        self.templates = {template: self._template_pattern(template) for template in document["paths"]}

    @staticmethod
    def _template_pattern(template: str) -> re.Pattern:
        # {key} is everything after the table, '/' included; other parameters are one segment.
        pattern = re.escape(template).replace(r"\{key\}", "(?P<key>.*)")
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]*)", pattern)
        return re.compile(pattern)

    def resolve(self, node: dict) -> dict:
        while isinstance(node, dict) and "$ref" in node:
            reference = node["$ref"]
            assert reference.startswith("#/"), f"only local references are used: {reference}"
            node = self.document
            for part in reference[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def template_for(self, path: str) -> str | None:
        """The one path template that matches a concrete path (query ignored), or None."""
        path = path.split("?", 1)[0]
        matches = [template for template, pattern in self.templates.items() if pattern.fullmatch(path)]
        assert len(matches) <= 1, f"{path} matches several paths of the spec: {matches}"
        return matches[0] if matches else None

    def methods(self, template: str) -> set[str]:
        return {method for method in self.document["paths"][template] if method in OPERATION_METHODS}

    def validate(self, instance, schema: dict) -> None:
        """Validates against a schema taken from the spec; its local $refs point into the spec."""
        Draft202012Validator(_anchor_references(schema), registry=self.registry).validate(instance)

    def component_response(self, name: str) -> dict:
        return self.document["components"]["responses"][name]


def _anchor_references(node):
    if isinstance(node, dict):
        return {key: (SPEC_URI + value if key == "$ref" and value.startswith("#") else _anchor_references(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_anchor_references(item) for item in node]
    return node


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec(yaml.safe_load(SPEC_PATH.read_text()))


@pytest.fixture(scope="module")
def api(module_nodes):
    """A node with a small value limit, so that 413 costs little."""
    return module_nodes.start("--max-value-bytes", "4096")


def _media_type_for(content: dict, content_type: str | None) -> str | None:
    """The documented media type that covers a reply's Content-Type."""
    if content_type is None:
        return None
    base = content_type.split(";", 1)[0].strip().lower()
    for media in content:
        if media == base or media == "*/*" or (media.endswith("/*") and base.startswith(media[:-1])):
            return media
    return None


def check_reply(spec: Spec, method: str, path: str, reply: Reply) -> tuple[str | None, str]:
    """Asserts that `reply` is one the spec documents for `method path`; returns (template, status)."""
    where = f"{method} {path} -> {reply.status}"
    template = spec.template_for(path)
    if template is None:
        response = spec.component_response("RouteNotFound")
        assert reply.status == 404, f"{where}: a path the spec does not list must get 404 route_not_found; {reply}"
    elif method.lower() not in spec.methods(template):
        response = spec.component_response("MethodNotAllowed")
        assert reply.status == 405, f"{where}: {method} is not documented on {template}, so it must get 405; {reply}"
        allowed = {part.strip() for part in (reply.header("Allow") or "").split(",")}
        assert allowed == {m.upper() for m in spec.methods(template)}, f"{where}: Allow does not list the spec's methods"
    else:
        responses = spec.document["paths"][template][method.lower()]["responses"]
        assert str(reply.status) in responses, f"{where}: status not documented for {method} {template}; {reply}"
        response = spec.resolve(responses[str(reply.status)])

    content = response.get("content")
    if not content:
        assert reply.body == b"", f"{where}: documented without a body, but one came: {reply}"
    elif method != "HEAD":
        media = _media_type_for(content, reply.content_type)
        assert media is not None, f"{where}: Content-Type {reply.content_type} is not among {list(content)}"
        if media == "application/json":
            spec.validate(reply.json(), content[media]["schema"])
        elif media.startswith("text/"):
            reply.body.decode("utf-8")

    documented_headers = {name.lower(): spec.resolve(header) for name, header in response.get("headers", {}).items()}
    for name, header in documented_headers.items():
        value = reply.header(name)
        if header.get("required"):
            assert value is not None, f"{where}: required header {name} is missing; {reply}"
        if value is not None:
            spec.validate(value, header["schema"])
    for name in ("x-ringstore-context", "allow"):
        if reply.has_header(name):
            assert name in documented_headers, f"{where}: header {name} is sent but not documented; {reply}"
    return template, str(reply.status)


# ---------------------------------------------------------------------------
# The document itself


def test_spec_is_valid_openapi_3_1(spec):
    """docs/openapi.yaml is a valid OpenAPI 3.1 document."""
    assert str(spec.document["openapi"]).startswith("3.1"), spec.document["openapi"]
    validate_openapi(spec.document)


def _codes_in_sources() -> set[str]:
    sources = REPO_ROOT / "Sources"
    codes: set[str] = set()
    for path in sources.rglob("*.swift"):
        text = path.read_text()
        codes.update(re.findall(r'\bcode:\s*"([a-z0-9_]+)"', text))
        # InputError spells its codes in `var code` as `case .name: "code"`.
        block = re.search(r"var code: String \{(.*?)\n    \}", text, re.DOTALL)
        if block and "enum InputError" in text:
            codes.update(re.findall(r'case \.\w+:\s*"([a-z0-9_]+)"', block.group(1)))
        # Failures mapped to codes in a switch expression: `let code = switch failure { case .name: "code" … }`.
        for block in re.findall(r"let code = switch \w+ \{(.*?)\n\s*\}", text, re.DOTALL):
            codes.update(re.findall(r'case \.\w+:\s*"([a-z0-9_]+)"', block))
    return codes


def test_error_code_enum_lists_exactly_the_codes_the_server_emits(spec):
    """The ErrorCode enum names every error code in the Swift sources, and nothing else."""
    if not (REPO_ROOT / "Sources").is_dir():
        pytest.skip("no Swift sources next to the tests")
    in_sources = _codes_in_sources()
    assert len(in_sources) > 10, f"the scan of Sources/ found too few codes: {sorted(in_sources)}"
    in_spec = set(spec.document["components"]["schemas"]["ErrorCode"]["enum"])
    assert in_spec == in_sources, (
        f"missing from the spec: {sorted(in_sources - in_spec)}; in the spec but not emitted: {sorted(in_spec - in_sources)}")


def _walk_media_types(node, where="#"):
    if isinstance(node, dict):
        if "schema" in node and ("example" in node or "examples" in node):
            yield where, node
        for key, value in node.items():
            yield from _walk_media_types(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_media_types(value, f"{where}/{index}")


def test_spec_examples_match_their_schemas(spec):
    """Every example in the spec is valid against the schema beside it."""
    checked = 0
    for where, media in _walk_media_types(spec.document["paths"]):
        examples = [media["example"]] if "example" in media else [spec.resolve(e)["value"] for e in media["examples"].values()]
        schema = media["schema"]
        if spec.resolve(schema).get("contentMediaType") == "application/octet-stream":
            continue  # raw bytes: any example is fine
        for example in examples:
            spec.validate(example, schema)
            checked += 1
    for name, response in spec.document["components"]["responses"].items():
        for media in response.get("content", {}).values():
            spec.validate(media["example"], media["schema"])
            checked += 1
    for name, schema in spec.document["components"]["schemas"].items():
        if "example" in schema:
            spec.validate(schema["example"], schema)
            checked += 1
    assert checked >= 25, f"only {checked} examples checked"


# ---------------------------------------------------------------------------
# Routes: documented == served


def _concrete(template: str) -> str:
    return template.replace("{table}", "default").replace("{key}", "openapi-probe")


def test_every_documented_operation_is_served(spec, api):
    """Each path and method in the spec reaches a handler (no route_not_found, no 405) and replies as documented."""
    for template in spec.document["paths"]:
        for method in sorted(spec.methods(template)):
            path = _concrete(template)
            reply = api.request(method.upper(), path, body=b"" if method in ("put", "post", "patch") else None)
            assert reply.status != 405, f"{method.upper()} {path} is documented but answered 405: {reply}"
            if reply.status == 404 and method != "head":
                assert reply.json()["error"] != "route_not_found", f"{method.upper()} {path} is documented but not routed"
            check_reply(spec, method.upper(), path, reply)


PROBE_PATHS = [
    "/", "/healthz", "/healthz/", "/metrics", "/metrics/x", "/v1", "/v1/", "/v2/kv/default/k", "/kv/default/k",
    "/index.html", "/v1/tables", "/v1/tables/", "/v1/tables/route-probe", "/v1/tables/route-probe/extra",
    "/v1/kv", "/v1/kv/", "/v1/kv/default", "/v1/kv/default/", "/v1/kv/default/route-probe",
    "/v1/kv/default/route/probe/deep", "/v1/kv/no-such-table/k", "/v1/cluster", "/v1/cluster/ring",
    "/v1/cluster/locate/default/k", "/v1/admin/join",
]


def test_every_served_route_is_documented(spec, api):
    """Probing known and unknown paths with every method: whatever the server routes is in the spec, with the same methods."""
    routed = set()
    for path in PROBE_PATHS:
        for method in PROBE_METHODS:
            reply = api.request(method, path, body=b"" if method in ("PUT", "POST", "PATCH") else None)
            if method == "HEAD" and reply.status == 404:
                continue  # without a body, an unrouted HEAD and a missing key look alike
            not_routed = reply.status == 404 and reply.json().get("error") == "route_not_found"
            template = spec.template_for(path)
            if not_routed:
                assert template is None, f"{method} {path}: the spec lists {template}, the server has no route"
                continue
            assert template is not None, f"{method} {path} is served ({reply.status}) but no path of the spec matches it"
            check_reply(spec, method, path, reply)
            if reply.status != 405:
                routed.add((template, method.lower()))
    documented = {(template, method) for template in spec.document["paths"] for method in spec.methods(template)}
    assert routed == documented


# ---------------------------------------------------------------------------
# Real replies match the documented responses


def _scenario(api) -> list[tuple[str, str, Reply]]:
    """Requests covering every documented status a single node can give."""
    seen: list[tuple[str, str, Reply]] = []

    def send(method, path, body=None, headers=None, chunked=False):
        reply = api.request(method, path, body=body, headers=headers, chunked=chunked)
        seen.append((method, path, reply))
        return reply

    key = kv_path("default", "spec/one value")
    assert send("PUT", key, b"first", {"Content-Type": "text/plain"}).status == 204
    context = send("GET", key).header("X-Ringstore-Context")
    send("PUT", key, b"second", {"Content-Type": "text/plain", "X-Ringstore-Context": context})
    send("GET", key + "?r=1")
    siblings = kv_path("default", "spec-siblings")
    send("PUT", siblings, b"a")
    send("PUT", siblings, b"b", {"Content-Type": "application/json"})
    assert send("GET", siblings).status == 300
    send("GET", kv_path("default", "spec-missing"))
    send("GET", kv_path("default", "x" * 1025))
    send("GET", key + "?r=abc")
    send("GET", key, headers={"X-Ringstore-Context": "not base64!"})
    send("GET", "/v1/kv/default/%zz")
    send("GET", "/v1/kv/default/%ff%fe")
    send("GET", "/v1/kv/default/")
    send("GET", "/v1/kv/Not-Valid/k")
    send("GET", "/v1/kv/no-such-table/k")
    send("PUT", key, b"x", {"Content-Type": "t/" + "x" * 300})
    send("PUT", key + "?w=0", b"x")
    send("PUT", "/v1/kv/no-such-table/k", b"x")
    send("PUT", kv_path("default", "spec-big"), b"v" * 4097)
    send("PUT", kv_path("default", "spec-big-chunked"), b"v" * 4097, chunked=True)
    crowded = kv_path("default", "spec-crowded")
    for index in range(100):
        assert send("PUT", crowded, b"%d" % index).status == 204
    assert send("PUT", crowded, b"one too many").status == 409
    assert send("DELETE", crowded).status == 409
    send("DELETE", key, headers={"X-Ringstore-Context": send("GET", key).header("X-Ringstore-Context")})
    send("GET", key)
    send("DELETE", kv_path("default", "spec-never-written"))
    send("DELETE", key + "?w=abc")
    send("DELETE", "/v1/kv/no-such-table/k")
    for method in ("GET", "HEAD", "PUT", "DELETE", "POST"):
        send(method, "/v1/kv/default")
        send(method, "/v1/kv/no-such-table")
    send("HEAD", kv_path("default", "spec-siblings"))
    send("HEAD", kv_path("default", "spec-missing"))
    send("HEAD", kv_path("default", "x" * 1025))
    assert send("PUT", kv_path("default", "spec-head"), b"h").status == 204
    assert send("HEAD", kv_path("default", "spec-head")).status == 200
    send("GET", "/v1/tables")
    send("GET", "/v1/tables/default")
    send("GET", "/v1/tables/%zz")
    send("GET", "/v1/tables/no-such-table")
    send("PUT", "/v1/tables/spec-table")
    send("PUT", "/v1/tables/spec-table", b'{"n": 1}', {"Content-Type": "application/json"})
    send("PUT", "/v1/tables/spec-table", b"{not json")
    send("PUT", "/v1/tables/spec-other", b'{"n": 2}')
    send("PUT", "/v1/tables/spec-other", b'{"consistency": "linearizable"}')
    send("PUT", "/v1/tables/Spec_Bad")
    send("GET", "/v1/tables")
    send("DELETE", "/v1/tables/spec-table")
    send("DELETE", "/v1/tables/spec-table")
    send("DELETE", "/v1/tables/%4")
    send("DELETE", "/v1/tables/default")
    send("GET", "/healthz")
    send("GET", "/metrics")
    send("POST", key)
    send("PATCH", "/v1/tables/default")
    send("DELETE", "/healthz")
    send("GET", "/v1/cluster")
    send("GET", "/v1/cluster/ring")
    send("GET", "/v1/cluster/locate/default/some%2Fkey")
    send("GET", "/v1/cluster/locate/default/%zz")
    send("GET", "/v1/cluster/locate/no-such-table/k")
    _linearizable_scenario(send)
    return seen


def _linearizable_scenario(send) -> None:
    """Every reply of a linearizable table a single node can give."""
    assert send("PUT", "/v1/tables/spec-lin", b'{"consistency": "linearizable"}').status == 201
    assert send("PUT", "/v1/tables/spec-lin", b'{"consistency": "eventual"}').status == 409
    send("PUT", "/v1/tables/spec-lin-quorum", b'{"consistency": "linearizable", "r": 1}')
    value = kv_path("spec-lin", "spec/value")
    send("GET", value)
    send("HEAD", value)
    assert send("PUT", value, b"v1", {"Content-Type": "text/plain", "If-None-Match": "*"}).status == 204
    send("GET", value)
    send("HEAD", value)
    assert send("PUT", value, b"v2", {"If-Match": '"1"'}).status == 204
    assert send("PUT", value, b"v3", {"If-Match": '"1"'}).status == 412
    send("PUT", value, b"v3", {"If-Match": '"2"', "If-None-Match": "*"})
    send("PUT", value + "?w=1", b"v3")
    send("GET", value + "?r=1")
    send("GET", value, headers={"If-Match": '"2"'})
    send("HEAD", value + "?r=1")
    assert send("DELETE", value, headers={"If-Match": '"1"'}).status == 412
    assert send("DELETE", value, headers={"If-Match": '"2"'}).status == 204
    send("DELETE", value + "?w=1")
    assert send("PUT", value, b"v4", {"If-Match": "*"}).status == 412
    seats = kv_path("spec-lin", "seats")
    assert send("POST", seats + "/add?delta=2&min=0&max=2").status == 200
    send("GET", seats)
    assert send("POST", seats + "/add?delta=1&max=2").status == 409
    assert send("POST", seats + "/set-add?member=a").status == 409
    send("POST", seats + "/add")
    send("POST", seats + "/add?delta=1&min=2&max=1")
    send("POST", seats + "/increment?delta=1")
    send("POST", seats + "/add?delta=1&w=1")
    members = kv_path("spec-lin", "members")
    assert send("POST", members + "/set-add?member=a&cap=1").status == 200
    assert send("POST", members + "/set-add?member=b&cap=1").status == 409
    send("POST", members + "/set-add?member=b&cap=0")
    assert send("POST", members + "/set-remove?member=a").status == 200
    send("GET", members)
    send("POST", kv_path("spec-lin", "never") + "/set-remove?member=a")
    send("POST", kv_path("default", "spec-eventual") + "/add?delta=1")
    send("POST", "/v1/kv/no-such-table/k/add?delta=1")
    send("POST", "/v1/kv/spec-lin")
    send("POST", "/v1/kv/spec-lin/")


def test_real_replies_match_the_documented_responses(spec, api):
    """Success and error replies of real requests have documented statuses, bodies valid against the schemas, and the documented headers."""
    covered = set()
    for method, path, reply in _scenario(api):
        template, status = check_reply(spec, method, path, reply)
        covered.add((template, method.lower(), status))
    documented = {
        (template, method, status)
        for template in spec.document["paths"] for method in spec.methods(template)
        for status in spec.document["paths"][template][method]["responses"]
        if status not in UNREACHABLE_ON_ONE_NODE and (template, method, status) not in UNREACHABLE_ON_ONE_NODE
    }
    assert documented <= covered, f"documented but never seen: {sorted(documented - covered)}"
