"""The sandbox's Graph sendMail and Gmail messages.send endpoints answer as the real APIs do (issue 24)."""

from __future__ import annotations

import base64

import httpx

from mailgate.sandbox import Sandbox

GRAPH = "https://graph.microsoft.com/Mail.Send offline_access openid email"
GMAIL = "https://www.googleapis.com/auth/gmail.send openid email"
MIME = b"From: alice@sandbox.test\r\nTo: bob@example.com\r\nBcc: eve@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


def bearer(sandbox: Sandbox, scope: str, account: str = "alice@sandbox.test") -> dict[str, str]:
    return {"Authorization": f"Bearer {sandbox.mint_tokens(account, scope=scope)['access_token']}"}


async def test_graph_checks_token_audience_mailbox_and_size(sandbox: Sandbox, http: httpx.AsyncClient) -> None:
    url = "/v1.0/users/alice@sandbox.test/sendMail"
    body = base64.b64encode(MIME)
    plain = {"Content-Type": "text/plain"}
    missing = await http.post(url, content=body, headers=plain)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "InvalidAuthenticationToken"
    smtp_token = await http.post(
        url, content=body, headers={**plain, **bearer(sandbox, "https://outlook.office.com/SMTP.Send")}
    )
    assert smtp_token.status_code == 401 and "audience" in smtp_token.json()["error"]["message"]
    other = await http.post(
        "/v1.0/users/mallory@sandbox.test/sendMail", content=body, headers={**plain, **bearer(sandbox, GRAPH)}
    )
    assert other.status_code == 403 and other.json()["error"]["code"] == "ErrorAccessDenied"
    sandbox.mail_api.graph_max_request_bytes = 100
    big = await http.post(url, content=body * 2, headers={**plain, **bearer(sandbox, GRAPH)})
    assert big.status_code == 413
    sandbox.mail_api.graph_max_request_bytes = 4 * 1024 * 1024
    ok = await http.post(url, content=body, headers={**plain, **bearer(sandbox, GRAPH)})
    assert ok.status_code == 202 and ok.content == b""
    [received] = sandbox.messages
    assert received.rcpt_tos == ("bob@example.com", "eve@example.com") and b"eve@" not in received.raw


async def test_gmail_scope_throttling_and_the_empty_probe(sandbox: Sandbox, http: httpx.AsyncClient) -> None:
    url = "/upload/gmail/v1/users/me/messages/send?uploadType=media"
    rfc822 = {"Content-Type": "message/rfc822"}
    narrow = await http.post(url, content=MIME, headers={**rfc822, **bearer(sandbox, "openid email")})
    assert narrow.status_code == 403 and narrow.json()["error"]["errors"][0]["reason"] == "insufficientPermissions"
    control = await http.post("/_control/mail-api", params={"throttle": 1, "retry_after": 7})
    assert control.json()["throttle_count"] == 1
    throttled = await http.post(url, content=MIME, headers={**rfc822, **bearer(sandbox, GMAIL)})
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "7"
    assert throttled.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    sent = await http.post(url, content=MIME, headers={**rfc822, **bearer(sandbox, GMAIL)})
    assert sent.status_code == 200 and sent.json()["labelIds"] == ["SENT"]
    probe = await http.post("/gmail/v1/users/me/messages/send", json={}, headers=bearer(sandbox, GMAIL))
    assert probe.status_code == 400 and "'raw' RFC822 payload" in probe.json()["error"]["message"]
    assert len(sandbox.messages) == 1
