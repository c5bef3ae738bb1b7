"""The OpenAPI document and the interactive docs."""

from __future__ import annotations

from typing import Any

import httpx


async def test_every_response_of_every_endpoint_has_an_example(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    operations = [
        (method, path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]
    assert {(m, p) for m, p, _ in operations} >= {
        ("post", "/reports"),
        ("get", "/reports"),
        ("get", "/reports/{job_id}"),
        ("delete", "/reports/{job_id}"),
        ("get", "/reports/{job_id}/events"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    }
    for method, path, op in operations:
        assert op.get("summary"), (method, path)
        for status, answer in op["responses"].items():
            media = next(iter(answer["content"].values()))
            assert media.get("examples"), (method, path, status)


async def test_interactive_docs_are_served(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/docs/swagger"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
