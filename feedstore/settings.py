"""Settings: defaults, overridden by FEEDSTORE_* environment variables, overridden by a mapping."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from feedstore import acl
from feedstore.fields import Limits
from feedstore.history import HistoryRules
from feedstore.keys import DEFAULT_DEPTH, MAX_DEPTH, KeyScheme

ENV_PREFIX = "FEEDSTORE_"
JSON_STYLES = ("feed", "bare")
AUTH_MODES = ("off", "on")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")
LOG_FORMATS = ("text", "json")
SWITCHES = ("on", "off")


@dataclass(frozen=True)
class Settings:
    """Everything a feedstore app can be configured with (`create_app(config)`, env, CLI)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    max_body: int = 10 * 1024 * 1024
    max_entries: int = 1000
    max_bulk_entries: int = 100_000
    bulk_workers: int = 4
    max_depth: int = 64
    max_string: int = 1024 * 1024
    max_attributes: int = 256
    max_nodes: int = 100_000
    fetch_limit: int = 50_000
    require_revision: tuple[str, ...] = ()
    write_retries: int = 200
    pagination_ttl: int = 1800
    json_style: str = "feed"  # JSON entries wrapped in a feed, or bare as vte.cx answers them
    # How many leading segments of a key name its partition, the unit of one Redis Cluster slot
    # (keys.py): 1 puts each top-level tree in one, 2 spreads /_user/<id> over many.
    partition_depth: int = DEFAULT_DEPTH

    # Seconds a client may take to send its request head, and may pause while sending a body.
    header_timeout: int = 10
    body_timeout: int = 30
    # Seconds to wait for Redis to connect or answer a command (then 503).
    redis_timeout: int = 10
    # Replicas that must confirm each write (Redis WAIT after EXEC; 0: don't wait), and how
    # many milliseconds they get before the write is a 503 not_replicated.
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000
    # The access log's lines: `text` (a common-log-like line) or `json` (one object per line).
    log_format: str = "text"
    # GET /metrics, the Prometheus text format (`off`: 404).
    metrics: str = "on"

    # Authentication (authentication.py): off, every request acts as anonymous; on, a request
    # carries a token or a session cookie, or acts as anonymous.
    auth: str = "off"
    cookie_secure: bool = False  # the session cookie says Secure (serve behind HTTPS)
    session_idle: int = 8 * 3600  # seconds a session lives unused
    session_max: int = 7 * 24 * 3600  # seconds a session lives at most, however used
    # With auth on, the ACL of a key when no entry on its path has one (API.md §16.2): admins
    # only.
    default_acl: str = "urn:vte.cx:acl:/_group/$admin,CRUD"
    # Prefixes whose entries keep superseded revisions, each with how many (`/notes=50`), and
    # the days a deleted entry's history is kept (history.py).
    history: tuple[str, ...] = ()
    history_days: int = 30
    # Prefixes under which every stale write with a revision is merged, as with `?_merge`.
    auto_merge: tuple[str, ...] = ()
    # The change feed (changes.py): `on`, every write adds its events to the partition's stream;
    # events are kept `changes_retention` seconds, at most `changes_max` per stream; an SSE
    # answer lasts at most `changes_stream_max` seconds; a worker process lets at most
    # `changes_waiters_max` requests wait for events (then 503).
    changes: str = "on"
    changes_retention: int = 7 * 86400
    changes_max: int = 1_000_000
    changes_stream_max: int = 600
    changes_waiters_max: int = 64
    # The longest `_wait` honoured (a longer one, up to 60, waits this long).
    changes_wait_max: int = 60
    # Seconds the answer of a write with an Idempotency-Key is kept for its retries, and the
    # prefixes under which every write must carry one (idempotency.py).
    idempotency_ttl: int = 24 * 3600
    require_idempotency: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            raise ValueError(f"{ENV_PREFIX}AUTH must be {' or '.join(AUTH_MODES)}: {self.auth}")
        if self.wait_replicas < 0:
            raise ValueError(f"{ENV_PREFIX}WAIT_REPLICAS must be 0 or more: {self.wait_replicas}")
        for name in (
            "header_timeout",
            "body_timeout",
            "redis_timeout",
            "wait_timeout_ms",
            "session_idle",
            "session_max",
            "changes_retention",
            "changes_max",
            "changes_stream_max",
            "changes_waiters_max",
            "changes_wait_max",
            "idempotency_ttl",
        ):
            if getattr(self, name) < 1:
                variable = f"{ENV_PREFIX}{name.upper()}"
                raise ValueError(f"{variable} must be at least 1: {getattr(self, name)}")
        if not 1 <= self.partition_depth <= MAX_DEPTH:
            raise ValueError(
                f"{ENV_PREFIX}PARTITION_DEPTH must be 1 to {MAX_DEPTH}: {self.partition_depth}"
            )
        for name, allowed in (
            ("log_format", LOG_FORMATS),
            ("metrics", SWITCHES),
            ("changes", SWITCHES),
        ):
            if getattr(self, name) not in allowed:
                variable = f"{ENV_PREFIX}{name.upper()}"
                raise ValueError(
                    f"{variable} must be {' or '.join(allowed)}: {getattr(self, name)}"
                )
        HistoryRules.parse(self.history, self.history_days)  # ValueError naming the setting
        if self.json_style not in JSON_STYLES:
            raise ValueError(
                f"{ENV_PREFIX}JSON_STYLE must be {' or '.join(JSON_STYLES)}: {self.json_style}"
            )

        try:
            acl.parse_setting(self.default_acl)
        except ValueError as e:
            raise ValueError(f"{ENV_PREFIX}DEFAULT_ACL is invalid: {e}") from e

    @classmethod
    def load(
        cls, config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Defaults, then `FEEDSTORE_<NAME>` from the environment, then `config` (by field name)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            text = environ.get(ENV_PREFIX + spec.name.upper())
            if text is not None:
                values[spec.name] = _parse(spec.name, str(spec.type), text)
        for name, value in (config or {}).items():
            name = name.removeprefix(ENV_PREFIX).lower()
            if name in {spec.name for spec in dataclasses.fields(cls)}:
                values[name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    @functools.cached_property
    def keys(self) -> KeyScheme:
        """The key scheme of this partition depth."""
        return KeyScheme(self.partition_depth)

    # Cached: settings never change, and every write asks for its limits.
    @functools.cached_property
    def limits(self) -> Limits:
        return Limits(
            self.max_entries, self.max_depth, self.max_string, self.max_attributes, self.max_nodes
        )

    @functools.cached_property
    def bulk_limits(self) -> Limits:
        """The bounds of a `?_bulk` or `?_bulkserial` PUT, which may pass `max_entries`."""
        return Limits(self.max_bulk_entries, self.max_depth, self.max_string)

    @property
    def auth_on(self) -> bool:
        return self.auth == "on"

    @property
    def changes_on(self) -> bool:
        return self.changes == "on"

    @functools.cached_property
    def default_grants(self) -> acl.Acl:
        """The parsed `default_acl`."""
        return acl.parse_setting(self.default_acl)

    @functools.cached_property
    def history_rules(self) -> HistoryRules:
        """Which keys keep superseded revisions, and for how long after a delete."""
        return HistoryRules.parse(self.history, self.history_days)

    def merges(self, key: str) -> bool:
        """Whether stale writes to `key` merge without `?_merge` (the `auto_merge` prefixes)."""
        return bool(self.auto_merge) and _under(key, self.auto_merge)

    def requires_idempotency(self, key: str) -> bool:
        """Whether writes to `key` must carry an Idempotency-Key (`require_idempotency`)."""
        return bool(self.require_idempotency) and _under(key, self.require_idempotency)

    def requires_revision(self, key: str) -> bool:
        """Whether writes to `key` must be conditional (the `require_revision` prefixes)."""
        if not self.require_revision:
            return False  # the default: checked for every entry written, so spare the generator
        return any(key == p or key.startswith(p.rstrip("/") + "/") for p in self.require_revision)


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p.rstrip("/") + "/") for p in prefixes)


def _parse(name: str, annotation: str, text: str) -> Any:
    if annotation == "int":
        # Not int(text), which reads full-width digits and underscores as numbers.
        if not re.fullmatch(r"\s*-?[0-9]+\s*", text):
            raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a whole number: {text}")
        return int(text)
    if annotation == "bool":
        if text.strip().lower() not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"{ENV_PREFIX}{name.upper()} must be true or false: {text}")
        return text.strip().lower() in TRUE_WORDS
    if annotation.startswith("tuple"):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text
