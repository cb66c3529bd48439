"""Settings, read once from the environment."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from domain.access import POLICY_DIR, ROLES
from domain.audit.keys import CheckpointKey
from domain.kpis.rules import KPIS, Thresholds
from domain.reports.access import ReportSettings
from domain.sealed import Sealer

DEFAULT_KPIS = Thresholds()
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir(environ: dict[str, str]) -> Path:
    """`var/` of a source checkout (where `make run` works); for an installed package, the
    user's data directory — never inside site-packages."""
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / "var"
    base = environ.get("XDG_DATA_HOME") or str(
        Path(environ.get("HOME", "~")).expanduser() / ".local" / "share"
    )
    return Path(base) / "ordergate"


class SettingsError(RuntimeError):
    """The environment describes a configuration ordergate refuses to run with."""


MODES = ("development", "test", "production")


def normalise_database_url(url: str) -> str:
    """Accept the plain URLs people paste and pick the async driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    return url


def _parse_token_keys(raw: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in raw.split(","):
        kid, sep, secret = item.strip().partition(":")
        if not sep or not kid or len(secret) < 32:
            raise SettingsError(
                "ORDERGATE_TOKEN_KEYS is `kid:secret[,kid:secret…]`, each secret at least "
                "32 characters; the first key signs, all of them verify"
            )
        keys[kid] = secret
    return keys


def _dev_token_keys(data_dir: Path) -> dict[str, str]:
    """A development signing key, generated once into a file only this user can read."""
    path = data_dir / "dev-token-key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        kid = f"dev-{secrets.token_hex(4)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{kid}:{secrets.token_urlsafe(48)}\n")
    return _parse_token_keys(path.read_text().strip())


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    data_dir: Path
    token_keys: dict[str, str] = field(repr=False)
    token_ttl_seconds: int
    issuer: str
    audience: str
    timezone: zoneinfo.ZoneInfo
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    max_body_bytes: int
    policy_dir: Path
    policy_poll_seconds: float
    audit_key_file: Path
    # Seals webhook secrets at rest (domain/sealed.py): ORDERGATE_SECRETS_KEY_FILE.
    secrets_key_file: Path
    audit_checkpoint_seconds: float
    approval_ttl_seconds: int
    export_retention_seconds: int
    report: ReportSettings
    max_depth: int
    max_aliases: int
    max_tokens: int
    max_cost: int
    cors_origins: tuple[str, ...]
    login_per_ip_per_minute: int
    refused_per_ip_per_minute: int
    login_per_account_per_minute: int
    queries_per_account_per_minute: int
    db_connect_timeout_seconds: float
    db_statement_timeout_seconds: float
    db_pool_timeout_seconds: float
    db_pool_size: int
    worker_in_server: bool
    webhook_timeout_seconds: int
    retry_after_seconds: int
    export_max_attempts: int
    export_retry_seconds: float
    shutdown_grace_seconds: float
    db_start_timeout_seconds: float
    metrics_token: str | None = field(default=None, repr=False)
    # Outgoing mail (low-stock alerts): an SMTP URL, or None to keep messages as files under
    # the data directory (development). The sender address.
    smtp_url: str | None = field(default=None, repr=False)
    mail_from: str = "ordergate@localhost"
    tracing: bool = False  # OpenTelemetry spans per operation and resolver (ORDERGATE_TRACING)
    # Where the per-account request budget is counted: the database, or a Redis URI.
    rate_limit_storage: str | None = field(default=None, repr=False)
    # Streaming replicas that queries may read from (DATABASE_REPLICA_URLS); empty: none.
    replica_urls: tuple[str, ...] = field(default=(), repr=False)
    # `orderEvents` subscriptions: how often the process looks for new events, and how often
    # a subscriber's account is checked again (disabled, logged out, roles changed).
    event_poll_seconds: float = 0.2
    # An order not at PICKING this long after it was created is escalated (domain/intake).
    escalate_after_minutes: int = 120
    # How long an unpaid reservation holds its stock when the caller names no TTL.
    reservation_ttl_seconds: int = 900
    # Per-role request budgets per minute that replace the per-account one for accounts holding
    # the role (the highest applies): a channel feed is not an interactive user.
    role_budgets: tuple[tuple[str, int], ...] = (("integration", 60_000),)
    subscription_recheck_seconds: float = 30.0
    # Subscription sockets per process (api/sockets.py): open at most, waiting to log in per
    # client IP, per account, running subscriptions per account, and seconds without one.
    ws_max_sockets: int = 1000
    ws_pending_per_ip: int = 20
    ws_sockets_per_account: int = 5
    subscriptions_per_account: int = 20
    ws_idle_seconds: float = 60.0
    # KPI thresholds, in percent (ORDERGATE_KPI_TIMELINESS_MIN, _STOCK_ACCURACY_MIN,
    # _COMPLETENESS_MIN), and who gets a KPI's task instead of its default role
    # (ORDERGATE_KPI_OWNERS=ORDER_TIMELINESS=alice,STOCK_ACCURACY=bob).
    kpi_thresholds: Thresholds = field(default_factory=Thresholds)
    kpi_owners: tuple[tuple[str, str], ...] = ()

    def budget_for(self, roles: frozenset[str] | set[str]) -> int:
        """Requests per minute for an account with these roles."""
        special = [n for role, n in self.role_budgets if role in roles]
        return max(special) if special else self.queries_per_account_per_minute

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def signing_kid(self) -> str:
        return next(iter(self.token_keys))


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None


def _int_between(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _int(env, name, default)
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _percent(env: dict[str, str], name: str, default: Decimal) -> Decimal:
    raw = env.get(name, str(default)).strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise SettingsError(f"{name} must be a percentage like 95 or 97.5, not {raw!r}") from None
    if not value.is_finite() or not 0 <= value <= 100:
        raise SettingsError(f"{name} must be between 0 and 100, not {raw!r}")
    return value


def _kpi_owners(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    name = "ORDERGATE_KPI_OWNERS"
    raw = env.get(name, "").strip()
    owners = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        kpi, sep, username = part.partition("=")
        if not sep or kpi.strip() not in KPIS or not username.strip():
            raise SettingsError(
                f"{name} is KPI=username pairs separated by commas, KPI one of {', '.join(KPIS)}"
            )
        owners.append((kpi.strip(), username.strip()))
    return tuple(owners)


def _role_budgets(env: dict[str, str]) -> tuple[tuple[str, int], ...]:
    """`ORDERGATE_QUERIES_PER_MINUTE_BY_ROLE=integration=60000,ops=1200`; empty: none."""
    name = "ORDERGATE_QUERIES_PER_MINUTE_BY_ROLE"
    raw = env.get(name, "integration=60000")
    found = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        role, sep, amount = part.partition("=")
        role = role.strip()
        if not sep or role not in ROLES or not amount.strip().isdigit():
            raise SettingsError(f"{name}: {part!r} is not role=requests-per-minute")
        found.append((role, int(amount)))
    return tuple(found)


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from None


def _report_settings(env: dict[str, str], timezone: zoneinfo.ZoneInfo) -> ReportSettings:
    hours = env.get("ORDERGATE_BUSINESS_HOURS", "09:00-19:00")
    days = env.get("ORDERGATE_BUSINESS_DAYS", "1-5")
    try:
        start_text, end_text = hours.split("-")
        start, end = dt.time.fromisoformat(start_text), dt.time.fromisoformat(end_text)
        first, last = (int(x) for x in days.split("-"))
        if not (1 <= first <= last <= 7 and start < end):
            raise ValueError
    except ValueError:
        raise SettingsError(
            "ORDERGATE_BUSINESS_HOURS is like 09:00-19:00 and ORDERGATE_BUSINESS_DAYS like 1-5 "
            "(ISO weekdays, Monday = 1)"
        ) from None
    return ReportSettings(
        timezone=timezone,
        business_start=start,
        business_end=end,
        business_days=frozenset(range(first - 1, last)),
        anomaly_multiple=_float(env, "ORDERGATE_ANOMALY_MULTIPLE", 3.0),
    )


def sealer(settings: Settings) -> Sealer:
    """The keys that seal webhook secrets: read from their file, generated there (0600) in
    development."""
    path = settings.secrets_key_file
    if not path.exists():
        if settings.production:
            raise SettingsError(f"secrets key {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first
            Sealer.write_new_key(path)
    return Sealer.from_file(path)


def checkpoint_key(settings: Settings) -> CheckpointKey:
    """The audit checkpoint key: read from its file, generated there (0600) in development."""
    path = settings.audit_key_file
    if path.exists():
        return CheckpointKey.from_private_pem(path.read_bytes())
    if settings.production:
        raise SettingsError(f"audit checkpoint key {path} does not exist")
    return CheckpointKey.generate_into(path)


def _rate_limit_storage(env: dict[str, str]) -> str | None:
    value = env.get("ORDERGATE_RATE_LIMIT_STORAGE", "database").strip()
    if value == "database":
        return None
    if not value.startswith(("redis://", "rediss://", "async+redis://", "async+rediss://")):
        raise SettingsError(
            "ORDERGATE_RATE_LIMIT_STORAGE is `database` or a Redis URI (redis://host:6379/0), "
            f"not {value[:40]!r}"
        )
    return value


def _tracing(env: dict[str, str]) -> bool:
    """ORDERGATE_TRACING=otel turns on strawberry's OpenTelemetry extension; the package is
    optional (`pip install 'ordergate[tracing]'`), so asking without it is a start-up error."""
    value = env.get("ORDERGATE_TRACING", "off")
    if value not in ("off", "otel"):
        raise SettingsError(f"ORDERGATE_TRACING is off or otel, not {value!r}")
    if value == "otel":
        try:
            import opentelemetry.trace  # noqa: F401
        except ImportError:
            raise SettingsError(
                "ORDERGATE_TRACING=otel needs OpenTelemetry: pip install 'ordergate[tracing]'"
            ) from None
    return value == "otel"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    mode = env.get("ORDERGATE_ENV", "development")
    if mode not in MODES:
        raise SettingsError(f"ORDERGATE_ENV is one of {', '.join(MODES)}, not {mode!r}")
    data_dir = Path(env.get("ORDERGATE_DATA_DIR") or default_data_dir(env))
    database_url = normalise_database_url(
        env.get("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'ordergate.db'}")
    )
    raw_keys = env.get("ORDERGATE_TOKEN_KEYS")
    keys_file = env.get("ORDERGATE_TOKEN_KEYS_FILE")
    if keys_file and not raw_keys:
        # Docker and Kubernetes secrets arrive as files (/run/secrets/…), not variables.
        try:
            raw_keys = Path(keys_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"ORDERGATE_TOKEN_KEYS_FILE {keys_file}: {exc.strerror or exc}"
            ) from None
    if raw_keys:
        token_keys = _parse_token_keys(raw_keys)
    elif mode == "production":
        raise SettingsError(
            "ORDERGATE_ENV=production needs ORDERGATE_TOKEN_KEYS (or ORDERGATE_TOKEN_KEYS_FILE); "
            "refusing to start"
        )
    else:
        token_keys = _dev_token_keys(data_dir)
    audit_key_file = Path(
        env.get("ORDERGATE_AUDIT_KEY_FILE", data_dir / "audit-checkpoint-key.pem")
    )
    secrets_key_file = Path(env.get("ORDERGATE_SECRETS_KEY_FILE", data_dir / "secrets-key"))
    if mode == "production" and "ORDERGATE_SECRETS_KEY_FILE" not in env:
        raise SettingsError(
            "ORDERGATE_ENV=production needs ORDERGATE_SECRETS_KEY_FILE (the Fernet key that seals "
            "webhook secrets at rest; `ordergate keys init` writes one); refusing to start"
        )
    if mode == "production" and "ORDERGATE_AUDIT_KEY_FILE" not in env:
        raise SettingsError(
            "ORDERGATE_ENV=production needs ORDERGATE_AUDIT_KEY_FILE (an Ed25519 private key in "
            "PEM that signs audit checkpoints); refusing to start"
        )
    try:
        timezone = zoneinfo.ZoneInfo(env.get("ORDERGATE_TIMEZONE", "Asia/Shanghai"))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"unknown ORDERGATE_TIMEZONE {env.get('ORDERGATE_TIMEZONE')!r}"
        ) from None
    try:
        proxies = tuple(
            ipaddress.ip_network(cidr.strip(), strict=False)
            for cidr in env.get("ORDERGATE_TRUSTED_PROXIES", "").split(",")
            if cidr.strip()
        )
    except ValueError as exc:
        raise SettingsError(f"ORDERGATE_TRUSTED_PROXIES: {exc}") from None
    return Settings(
        env=mode,
        database_url=database_url,
        replica_urls=tuple(
            normalise_database_url(u.strip())
            for u in env.get("DATABASE_REPLICA_URLS", "").split(",")
            if u.strip()
        ),
        data_dir=data_dir,
        token_keys=token_keys,
        token_ttl_seconds=_int(env, "ORDERGATE_TOKEN_TTL_SECONDS", 900),
        issuer=env.get("ORDERGATE_ISSUER", "ordergate"),
        audience=env.get("ORDERGATE_AUDIENCE", "ordergate-api"),
        timezone=timezone,
        trusted_proxies=proxies,
        max_body_bytes=_int(env, "ORDERGATE_MAX_BODY_BYTES", 1_000_000),
        policy_dir=Path(env.get("ORDERGATE_POLICY_DIR", POLICY_DIR)),
        policy_poll_seconds=_float(env, "ORDERGATE_POLICY_POLL_SECONDS", 2),
        audit_key_file=audit_key_file,
        secrets_key_file=secrets_key_file,
        audit_checkpoint_seconds=_float(env, "ORDERGATE_AUDIT_CHECKPOINT_SECONDS", 300),
        approval_ttl_seconds=_int(env, "ORDERGATE_APPROVAL_TTL_SECONDS", 24 * 3600),
        export_retention_seconds=_int(env, "ORDERGATE_EXPORT_RETENTION_SECONDS", 3600),
        report=_report_settings(env, timezone),
        max_depth=_int(env, "ORDERGATE_MAX_DEPTH", 12),
        max_aliases=_int(env, "ORDERGATE_MAX_ALIASES", 30),
        max_tokens=_int(env, "ORDERGATE_MAX_TOKENS", 2000),
        max_cost=_int(env, "ORDERGATE_MAX_COST", 20_000),
        cors_origins=tuple(
            o.strip() for o in env.get("ORDERGATE_CORS_ORIGINS", "").split(",") if o.strip()
        ),
        login_per_ip_per_minute=_int(env, "ORDERGATE_LOGIN_PER_IP_PER_MINUTE", 30),
        refused_per_ip_per_minute=_int(env, "ORDERGATE_REFUSED_PER_IP_PER_MINUTE", 60),
        login_per_account_per_minute=_int(env, "ORDERGATE_LOGIN_PER_ACCOUNT_PER_MINUTE", 10),
        db_connect_timeout_seconds=_float(env, "ORDERGATE_DB_CONNECT_TIMEOUT_SECONDS", 5),
        db_statement_timeout_seconds=_float(env, "ORDERGATE_DB_STATEMENT_TIMEOUT_SECONDS", 15),
        db_pool_timeout_seconds=_float(env, "ORDERGATE_DB_POOL_TIMEOUT_SECONDS", 10),
        db_pool_size=_int(env, "ORDERGATE_DB_POOL_SIZE", 20),
        # Development: `serve` delivers events itself; production runs `ordergate worker`.
        worker_in_server=env.get(
            "ORDERGATE_WORKER_IN_SERVER", "0" if mode == "production" else "1"
        ).strip()
        == "1",
        retry_after_seconds=_int(env, "ORDERGATE_RETRY_AFTER_SECONDS", 5),
        webhook_timeout_seconds=_int_between(env, "ORDERGATE_WEBHOOK_TIMEOUT_SECONDS", 10, 1, 60),
        export_max_attempts=_int(env, "ORDERGATE_EXPORT_MAX_ATTEMPTS", 5),
        export_retry_seconds=_float(env, "ORDERGATE_EXPORT_RETRY_SECONDS", 30),
        shutdown_grace_seconds=_float(env, "ORDERGATE_SHUTDOWN_GRACE_SECONDS", 10),
        db_start_timeout_seconds=_float(env, "ORDERGATE_DB_START_TIMEOUT_SECONDS", 30),
        metrics_token=env.get("ORDERGATE_METRICS_TOKEN") or None,
        smtp_url=env.get("ORDERGATE_SMTP_URL") or None,
        mail_from=env.get("ORDERGATE_MAIL_FROM") or "ordergate@localhost",
        tracing=_tracing(env),
        rate_limit_storage=_rate_limit_storage(env),
        queries_per_account_per_minute=_int(env, "ORDERGATE_QUERIES_PER_ACCOUNT_PER_MINUTE", 600),
        event_poll_seconds=_float(env, "ORDERGATE_EVENT_POLL_SECONDS", 0.2),
        role_budgets=_role_budgets(env),
        escalate_after_minutes=_int(env, "ORDERGATE_ESCALATE_AFTER_MINUTES", 120),
        reservation_ttl_seconds=_int(env, "ORDERGATE_RESERVATION_TTL_SECONDS", 900),
        subscription_recheck_seconds=_float(env, "ORDERGATE_SUBSCRIPTION_RECHECK_SECONDS", 30),
        ws_max_sockets=_int_between(env, "ORDERGATE_WS_MAX_SOCKETS", 1000, 1, 100_000),
        ws_pending_per_ip=_int_between(env, "ORDERGATE_WS_PENDING_PER_IP", 20, 1, 10_000),
        ws_sockets_per_account=_int_between(env, "ORDERGATE_WS_SOCKETS_PER_ACCOUNT", 5, 1, 1000),
        subscriptions_per_account=_int_between(
            env, "ORDERGATE_SUBSCRIPTIONS_PER_ACCOUNT", 20, 1, 10_000
        ),
        ws_idle_seconds=_float(env, "ORDERGATE_WS_IDLE_SECONDS", 60),
        # The defaults are the domain's (domain/kpis/rules.py), stated once.
        kpi_thresholds=Thresholds(
            timeliness=_percent(env, "ORDERGATE_KPI_TIMELINESS_MIN", DEFAULT_KPIS.timeliness),
            stock_accuracy=_percent(
                env, "ORDERGATE_KPI_STOCK_ACCURACY_MIN", DEFAULT_KPIS.stock_accuracy
            ),
            completeness=_percent(env, "ORDERGATE_KPI_COMPLETENESS_MIN", DEFAULT_KPIS.completeness),
        ),
        kpi_owners=_kpi_owners(env),
    )
