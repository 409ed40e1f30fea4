"""The OpenAPI description is generated from the endpoint table and kept true both ways."""

from __future__ import annotations

import httpx

from papi_sandbox.api.endpoints import ENDPOINTS, table
from papi_sandbox.api.openapi import openapi_document
from tests.support import Server


def test_served_document_is_the_generated_one_and_not_weighed(server: Server) -> None:
    r = httpx.get(f"{server.base_url}/papi/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert "X-MBX-USED-WEIGHT-1M" not in r.headers
    assert r.json() == openapi_document()
    assert r.json()["openapi"].startswith("3.1")


def test_every_table_endpoint_is_described_with_its_parameters() -> None:
    doc = openapi_document()
    for endpoint in ENDPOINTS:
        operation = doc["paths"][endpoint.path][endpoint.method.lower()]
        described = {p["name"]: p for p in operation["parameters"]}
        assert set(described) == {p.name for p in endpoint.all_params}
        for param in endpoint.all_params:
            assert described[param.name]["required"] is param.mandatory
            assert described[param.name]["in"] == "query"
        assert operation["x-weight"] == endpoint.weight
        assert operation["x-security-type"] == endpoint.security.value
        assert ("security" in operation) is endpoint.security.needs_key


def test_every_described_operation_exists_in_the_table(server: Server) -> None:
    routes = table()
    doc = openapi_document()
    for path, operations in doc["paths"].items():
        for method in operations:
            assert method.upper() in routes[path], (method, path)
            # and the live server routes it (never a 404 for a described operation)
            r = httpx.request(method.upper(), f"{server.base_url}{path}")
            assert r.status_code != 404, (method, path, r.text)
    assert sum(len(ops) for ops in doc["paths"].values()) == len(ENDPOINTS)
