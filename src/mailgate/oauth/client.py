"""The thin HTTP client of the token and revocation endpoints: httpx errors become mailgate errors here."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from ..errors import TokenEndpointUnavailableError
from ..types import TokenResponse
from .protocol import error_from_token_answer, parse_token_response

__all__ = ["TokenClient"]


class TokenClient:
    """POSTs token requests.  One shared ``httpx.AsyncClient`` (connection reuse); TLS always verified."""

    def __init__(
        self,
        *,
        timeout: float = 20.0,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            timeout=timeout,
            verify=verify,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "mailgate"},
            follow_redirects=False,
        )
        self._clock = clock

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request_token(self, token_url: str, body: Mapping[str, str]) -> TokenResponse:
        """POST ``body`` (form-encoded, RFC 6749 s.4.1.3 / s.6) and parse the answer."""
        try:
            response = await self._http.post(token_url, data=dict(body))
        except httpx.TimeoutException as exc:
            raise TokenEndpointUnavailableError(
                f"The token endpoint {token_url} did not answer in time.",
                hint="mailgate will try again; check the network path (proxy, firewall) to the provider.",
            ) from exc
        except httpx.HTTPError as exc:
            raise TokenEndpointUnavailableError(
                f"The token endpoint {token_url} cannot be reached ({type(exc).__name__}).",
                hint="mailgate will try again; check DNS, proxy and firewall rules towards the provider.",
            ) from exc
        data = _json(response)
        if response.status_code == 200 and data is not None:
            return parse_token_response(data, now=self._clock())
        if response.status_code >= 500 or response.status_code == 429 or (data is None and response.status_code != 400):
            raise TokenEndpointUnavailableError(
                f"The token endpoint {token_url} answered HTTP {response.status_code}.",
                hint="The provider is having trouble; mailgate will try again.",
            )
        raise error_from_token_answer(response.status_code, data, response.text)

    async def revoke(self, revocation_url: str, token: str) -> bool:
        """RFC 7009 revocation.  True when the provider confirmed it."""
        try:
            response = await self._http.post(revocation_url, data={"token": token})
        except httpx.HTTPError:
            return False
        return response.status_code == 200


def _json(response: httpx.Response) -> Mapping[str, Any] | None:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
