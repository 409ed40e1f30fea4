"""The OpenAPI 3.1 description of the public API, generated from the endpoint table.

Nothing here is written by hand per endpoint: paths, methods, parameters, weights and security
types all come from :data:`papi_sandbox.api.endpoints.ENDPOINTS`, so the description cannot drift
from what the service serves (a test checks both directions).
"""

from __future__ import annotations

import re
from typing import Any

from papi_sandbox.api.endpoints import ENDPOINTS, Endpoint
from papi_sandbox.version import __version__
from papi_sandbox.wire import params
from papi_sandbox.wire.params import Kind, Param

OPENAPI_PATH = "/papi/openapi.json"

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "msg"],
    "properties": {"code": {"type": "integer", "maximum": -1}, "msg": {"type": "string"}},
}


def param_schema(param: Param) -> dict[str, Any]:
    match param.kind:
        case Kind.LONG:
            return {"type": "integer", "format": "int64", "minimum": 0, "maximum": 10**18 - 1}
        case Kind.DECIMAL:
            return {"type": "string", "pattern": r"^[0-9]{1,16}(\.[0-9]{1,8})?$"}
        case Kind.ASSET:
            return {"type": "string", "pattern": r"^[A-Z0-9]{1,20}$"}
        case Kind.BOOLEAN:
            return {"type": "string", "enum": ["true", "false"]}
        case Kind.ENUM:
            return {"type": "string", "enum": list(param.choices)}
        case Kind.STRING:
            return {"type": "string", "maxLength": params.MAX_VALUE_CHARS}
    raise AssertionError(param.kind)  # pragma: no cover


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.method.lower() + re.sub(r"[/-]", "_", endpoint.path),
        "summary": endpoint.summary,
        "x-weight": endpoint.weight,
        "x-security-type": endpoint.security.value,
        "parameters": [
            {
                "name": p.name,
                "in": "query",
                "required": p.mandatory,
                "description": p.description,
                "schema": param_schema(p),
            }
            for p in endpoint.all_params
        ],
        "responses": {
            "200": {"description": "Success", "content": {"application/json": {"schema": {}}}},
            "default": {
                "description": "A Binance-shaped error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if endpoint.security.needs_key:
        operation["security"] = [{"ApiKey": []}]
    if endpoint.method != "GET" and endpoint.all_params:
        # Parameters may also travel in a form body (or be split between query and body).
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {p.name: param_schema(p) for p in endpoint.all_params},
                    }
                }
            },
        }
    return operation


def openapi_document(endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "papi-sandbox: Binance Portfolio Margin API (PAPI)",
            "version": __version__,
            "description": (
                "SIGNED endpoints (USER_DATA, TRADE) need `timestamp` and a `signature` over the"
                " raw query string followed by the raw body: hex HMAC-SHA256 for HMAC keys, base64"
                " RSASSA-PKCS1-v1_5/SHA-256 for RSA keys, base64 Ed25519 for ED25519 keys."
                " x-weight is the IP request weight of the endpoint."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA},
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-MBX-APIKEY"}
            },
        },
    }
