"""cli_store.py: how a command reaches its store's Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from feedstore.cli_store import (
    CliError,
    answers,
    redis_client,
    redis_url_of,
    without_password,
)


def test_a_given_url_is_used_as_it_is(tmp_path: Path) -> None:
    with redis_url_of("redis://example.invalid:1/0", tmp_path) as url:
        assert url == "redis://example.invalid:1/0"
    assert list(tmp_path.iterdir()) == []  # no embedded Redis started


def test_without_a_url_an_embedded_redis_is_started_and_then_found(tmp_path: Path) -> None:
    with redis_url_of(None, tmp_path / "data") as url:
        assert answers(url)
        with redis_url_of(None, tmp_path / "data") as again:
            assert again == url  # the running one, not a second Redis
        client = redis_client(url)
        assert isinstance(client, redis.Redis) and client.ping()
        client.close()
    assert not answers(url)


def test_a_password_never_shows_in_an_error() -> None:
    assert without_password("redis://u:secret@h:1/0") == "redis://u:***@h:1/0"
    assert without_password("redis://:secret@h:1/0") == "redis://:***@h:1/0"
    assert without_password("redis://h:1/0") == "redis://h:1/0"
    with pytest.raises(CliError) as failed:
        redis_client("redis://:secret@h:1/0?socket_timeout=x")
    assert "secret" not in str(failed.value) and "redis://:***@h:1/0" in str(failed.value)
