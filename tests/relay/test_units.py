"""Pure parts of the relay: the login delay, sender patterns, the keyed password hash, the settings."""

from __future__ import annotations

import ipaddress
import math

import pytest

from mailgate.config import RelaySettings
from mailgate.errors import ConfigurationError
from mailgate.relay import FailedLogins, sender_matches
from mailgate.relay.handler import _check_address
from mailgate.relay.users import new_password
from mailgate.smtp import parse_mailbox
from mailgate.store import SecretBox


class HandClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_login_delay_grows_per_address_and_is_forgotten() -> None:
    clock = HandClock()
    guard = FailedLogins(base=0.5, ceiling=30.0, forget_after=900.0, clock=clock)
    assert [guard.failed("10.0.0.1") for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert guard.failed("10.0.0.2") == 0.5  # another address is not affected
    guard.succeeded("10.0.0.2")
    assert guard.failures("10.0.0.2") == 0
    clock.now += 901
    assert guard.failures("10.0.0.1") == 0
    assert guard.failed("10.0.0.1") == 0.5


def test_failed_logins_remember_a_bounded_number_of_addresses() -> None:
    guard = FailedLogins(max_addresses=3, clock=HandClock())
    for i in range(10):
        guard.failed(f"10.0.0.{i}")
    assert [guard.failures(f"10.0.0.{i}") for i in range(10)] == [0] * 7 + [1] * 3


def test_sender_patterns() -> None:
    patterns = ["alerts@example.com", "*@reports.example.com"]
    assert sender_matches("Alerts@Example.com", patterns)
    assert sender_matches("daily@reports.example.com", patterns)
    assert not sender_matches("daily@example.com", patterns)
    assert not sender_matches("x@evil-reports.example.com", patterns)


def test_keyed_digest_depends_on_the_key() -> None:
    one, two = SecretBox("key one"), SecretBox("key two")
    assert one.digest("password") == SecretBox("key one").digest("password")
    assert one.digest("password") != two.digest("password")
    assert len(one.digest("password")) == 64 and "password" not in repr(one)
    # Independent of the encryption key derived from the same material.
    assert one.decrypt(one.encrypt("secret")) == "secret"


def test_relay_settings_from_env() -> None:
    assert not RelaySettings.from_env({}).enabled
    relay = RelaySettings.from_env(
        {
            "MAILGATE_RELAY_PORT": "2525",
            "MAILGATE_RELAY_TLS_PORT": "4650",
            "MAILGATE_RELAY_HOST": "0.0.0.0",
            "MAILGATE_RELAY_TRUSTED_NETWORKS": "192.168.1.0/24, 10.1.2.3",
        }
    )
    assert relay.enabled and relay.port == 2525 and relay.tls_port == 4650 and relay.host == "0.0.0.0"
    assert relay.trusted_networks == (ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("10.1.2.3/32"))


@pytest.mark.parametrize(
    "env",
    [
        {"MAILGATE_RELAY_PORT": "smtp"},
        {"MAILGATE_RELAY_PORT": "70000"},
        {"MAILGATE_RELAY_TRUSTED_NETWORKS": "everyone"},
        {"MAILGATE_RELAY_TLS_CERT": "/etc/cert.pem"},
        {"MAILGATE_RELAY_PORT": "2525", "MAILGATE_RELAY_TLS_PORT": "2525"},
    ],
)
def test_bad_relay_settings_say_what_to_fix(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RelaySettings.from_env(env)
    assert "MAILGATE_RELAY" in caught.value.message


def test_generated_passwords_are_letters_and_digits_of_256_bits() -> None:
    """A password starting with "-" was taken for an option by swaks (a flaky client test found it)."""
    passwords = {new_password() for _ in range(500)}
    assert len(passwords) == 500
    assert all(len(p) == 43 and p.isascii() and p.isalnum() for p in passwords)
    assert 43 * math.log2(62) >= 256


@pytest.mark.parametrize(
    "address",
    [
        "bob@example.com",
        "r123@example.com",
        "first.last+tag@mail.example.co.uk",
        "o'brien@example.org",
        "x_y-z=1@a-b.example",
        "UPPER@EXAMPLE.COM",
        # Not plain: the email package's parser decides.
        "bob@localhost",
        "bob@",
        "@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@example..com",
        "a b@example.com",
        '"a b"@example.com',
        "a@b@example.com",
        "Bob <bob@example.com>",
        "bob@exämple.com",
        "bøb@example.com",
        "a@[127.0.0.1]",
        "a@example.com.",
    ],
)
def test_envelope_addresses_are_judged_as_parse_mailbox_judges_them(address: str) -> None:
    # The relay checks plain addresses with a pattern, the others with parse_mailbox: the verdict is the same.
    try:
        parse_mailbox(address)
        expected = None
    except ValueError as exc:
        expected = str(exc)
    try:
        _check_address(address)
        got = None
    except ValueError as exc:
        got = str(exc)
    assert got == expected
