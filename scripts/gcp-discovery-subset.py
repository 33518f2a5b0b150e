#!/usr/bin/env python3
"""Cut Google's Compute Engine v1 discovery document down to what moby's GCP backend calls.

The fake Compute server of the integration tests (tests/support/gce/) checks every request and
response against the result, tests/data/gcp/compute-v1.json.

Where the input comes from: the file googleapiclient/discovery_cache/documents/compute.v1.json of
the PyPI package google-api-python-client (Google's own copy of
https://compute.googleapis.com/discovery/v1/apis/compute/v1/rest). To get it:

    pip download --no-deps google-api-python-client
    unzip -p google_api_python_client-*.whl \\
        googleapiclient/discovery_cache/documents/compute.v1.json > compute.v1.json

What is kept: the methods listed in METHODS (with their resources), the top-level `parameters`,
`rootUrl`, `servicePath` and `revision`, and every schema those methods reach through `$ref`,
transitively. What is dropped: the `description` and `enumDescriptions` texts (not the fields
named "description" inside a schema's `properties`), to keep the file small.

Usage: gcp-discovery-subset.py [INPUT [OUTPUT]]
(defaults: /work/brief/discovery/compute.v1.json and tests/data/gcp/compute-v1.json beside this
script's repository)
"""

import json
import os
import sys

METHODS = {
    "images": ["insert", "get", "delete"],
    "instances": ["insert", "get", "list", "delete", "setLabels", "setMetadata", "getSerialPortOutput"],
    "zoneOperations": ["get", "wait"],
    "globalOperations": ["get", "wait"],
}
TOP_LEVEL = ["parameters", "rootUrl", "servicePath", "revision"]
PROSE = {"description", "enumDescriptions"}
# Keys whose value maps names chosen by the API (field or parameter names) to definitions: the
# names are data, so a field called "description" stays.
NAMED_MAPS = {"properties", "parameters", "schemas", "methods", "resources"}


def strip_prose(node, named_map=False):
    """A copy of `node` without prose; `named_map` says its keys are names, not keywords."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if not named_map and key in PROSE:
                continue
            out[key] = strip_prose(value, named_map=not named_map and key in NAMED_MAPS)
        return out
    if isinstance(node, list):
        return [strip_prose(item) for item in node]
    return node


def refs(node):
    """Every schema name that `node` references with `$ref`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def subset(document):
    """The reduced discovery document."""
    resources = {}
    for resource, names in METHODS.items():
        methods = document["resources"][resource]["methods"]
        missing = [name for name in names if name not in methods]
        if missing:
            sys.exit(f"the discovery document has no {resource}.{missing}")
        resources[resource] = {"methods": {name: methods[name] for name in names}}

    schemas = document["schemas"]
    wanted = set()
    pending = list(refs(resources))
    while pending:
        name = pending.pop()
        if name in wanted:
            continue
        if name not in schemas:
            sys.exit(f"the discovery document references an unknown schema {name}")
        wanted.add(name)
        pending.extend(refs(schemas[name]))

    out = {key: document[key] for key in TOP_LEVEL}
    out["resources"] = resources
    out["schemas"] = {name: schemas[name] for name in sorted(wanted)}
    return strip_prose(out)


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = sys.argv[1] if len(sys.argv) > 1 else "/work/brief/discovery/compute.v1.json"
    target = sys.argv[2] if len(sys.argv) > 2 else os.path.join(repo, "tests", "data", "gcp", "compute-v1.json")
    with open(source, encoding="utf-8") as f:
        document = json.load(f)
    result = subset(document)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    print(f"{target}: {len(result['schemas'])} schemas, revision {result['revision']}")


if __name__ == "__main__":
    main()
