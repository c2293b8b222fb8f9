"""The Email server page posts every field: emptying one on the page clears it (PUT's "left out keeps" does not
apply to the page's form)."""

from __future__ import annotations

import httpx

from mailgate.app import Services
from mailgate.configure import EmailServerUpdate

from .conftest import EMAIL, form_token


async def test_emptying_optional_fields_on_the_page_clears_them(admin: httpx.AsyncClient, services: Services) -> None:
    await services.config.save_email_server(
        EmailServerUpdate(
            host="smtp.office365.com",
            port=587,
            security="starttls",
            authentication="oauth",
            username="reports@contoso.com",
            sender="reports@contoso.com",
        )
    )
    data = {
        "host": "smtp.office365.com",
        "port": "587",
        "security": "starttls",
        "authentication": "oauth",
        "username": "",
        "sender": "",
        "ca_file": "",
        "action": "save",
    }
    response = await admin.post(EMAIL, data={**data, "csrf_token": await form_token(admin, EMAIL)})
    assert response.status_code == 303, response.text
    server = await services.config.email_server()
    assert (server.username, server.sender) == ("", "")
