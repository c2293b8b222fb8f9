"""The OpenAPI document is valid and every ``$ref`` in it resolves (generated clients and fuzzers rely on it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from mailgate.web.openapi import DocumentedAPI

API = "/ddenterpriseapi/v2"


def refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """Every ``$ref`` of the document, with the JSON pointer of the object holding it."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from refs(value, f"{where}/{index}")


def resolve(document: dict[str, Any], ref: str) -> Any:
    """What a local reference (RFC 6901 JSON pointer after ``#``) points at; KeyError when nothing."""
    assert ref.startswith("#/"), f"{ref} is not a reference inside the document"
    node: Any = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


@pytest.fixture
async def document(api: httpx.AsyncClient) -> dict[str, Any]:
    r = await api.get(f"{API}/openapi.json")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)  # raises OpenAPIValidationError, naming the first problem


async def test_every_ref_resolves(document: dict[str, Any]) -> None:
    found = list(refs(document))
    assert found, "no $ref at all: the walk is broken"
    broken = []
    for where, ref in found:
        try:
            resolve(document, ref)
        except (KeyError, IndexError, ValueError):
            broken.append(f"{where}: {ref}")
    assert not broken, "references that do not resolve:\n" + "\n".join(broken)


async def test_message_body_describes_its_attachments(document: dict[str, Any]) -> None:
    body = document["paths"][f"{API}/email/messages"]["post"]["requestBody"]["content"]
    message = resolve(document, body["application/json"]["schema"]["$ref"])
    assert "from" in message["properties"] and "to" in message["properties"]
    attachment = resolve(document, message["properties"]["attachments"]["items"]["$ref"])
    assert {"filename", "content_type", "content_base64"} <= set(attachment["properties"])
    assert body["message/rfc822"]["schema"] == {"type": "string", "format": "binary"}


def test_two_models_with_one_name_are_refused() -> None:
    from pydantic import BaseModel

    class HTTPValidationError(BaseModel):  # FastAPI's own schema has this name, with other fields
        surprise: int

    app = DocumentedAPI(body_models=[HTTPValidationError])

    @app.post("/x")
    async def route(value: int) -> None:
        """A route that may answer 422, so that the document holds FastAPI's HTTPValidationError."""

    with pytest.raises(RuntimeError, match="HTTPValidationError"):
        app.openapi()
