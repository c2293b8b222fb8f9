"""The OpenAPI document: every ``$ref`` in it resolves, including those of bodies a route reads by itself.

``POST /email/messages`` reads its body by hand (to stream large ones), so FastAPI does not see its model and
the route describes the body in ``openapi_extra``.  Such a description refers to ``#/components/schemas/NAME``
and the app adds those schemas (and the ones they use) to the document's ``components``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

__all__ = ["SCHEMA_REF", "DocumentedAPI", "component_schemas", "schema_ref"]

#: Where the schemas of the document live (OpenAPI 3.1 s.4.8.7): every ``$ref`` to a model points here.
SCHEMA_REF = "#/components/schemas/{model}"


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to ``model``'s schema in the document, for a hand-written ``openapi_extra``."""
    return {"$ref": SCHEMA_REF.format(model=model.__name__)}


def component_schemas(models: Sequence[type[BaseModel]]) -> dict[str, dict[str, Any]]:
    """The JSON Schemas of ``models`` and of the models they use, by name, referring to each other under
    ``components/schemas`` (pydantic's default, ``#/$defs/...``, does not resolve inside an OpenAPI document)."""
    if not models:
        return {}
    _, top = models_json_schema([(m, "validation") for m in models], by_alias=True, ref_template=SCHEMA_REF)
    schemas: dict[str, dict[str, Any]] = top.get("$defs", {})
    return schemas


class DocumentedAPI(FastAPI):
    """FastAPI whose OpenAPI document also holds the schemas of ``body_models``: request bodies that routes read
    themselves and refer to with :func:`schema_ref`."""

    def __init__(self, *, body_models: Sequence[type[BaseModel]] = (), **options: Any) -> None:
        super().__init__(**options)
        self.body_models = tuple(body_models)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the schemas of ``body_models`` in ``components/schemas`` (built once)."""
        if self.openapi_schema is not None:
            return self.openapi_schema
        document = super().openapi()
        schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in component_schemas(self.body_models).items():
            if schemas.setdefault(name, schema) != schema:
                raise RuntimeError(f"two different models are named {name} in the OpenAPI document: rename one")
        return document
