from __future__ import annotations

import pytest

from feedstore.settings import Settings


def test_environment_overrides_defaults_and_config_overrides_environment() -> None:
    environ = {"FEEDSTORE_MAX_ENTRIES": "5", "FEEDSTORE_REQUIRE_REVISION": "/a, /b"}
    settings = Settings.load({"fetch_limit": 7}, environ)
    assert settings.max_entries == 5
    assert settings.require_revision == ("/a", "/b")
    assert settings.fetch_limit == 7
    assert Settings.load({"FEEDSTORE_MAX_ENTRIES": 9}, environ).max_entries == 9


def test_requires_revision_matches_whole_segments() -> None:
    settings = Settings(require_revision=("/secure",))
    assert settings.requires_revision("/secure")
    assert settings.requires_revision("/secure/1")
    assert not settings.requires_revision("/securely")


@pytest.mark.parametrize("text", ["\uff11\uff10", "1_000", "ten", ""])
def test_a_number_setting_takes_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        Settings.load(environ={"FEEDSTORE_MAX_BODY": text})
    assert str(refused.value) == f"FEEDSTORE_MAX_BODY must be a whole number: {text}"


@pytest.mark.parametrize("name", ["header_timeout", "body_timeout"])
def test_timeouts_are_at_least_a_second(name: str) -> None:
    with pytest.raises(ValueError) as refused:
        Settings.load(environ={f"FEEDSTORE_{name.upper()}": "0"})
    assert str(refused.value) == f"FEEDSTORE_{name.upper()} must be at least 1: 0"
    assert getattr(Settings.load(environ={f"FEEDSTORE_{name.upper()}": "1"}), name) == 1


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FEEDSTORE_WAIT_REPLICAS", "-1", "FEEDSTORE_WAIT_REPLICAS must be 0 or more: -1"),
        ("FEEDSTORE_WAIT_TIMEOUT_MS", "0", "FEEDSTORE_WAIT_TIMEOUT_MS must be at least 1: 0"),
    ],
)
def test_wait_settings_are_checked(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        Settings.load(environ={variable: value})
    assert str(refused.value) == message


def test_no_replica_must_confirm_a_write_by_default() -> None:
    settings = Settings.load(environ={})
    assert (settings.wait_replicas, settings.wait_timeout_ms) == (0, 1000)


def test_history_and_auto_merge_come_from_the_environment() -> None:
    environ = {
        "FEEDSTORE_HISTORY": "/notes=50, /billing=1000",
        "FEEDSTORE_HISTORY_DAYS": "7",
        "FEEDSTORE_AUTO_MERGE": "/notes",
    }
    settings = Settings.load(environ=environ)
    assert settings.history_rules.count("/billing/9") == 1000
    assert (settings.history_rules.count("/other"), settings.history_rules.days) == (0, 7)
    assert settings.merges("/notes/1") and not settings.merges("/notesx")


def test_no_history_by_default() -> None:
    assert Settings.load(environ={}).history_rules.prefixes == ()


def test_idempotency_settings_come_from_the_environment() -> None:
    environ = {"FEEDSTORE_IDEMPOTENCY_TTL": "60", "FEEDSTORE_REQUIRE_IDEMPOTENCY": "/orders, /pay"}
    settings = Settings.load(environ=environ)
    assert settings.idempotency_ttl == 60
    assert settings.requires_idempotency("/orders") and settings.requires_idempotency("/pay/1")
    assert not settings.requires_idempotency("/ordersx")
    assert Settings.load(environ={}).idempotency_ttl == 24 * 3600
    assert not Settings.load(environ={}).requires_idempotency("/orders")
    with pytest.raises(ValueError) as refused:
        Settings.load(environ={"FEEDSTORE_IDEMPOTENCY_TTL": "0"})
    assert str(refused.value) == "FEEDSTORE_IDEMPOTENCY_TTL must be at least 1: 0"
