"""The SMTP-side failures the sandbox answers with when told to, through its control endpoint."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import aiosmtplib
import httpx
import pytest

from mailgate.sandbox import Sandbox
from mailgate.smtp import xoauth2_initial_response

ALICE = "alice@sandbox.test"


async def _auth(sandbox: Sandbox, account: str = ALICE) -> tuple[aiosmtplib.SMTP, aiosmtplib.SMTPResponse]:
    token = str(sandbox.mint_tokens(account)["access_token"])
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sandbox.smtp_port, tls_context=sandbox.client_ssl_context())
    await smtp.connect()
    await smtp.ehlo()  # after STARTTLS (connect did it): AUTH is offered now
    assert (await smtp.execute_command(b"AUTH", b"XOAUTH2")).code == 334  # the token goes on a line of its own
    reply = await smtp.execute_command(xoauth2_initial_response(account, token).encode())
    return smtp, reply


async def test_a_fault_is_switched_on_per_mailbox_and_off_again(sandbox: Sandbox, http: httpx.AsyncClient) -> None:
    r = await http.post("/_control/smtp-fault", params={"mailbox": ALICE, "fault": "smtp_auth_disabled"})
    assert r.status_code == 200 and r.json() == {ALICE: "smtp_auth_disabled"}
    smtp, reply = await _auth(sandbox)
    assert reply.code == 535 and reply.message.startswith("5.7.139 Authentication unsuccessful")
    smtp.close()
    other, reply = await _auth(sandbox, "bob@sandbox.test")  # another mailbox is not affected
    assert reply.code == 235
    other.close()
    assert (await http.post("/_control/smtp-fault", params={"mailbox": ALICE, "fault": "none"})).json() == {}
    smtp, reply = await _auth(sandbox)
    assert reply.code == 235
    smtp.close()


async def test_send_as_denied_refuses_mail_from_even_for_the_own_mailbox(sandbox: Sandbox) -> None:
    sandbox.smtp_faults.set("*", "send_as_denied")
    smtp, reply = await _auth(sandbox)
    assert reply.code == 235
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await smtp.mail(ALICE)
    assert refused.value.code == 550 and refused.value.message.startswith("5.7.60")
    smtp.close()


async def test_an_unknown_fault_is_a_400(http: httpx.AsyncClient) -> None:
    r = await http.post("/_control/smtp-fault", params={"fault": "gremlins"})
    assert r.status_code == 400 and "smtp_auth_disabled" in r.json()["error"]
    assert (await http.get("/_control/smtp-faults")).json() == {}


async def test_a_certificate_close_to_expiry(make_sandbox: object) -> None:
    sandbox: Sandbox = await make_sandbox(smtp_certificate_days=3)  # type: ignore[operator]
    smtp, reply = await _auth(sandbox)
    assert reply.code == 235
    description = smtp.get_transport_info("ssl_object").getpeercert()["notAfter"]
    smtp.close()
    left = datetime.fromtimestamp(ssl.cert_time_to_seconds(description), UTC) - datetime.now(UTC)
    assert 2 <= left.days <= 3
