"""Settings: everything the daemon reads from its env file and the environment.

``load_settings()`` is the one way in: a validated ``Settings`` or a one-line ``ConfigError``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from breezeway_daemon.entities import ENTITIES, ENTITY_NAMES
from breezeway_daemon.http.address import parse_listen_address
from breezeway_daemon.privacy import FieldDrop, FieldPath, drops_by_entity, parse_field

# A region name appears in SQL parameters, advisory-lock keys, file names and commands an
# operator copies: ASCII only, starting with a letter, at most 63 characters (a PostgreSQL
# identifier's length). Checked with fullmatch: "$" would let a trailing newline through.
REGION_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
REGION_NAME_SPELLING = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
REGION_RULE = "must be 1-63 ASCII letters, digits and _, starting with a letter"
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{32,128}")
ENV_PREFIX = "BREEZEWAY_"
DEFAULT_ENV_FILE = ".env"
REGIONS_KEY = f"{ENV_PREFIX}REGIONS__"


class ConfigError(Exception):
    """Invalid configuration. ``str(err)`` is one line naming the setting."""


class RegionSettings(BaseModel):
    """One region: one Breezeway company and its API credential."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    company_id: int | None = None
    enabled: bool = True

    @field_validator("client_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


def _entity_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    names = tuple(name for name in value if name)
    unknown = [name for name in names if name not in ENTITY_NAMES]
    if unknown:
        raise ValueError(f"unknown entity {unknown[0]!r} (known: {', '.join(ENTITY_NAMES)})")
    return names


def _field_path(text: str) -> FieldPath:
    return parse_field(text, ENTITY_NAMES, {name: spec.key for name, spec in ENTITIES.items()})


def _cron(value: str) -> str:
    try:
        CronTrigger.from_crontab(value)
    except ValueError as err:
        raise ValueError(f"not a crontab expression: {err}") from None
    return value


class Settings(BaseSettings):
    """The effective configuration. Durations are in the unit their name says.

    Names are fixed by operators' env files (see ``.env.example``): ``DATABASE_URL``,
    ``BREEZEWAY_API_BASE_URL``, ``BREEZEWAY_REGIONS__<REGION>__CLIENT_ID`` and so on. The env file's
    path is itself a setting (``BREEZEWAY_ENV_FILE``, default ``.env``) so that SIGHUP can re-read
    it.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="ignore",
        populate_by_name=True,
        env_ignore_empty=True,  # "BREEZEWAY_SMTP_HOST=" means "not set", as in .env.example
    )

    # --- connections -------------------------------------------------------
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    api_base_url: str = "https://api.breezeway.io"
    regions: dict[str, RegionSettings] = Field(default_factory=dict)

    # --- API client --------------------------------------------------------
    requests_per_minute: float = Field(default=180, gt=0)
    max_in_flight_per_credential: int = Field(default=4, ge=1, le=64)
    http_timeout_s: float = Field(default=30, gt=0)
    http_max_attempts: int = Field(default=5, ge=1, le=20)
    http_retry_budget_s: float = Field(default=300, gt=0)
    page_size: int = Field(default=100, ge=1, le=1000)
    token_renew_margin_s: float = Field(default=300, ge=0)

    # --- database ----------------------------------------------------------
    db_pool_size: int = Field(default=16, ge=2, le=100)
    db_connect_timeout_s: float = Field(default=10, gt=0)
    db_statement_timeout_s: float = Field(default=300, gt=0)
    db_connect_attempts: int = Field(default=5, ge=1, le=50)
    batch_size: int = Field(default=1000, ge=1, le=50000)
    batches_in_flight: int = Field(default=3, ge=1, le=16)

    # --- schedules ---------------------------------------------------------
    timezone: str = "UTC"
    hourly_cron: str = "0 * * * *"
    daily_cron: str = "30 2 * * *"
    # NoDecode: these are comma-separated in env files, not JSON.
    hourly_entities: Annotated[tuple[str, ...], NoDecode] = (
        "properties", "reservations", "tasks", "task_details",
    )  # fmt: skip
    daily_entities: Annotated[tuple[str, ...], NoDecode] = ("people", "supplies", "tags")
    daily_full_refresh: bool = True
    region_concurrency: int = Field(default=4, ge=1, le=64)
    misfire_grace_s: int = Field(default=600, ge=1)

    # --- sync semantics ----------------------------------------------------
    reservation_backfill_days: int = Field(default=365, ge=1)
    cursor_overlap_minutes: float = Field(default=10, ge=0)
    task_fetch_concurrency: int = Field(default=8, ge=1, le=64)
    task_quiet_poll_every: int = Field(default=6, ge=1, le=24)
    task_busy_days: int = Field(default=2, ge=0, le=30)
    # task_details: open = not finished or finished within details_open_days; their
    # details are fetched again once older than details_sweep_hours (see sync/details.py)
    details_open_days: float = Field(default=7, ge=0)
    details_sweep_hours: float = Field(default=24, ge=0)
    details_max_tasks_per_run: int = Field(default=1500, ge=1)

    # --- runs and the watchdog ----------------------------------------------
    heartbeat_s: float = Field(default=30, gt=0)
    stale_run_minutes: float = Field(default=5, gt=0)
    max_run_minutes: float = Field(default=60, gt=0)
    watchdog_cron: str = "* * * * *"
    shutdown_grace_s: float = Field(default=60, ge=0)

    # --- retention ---------------------------------------------------------
    sync_log_retention_days: int = Field(default=90, ge=1)
    retention_cron: str = "15 3 * * *"

    # --- alerts ------------------------------------------------------------
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=20, gt=0)
    alert_from: str = "breezeway-daemon@localhost"
    alert_to: Annotated[tuple[str, ...], NoDecode] = ()
    alert_quiet_hours: float = Field(default=6, ge=0)
    warn_duration_minutes: float = Field(default=10, gt=0)
    warn_api_calls: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    warn_shrink_ratio: float = Field(default=0.5, ge=0, le=1)

    # --- privacy -------------------------------------------------------------
    # Fields never stored, e.g. "reservations.access_code,reservations.guests[].email".
    drop_fields: Annotated[tuple[str, ...], NoDecode] = ()

    # --- webhooks (the fast path; polling stays the source of truth) ----------
    # The URL path segment that authenticates Breezeway's deliveries: /webhooks/<secret>/task.
    webhook_secret: SecretStr | None = None
    # Re-read every task event with GET /task/{id} instead of trusting its payload.
    webhook_strict: bool = False
    webhook_max_body_kib: int = Field(default=256, ge=1, le=16384)
    # An event is committed before it is acknowledged, within this time (else 503).
    webhook_store_timeout_s: float = Field(default=3, gt=0, le=9)
    # A subscribed region with no event for this long gets a warning alert.
    webhook_silence_hours: float = Field(default=6, gt=0)

    # --- monitoring (metrics, health; see http/) -------------------------------
    http_listen: str | None = None
    health_probe_s: float = Field(default=15, gt=0, le=60)

    # --- files -------------------------------------------------------------
    state_dir: Path = Path("/var/lib/breezeway-daemon")
    alerts_log: Path | None = None
    env_file: Path = Path(DEFAULT_ENV_FILE)

    @field_validator("regions", mode="before")
    @classmethod
    def _region_names(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for name in value:
                if not REGION_NAME.fullmatch(str(name)):
                    raise ValueError(
                        f"region name {str(name)[:80]!r} may hold only lowercase letters, "
                        f"digits and _ ({REGION_RULE})"
                    )
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError(
                "must be 32-128 URL-safe characters (letters, digits, - and _), "
                "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("hourly_entities", "daily_entities", mode="before")
    @classmethod
    def _entities(cls, value: Any) -> tuple[str, ...]:
        return _entity_list(value)

    @field_validator("hourly_cron", "daily_cron", "watchdog_cron", "retention_cron")
    @classmethod
    def _crons(cls, value: str) -> str:
        return _cron(value)

    @field_validator("http_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        return None if value is None else str(parse_listen_address(value))

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    @field_validator("drop_fields", mode="before")
    @classmethod
    def _drop_fields(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        return tuple(str(_field_path(part)) for part in value if part)

    @field_validator("alert_to", mode="before")
    @classmethod
    def _recipients(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        addresses = tuple(part for part in value if part)
        for address in addresses:
            if "@" not in address:
                raise ValueError(f"{address!r} is not an email address")
        return addresses

    @field_validator("warn_api_calls", mode="before")
    @classmethod
    def _api_call_budgets(cls, value: Any) -> Any:
        # "tasks=600,reservations=50" is easier to write in an env file than JSON.
        if isinstance(value, str) and value.strip().startswith("{"):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError("not valid JSON") from None
        if isinstance(value, str):
            budgets = {}
            for part in filter(None, (p.strip() for p in value.split(","))):
                entity, _, number = part.partition("=")
                budgets[entity.strip()] = number.strip()
            value = budgets
        if isinstance(value, Mapping):
            _entity_list(list(value))
        return value

    @field_validator("api_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.smtp_host and not self.alert_to:
            raise ValueError("BREEZEWAY_ALERT_TO: SMTP is configured but there are no recipients")
        return self

    # --- derived values ------------------------------------------------------
    @property
    def enabled_regions(self) -> dict[str, RegionSettings]:
        return {name: region for name, region in sorted(self.regions.items()) if region.enabled}

    @property
    def alerts_log_path(self) -> Path:
        return self.alerts_log or self.state_dir / "alerts.log"

    @property
    def stale_after(self) -> timedelta:
        return timedelta(minutes=self.stale_run_minutes)

    @property
    def max_run_time(self) -> timedelta:
        return timedelta(minutes=self.max_run_minutes)

    @property
    def field_drops(self) -> dict[str, FieldDrop]:
        """``drop_fields`` per entity, for the loader."""
        return drops_by_entity(_field_path(text) for text in self.drop_fields)

    def dsn(self) -> str:
        """The database URL, for connecting. Never log it: it may hold a password."""
        if self.database_url is None:
            raise ConfigError("DATABASE_URL: not set")
        return self.database_url.get_secret_value()

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data with every secret masked."""
        data = self.model_dump(mode="json")
        data["database_url"] = (
            mask_url(self.database_url.get_secret_value()) if self.database_url else None
        )
        return data


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``.

    A password given as a query parameter (``?password=secret``) is masked too.
    """
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)


def env_file_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get(f"{ENV_PREFIX}ENV_FILE", DEFAULT_ENV_FILE))


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the env file and the environment (the environment wins) and validate.

    Raises ``ConfigError`` with one line naming the first invalid setting.
    """
    path = env_file if env_file is not None else env_file_path()
    try:
        if path.exists() and not path.is_file():
            raise ConfigError(f"BREEZEWAY_ENV_FILE: {path} is not a file")
        _check_region_spellings(path)
        return Settings(_env_file=path if path.exists() else None, env_file=path, **overrides)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err)) from None
    except SettingsError as err:
        raise ConfigError(describe_settings_error(err)) from None
    except OSError as err:
        raise ConfigError(f"BREEZEWAY_ENV_FILE: cannot read {path}: {err.strerror}") from None


def _check_region_spellings(path: Path) -> None:
    """Region names as written in the environment and the env file, before lowercasing.

    Names are case-insensitive, and lowercasing maps some non-ASCII letters to ASCII ones
    (the Kelvin sign to ``k``): such a name is refused as written, not silently renamed.
    """
    keys = list(os.environ)
    if path.is_file():
        keys += _env_file_keys(path)
    for key in keys:
        if key[: len(REGIONS_KEY)].upper() != REGIONS_KEY:
            continue
        name = key[len(REGIONS_KEY) :].split("__", 1)[0]
        if not REGION_NAME_SPELLING.fullmatch(name):
            raise ConfigError(
                f"BREEZEWAY_REGIONS: region name {name[:80]!r} ({key[:120]!r}) {REGION_RULE}"
            )


def _env_file_keys(path: Path) -> list[str]:
    """The names an env file sets; a line that is no assignment is refused, not skipped
    (a region whose line cannot be parsed would otherwise vanish without a word)."""
    from dotenv.parser import parse_stream

    keys = []
    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error:
                line = binding.original.string.strip().split("=", 1)[0][:80]
                raise ConfigError(
                    f"BREEZEWAY_ENV_FILE: {path} line {binding.original.line}: not a NAME=value "
                    f"line ({line!r}); names hold only letters, digits and _"
                )
            if binding.key is not None:
                keys.append(binding.key)
    return keys


def describe_settings_error(err: SettingsError) -> str:
    """pydantic-settings' own errors ('error parsing value for field "x" ...'), one line."""
    match = re.search(r'field "([^"]+)"', str(err))
    name = ENV_PREFIX + match[1].upper() if match else "configuration"
    return f"{name}: cannot be parsed ({str(err).splitlines()[0]})"


def describe_validation_error(err: ValidationError) -> str:
    """The first problem, as ``SETTING_NAME: reason`` in env-variable spelling."""
    first = err.errors()[0]
    location = [str(part) for part in first["loc"]]
    if location and location[0] == "DATABASE_URL":
        name = "DATABASE_URL"
    elif location:
        name = ENV_PREFIX + "__".join(location).upper()
    else:
        return first["msg"].removeprefix("Value error, ")
    message = first["msg"].removeprefix("Value error, ")
    return f"{name}: {message}"


def sizing_warnings(settings: Settings) -> list[str]:
    """Valid settings that will make the daemon wait, one line each (``check-config`` says
    them on stderr; the unit runs it before every start, so they reach the journal)."""
    warnings = []
    regions = len(settings.enabled_regions)
    at_once = min(settings.region_concurrency, regions) if regions else 0
    needed = at_once * settings.batches_in_flight
    if settings.db_pool_size < needed:
        warnings.append(
            f"BREEZEWAY_DB_POOL_SIZE={settings.db_pool_size} is under the {needed} connections "
            f"that {at_once} regions at once x BREEZEWAY_BATCHES_IN_FLIGHT="
            f"{settings.batches_in_flight} write with: batches will wait for a connection "
            f"(nothing fails); fix: BREEZEWAY_DB_POOL_SIZE={needed} (README, 'How to size N regions')"
        )
    return warnings


def env_file_is_private(path: Path) -> bool:
    """False when group or others may read the env file (it holds secrets)."""
    try:
        return path.stat().st_mode & 0o077 == 0
    except FileNotFoundError:
        return True
