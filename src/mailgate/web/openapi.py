"""The OpenAPI document, whose every ``$ref`` resolves, and its Swagger UI page, served from the package.

``POST /email/messages`` reads its body by hand (to stream large ones), so FastAPI does not see its model and
the route describes the body in ``openapi_extra``.  Such a description refers to ``#/components/schemas/NAME``
and the app adds those schemas (and the ones they use) to the document's ``components``.

The documentation page (``/v2/docs``) loads Swagger UI from ``static/swagger`` (vendored ``swagger-ui-dist``):
no CDN, so it works offline, under the admin pages' Content-Security-Policy.  FastAPI's
``get_swagger_ui_html`` is not used because it starts Swagger UI with an inline script, which that policy
(``script-src 'self'``) refuses; ``static/swagger-init.js`` does the same from a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .pages import PAGE_HEADERS, templates

__all__ = ["SCHEMA_REF", "SWAGGER_UI_OPTIONS", "DocumentedAPI", "component_schemas", "install_docs", "schema_ref"]

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


#: Swagger UI's options: FastAPI's defaults, without the badge that sends the document to an online validator.
SWAGGER_UI_OPTIONS: dict[str, Any] = {**swagger_ui_default_parameters, "validatorUrl": None}


def install_docs(app: FastAPI, api_prefix: str, static_url: str) -> None:
    """Serve Swagger UI at ``{api_prefix}/docs`` from the static files mounted at ``static_url``; the app must be
    created with ``docs_url=None`` (FastAPI's own page loads Swagger UI from a CDN)."""
    openapi_url = app.openapi_url or f"{api_prefix}/openapi.json"

    @app.get(f"{api_prefix}/docs", include_in_schema=False, response_class=HTMLResponse)
    async def api_docs(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "api_docs.html",
            {
                "title": f"{app.title} REST API",
                "static": static_url,
                "openapi_url": openapi_url,
                "options": SWAGGER_UI_OPTIONS,
            },
            headers=PAGE_HEADERS,
        )
