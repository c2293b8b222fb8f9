"""What the worker does after a failed attempt depends on the class of the error, whatever the transport."""

from __future__ import annotations

import pytest

from mailgate.errors import (
    CredentialsRejectedError,
    DeliveryError,
    PermanentDeliveryError,
    SmtpAuthenticationError,
    SmtpPermanentError,
    SmtpTransientError,
    TransientDeliveryError,
)
from mailgate.outbox.policy import Outcome, classify


@pytest.mark.parametrize(
    ("error", "connecting", "outcome"),
    [
        # Errors any transport raises (SMTP today; Microsoft Graph, the Gmail API later).
        (TransientDeliveryError("throttled", reply_code=429), False, Outcome.RETRY),
        (PermanentDeliveryError("refused", reply_code=400), False, Outcome.FAIL),
        (PermanentDeliveryError("no such endpoint"), True, Outcome.HOLD),  # the account's set-up, not the message
        (CredentialsRejectedError("token refused", reply_code=401), False, Outcome.HOLD),
        # The SMTP transport's, which are kinds of those.
        (SmtpTransientError("busy", reply_code=451), False, Outcome.RETRY),
        (SmtpPermanentError("no such user", reply_code=550), False, Outcome.FAIL),
        (SmtpAuthenticationError("535", reply_code=535), True, Outcome.HOLD),
    ],
)
def test_the_class_of_the_error_decides(error: DeliveryError, connecting: bool, outcome: Outcome) -> None:
    verdict = classify(error, connecting=connecting)
    assert verdict.outcome is outcome
    assert verdict.code == error.code
    assert verdict.smtp_code == error.reply_code  # what the server answered is recorded, whatever the transport


def test_smtp_errors_are_delivery_errors() -> None:
    assert issubclass(SmtpTransientError, TransientDeliveryError) and SmtpTransientError.retryable
    assert issubclass(SmtpPermanentError, PermanentDeliveryError) and not SmtpPermanentError.retryable
    assert issubclass(SmtpAuthenticationError, CredentialsRejectedError)
