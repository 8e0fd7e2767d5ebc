#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""openapi_check.py - validate one live API response against docs/openapi.yaml

usage: openapi_check.py METHOD PATH STATUS HEADERS_FILE BODY_FILE
       openapi_check.py --spec          (check the spec's own $refs and shape)

HEADERS_FILE is curl -D output (the last head in it counts), BODY_FILE the
body (ignored for HEAD). Checked: the status is one the operation lists (or
its default); required headers are present and match their schemas; the
Content-Type is one of the response's media types; a JSON body matches its
schema; an event stream consists of the events listed in x-sse-events, each
one's data matching its schema (a last, unterminated event is ignored: curl
cut the stream). Unknown paths and methods must answer with the Error
response. Prints what is wrong and exits 1, or exits 0 silently.
"""
import json
import os
import sys

import jsonschema
import yaml

SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "openapi.yaml")


def load_spec():
    with open(SPEC) as f:
        return yaml.safe_load(f)


def resolve(spec, node, seen=()):
    """node with every local $ref replaced by its target (the spec has no cycles)"""
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise ValueError(f"unsupported or cyclic $ref {ref}")
            target = spec
            for part in ref[2:].split("/"):
                target = target[part]
            return resolve(spec, target, seen + (ref,))
        return {k: resolve(spec, v, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(spec, v, seen) for v in node]
    return node


def validator(schema):
    cls = getattr(jsonschema, "Draft202012Validator", jsonschema.Draft7Validator)
    return cls(schema)


def schema_errors(schema, value, what):
    return [f"{what}: {e.message} (at /{'/'.join(map(str, e.absolute_path))})"
            for e in validator(schema).iter_errors(value)]


def parse_head(text):
    """status and headers (lower-case names) of the last head in curl -D output"""
    heads = [h for h in text.replace("\r\n", "\n").split("\n\n") if h.startswith("HTTP/")]
    if not heads:
        return None, {}
    lines = heads[-1].split("\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), value.strip())
    return int(lines[0].split()[1]), headers


def sse_events(body):
    """(event, data) of every complete event; comments skipped"""
    events = []
    blocks = body.replace("\r\n", "\n").split("\n\n")
    for block in blocks[:-1]:	# the last one is unterminated (or empty)
        name, data = "message", []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data or name != "message":
            events.append((name, "\n".join(data)))
    return events


def check(spec, method, path, status, head_text, body):
    errs = []
    code, headers = parse_head(head_text)
    if code is None:
        return ["no HTTP head in the headers file"]
    if code != status:
        errs.append(f"headers say {code}, curl said {status}")
    path = path.split("?", 1)[0]
    item = spec["paths"].get(path)
    op = item.get(method.lower()) if item else None
    if op is None:
        # unknown path or method: only the Error answer is in the contract
        if code not in (400, 401, 404, 405, 408, 411, 413, 417, 431, 503, 505):
            return errs + [f"{method} {path} is not in the spec, yet answered {code}"]
        resp = resolve(spec, {"$ref": "#/components/responses/Error"})
        if code == 401:
            resp = resolve(spec, {"$ref": "#/components/responses/Unauthorized"})
    else:
        responses = op["responses"]
        resp = responses.get(str(code), responses.get("default"))
        if resp is None:
            return errs + [f"{method} {path}: status {code} is not in the spec"]
        resp = resolve(spec, resp)
    for name, h in resp.get("headers", {}).items():
        value = headers.get(name.lower())
        if value is None:
            if h.get("required"):
                errs.append(f"{method} {path} {code}: header {name} missing")
            continue
        errs += schema_errors(h.get("schema", {}), value, f"{method} {path} {code}: header {name}")
    content = resp.get("content")
    ctype = headers.get("content-type")
    if not content:
        if code == 204 and (body and method != "HEAD" or ctype):
            errs.append(f"{method} {path} 204 with a body or Content-Type")
        return errs
    media = None
    for key in content:
        if ctype is not None and ctype.replace(" ", "") == key.replace(" ", ""):
            media = key
    if media is None:
        return errs + [f"{method} {path} {code}: Content-Type {ctype!r}, spec says {list(content)}"]
    if method == "HEAD":
        return errs
    mt = content[media]
    if media == "application/json":
        try:
            value = json.loads(body)
        except ValueError as e:
            return errs + [f"{method} {path} {code}: body is not JSON: {e}"]
        errs += schema_errors(mt.get("schema", {}), value, f"{method} {path} {code}: body")
    elif media == "text/event-stream":
        known = mt.get("x-sse-events", {})
        events = sse_events(body)
        if not events:
            errs.append(f"{method} {path}: no complete event in the stream")
        for name, data in events:
            if name not in known:
                errs.append(f"event {name!r} is not in x-sse-events")
                continue
            try:
                value = json.loads(data)
            except ValueError as e:
                errs.append(f"event {name}: data is not JSON: {e}")
                continue
            errs += schema_errors(known[name], value, f"event {name}: data")
    return errs


def main(argv):
    spec = load_spec()
    if argv[1:] == ["--spec"]:
        resolve(spec, spec)	# every $ref resolves
        assert spec["openapi"].startswith("3.1"), "not OpenAPI 3.1"
        for path, item in spec["paths"].items():
            for method, op in item.items():
                assert op.get("responses"), f"{method} {path} has no responses"
        return 0
    if len(argv) != 6:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    method, path, status, hdr_file, body_file = argv[1:]
    with open(hdr_file, encoding="utf-8", errors="replace") as f:
        head = f.read()
    body = ""
    if os.path.exists(body_file):
        with open(body_file, encoding="utf-8", errors="replace") as f:
            body = f.read()
    errs = check(spec, method.upper(), path, int(status), head, body)
    for e in errs:
        print(e)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
