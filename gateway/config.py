"""Settings in one validated place.

Values come from environment variables (``SDE_*``) and, optionally, a YAML file named by
``SDE_CONFIG``. Every setting has a safe default so the embedded demo needs nothing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent


class LdapSettings(BaseModel):
    """Where the directory is and how its groups map to gateway roles."""

    url: str
    bind_dn: str | None = None
    bind_password: str | None = None
    user_base: str
    user_attribute: str = "uid"
    user_object_class: str = "inetOrgPerson"
    group_base: str | None = None
    group_object_class: str = "groupOfNames"
    group_member_attribute: str = "member"
    # The directory's permanent id of an entry (OpenLDAP: entryUUID; Active Directory: objectGUID): an account stays
    # bound to the entry it was made from, whatever later holds its username.
    entry_id_attribute: str = "entryUUID"
    display_name_attribute: str = "cn"
    email_attribute: str = "mail"
    # LDAP group common name -> gateway role names
    group_roles: dict[str, list[str]] = Field(default_factory=dict)
    connect_timeout: float = 5.0


class SecuritySettings(BaseModel):
    max_failed_logins: int = Field(5, ge=1, le=100)
    lockout_minutes: int = Field(15, ge=1, le=24 * 60)
    session_hours: int = Field(8, ge=1, le=72)
    totp_issuer: str = "London SDE"
    recovery_codes: int = Field(10, ge=4, le=20)
    https: bool = False
    # Rate limits ("N per minute", "N/hour", "10/minute;100/day"); see docs/operators.md "Rate limits".
    sign_in_limit_per_ip: str = "10/minute"
    sign_in_limit_per_username: str = "5/minute"
    # Per account, on each step after the password (the code, enrolment, a new password) and on password changes.
    second_factor_limit: str = "5/minute"
    token_limit: str = "600/minute"  # noqa: S105 - a rate, not a secret
    rate_limit_storage_uri: str = "memory://"  # per process; e.g. redis://host:6379 to share between workers
    # How many reverse proxies stand in front of the gateway. Only then are X-Forwarded-For and -Proto believed
    # (the client address for rate limits and logs, and https in links); 0 ignores them, so nobody can spoof them.
    trusted_proxies: int = Field(0, ge=0, le=5)

    # A second factor for every role unless an administrator relaxes it for a role (with a reason, audited).
    # None means: on when SDE_ENV=production, off otherwise (the demo and tests).
    second_factor_by_default: bool | None = None
    # How long a half-finished sign-in (waiting for a code, an enrolment or a new password) stays open.
    sign_in_step_minutes: int = Field(10, ge=1, le=60)
    # Setting up an authenticator needs a one-time link (or code) sent to the account's email address first: how
    # long it works (and how long a sign-in may wait for it), and how many may be sent to one account in an hour.
    enrolment_link_minutes: int = Field(30, ge=5, le=24 * 60)
    enrolment_links_per_hour: int = Field(5, ge=1, le=100)

    @field_validator("sign_in_limit_per_ip", "sign_in_limit_per_username", "token_limit", "second_factor_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        parse_many(value)  # ValueError names a malformed limit
        return value


class DacSettings(BaseModel):
    """How many non-recused votes a decision needs, and how many of them from lay members."""

    quorum: int = Field(3, ge=1, le=20)
    lay_votes: int = Field(1, ge=0, le=20)
    amendment_quorum: int = Field(1, ge=1, le=20)  # amendments get a shorter review
    amendment_lay_votes: int = Field(0, ge=0, le=20)
    lay_summary_max_words: int = Field(300, ge=50, le=2000)


class WorkspaceSettings(BaseModel):
    """Where the JupyterHub is, the folders the gateway shares with it, and every setting `sde hub` gives it.

    Two gateways on one host need different ports, bridge, subnet and uid range (the hub checks the last three
    against every other instance on the host when it starts; see docs/operators.md "Two instances on one host").
    """

    hub_url: str = "http://127.0.0.1:8000"  # the public (proxy) address: its host and port are where it listens
    # None: <instance_dir>/hub, <instance_dir>/extracts, <instance_dir>/homes
    hub_state_dir: Path | None = None
    extracts_root: Path | None = None
    homes_root: Path | None = None
    spawner: Literal["local", "sandbox", "kubernetes"] = "sandbox"
    start_timeout: float = Field(90.0, ge=5, le=600)
    ticket_ttl_seconds: int = Field(30, ge=5, le=60)
    proxy_api_port: int = Field(8001, ge=1, le=65535)
    hub_api_port: int = Field(8081, ge=1, le=65535)
    bridge: str = Field("sdebr0", pattern=r"^[a-z][a-z0-9]{0,11}$")
    subnet: str = "10.213.0.0/24"
    uid_base: int = Field(20000, ge=1000, le=2**31 - 2**20)
    uid_count: int = Field(10000, ge=1, le=2**20)
    singleuser_prefix: Path = Path("/opt/londonsde/singleuser")
    runtime_root: Path = Path("/run/londonsde/sandboxes")
    cull_idle_seconds: int = Field(3600, ge=0, le=7 * 24 * 3600)
    cull_every_seconds: int = Field(300, ge=10, le=24 * 3600)
    # Characters one paste may carry into a workspace of the high security tier (docs/workspaces.md).
    high_tier_paste_limit: int = Field(2000, ge=0, le=1_000_000)

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        import ipaddress

        network = ipaddress.IPv4Network(value)  # ValueError names a malformed subnet
        if network.num_addresses < 8:
            raise ValueError("subnet too small: at least 8 addresses (a /29)")
        return str(network)

    @model_validator(mode="after")
    def _distinct_ports(self) -> WorkspaceSettings:
        from urllib.parse import urlsplit

        public = urlsplit(self.hub_url).port or 8000
        if len({public, self.proxy_api_port, self.hub_api_port}) != 3:
            raise ValueError("the hub's public port, proxy API port and hub API port must differ")
        return self
    # How long a workspace's output hand-over credential lives (it also ends when the session is stopped).
    handover_ttl_hours: int = Field(12, ge=1, le=72)
    # How the hub reaches the gateway, to forward outputs a workspace hands over.
    gateway_internal_url: str = "http://127.0.0.1:5000"
    # Browser egress (docs/workspaces.md "What can reach your browser"): the largest notebook or text file the
    # workspace's contents API serves or saves; how often a workspace reports the bytes it sent to the browser;
    # the bytes to the browser past which a session is recorded in the audit log (once per session).
    contents_max_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=1024**3)
    traffic_report_seconds: int = Field(30, ge=5, le=3600)
    traffic_alert_bytes: int = Field(50 * 1024 * 1024, ge=1, le=2**62)


class ChargingSettings(BaseModel):
    """Which tariff file is in force, and the budget warning threshold."""

    tariff_path: Path = REPO_ROOT / "gateway" / "charging" / "default_tariff.yaml"
    budget_warning_percent: int = Field(80, ge=1, le=99)
    invoice_due_days: int = Field(30, ge=0, le=365)


class ExtractSettings(BaseModel):
    """Where the source data is and how cautious extracts are."""

    source_dir: Path | None = None  # None: <instance_dir>/source (the synthetic population in the demo)
    k: int = Field(5, ge=2, le=1000)
    # A held version with at least this share of its records in classes smaller than k is high risk: releasing it
    # needs two custodians (one proposes, another confirms). 0 makes every held version need two.
    two_person_share: float = Field(0.05, ge=0.0, le=1.0)
    demo_patients: int = Field(20_000, ge=100, le=900_000)
    demo_seed: int = 20261121


class OutputSettings(BaseModel):
    """What an output request may contain (files handed over from the workspace's outputs/ folder)."""

    allowed_extensions: list[str] = Field(
        default_factory=lambda: ["csv", "png", "svg", "txt", "json", "md", "html"])
    max_file_bytes: int = Field(5 * 1024 * 1024, ge=1, le=500 * 1024 * 1024)
    max_csv_rows: int = Field(10_000, ge=1, le=10_000_000)  # rows of any table in any file type
    max_files_per_request: int = Field(50, ge=1, le=1000)
    storage_dir: Path | None = None  # None: <instance_dir>/outputs


class PublicSettings(BaseModel):
    """What the public front door publishes about taking part."""

    involvement_contact: str = Field("", max_length=200)  # where to write to join the citizens' advisory group
    # The service's public address (https://...), used in links in /register.json and in signed receipts; empty:
    # the address the request came to (set it in production, so a forged Host header cannot name another site).
    base_url: str = Field("", max_length=200, pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$")
    # How long a worker may serve its kept copy of /register to visitors who are not signed in without asking the
    # database whether the register changed. A change made by this worker shows at once; one made by another worker,
    # the background worker or a command shows within this many seconds. 0: ask on every request.
    register_recheck_seconds: float = Field(2.0, ge=0, le=60)


class MailSettings(BaseModel):
    """How the worker sends email. Without ``smtp_host`` each message is written as a file under instance/mail/ (the
    demo and tests read them there); a production service sets an SMTP relay."""

    smtp_host: str = Field("", max_length=200)
    smtp_port: int = Field(587, ge=1, le=65535)
    # "starttls" (upgrade a plain connection, port 587), "tls" (TLS from the start, port 465) or "none" (a relay on
    # this machine or a trusted network only). The server's certificate is verified against the system's CAs, or
    # against smtp_ca_file.
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_ca_file: Path | None = None
    smtp_username: str = Field("", max_length=200)
    smtp_password_file: Path | None = None  # a file holding the password (mode 0600), never the password itself
    smtp_timeout_seconds: float = Field(20.0, gt=0, le=300)
    from_address: str = Field("London SDE <no-reply@londonsde.invalid>", max_length=200)


class Settings(BaseModel):
    env: Literal["development", "production", "test"] = "development"
    instance_dir: Path = REPO_ROOT / "instance"
    database_url: str | None = None
    secret_key: str | None = None
    assets_dir: Path = REPO_ROOT / "node_modules" / "nhsuk-frontend" / "dist" / "nhsuk"
    ldap: LdapSettings | None = None
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    dac: DacSettings = Field(default_factory=DacSettings)
    charging: ChargingSettings = Field(default_factory=ChargingSettings)
    workspaces: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    outputs: OutputSettings = Field(default_factory=OutputSettings)
    extracts: ExtractSettings = Field(default_factory=ExtractSettings)
    public: PublicSettings = Field(default_factory=PublicSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    catalogue_path: Path = REPO_ROOT / "gateway" / "extracts" / "default_catalogue.yaml"

    @field_validator("instance_dir", "assets_dir", "catalogue_path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def second_factor_by_default(self) -> bool:
        """Whether a role with no policy of its own needs a second factor (on in production)."""
        configured = self.security.second_factor_by_default
        return self.env == "production" if configured is None else configured

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.instance_dir / 'londonsde.sqlite3'}"

    @property
    def hub_state_dir(self) -> Path:
        return (self.workspaces.hub_state_dir or self.instance_dir / "hub").resolve()

    @property
    def extracts_root(self) -> Path:
        return (self.workspaces.extracts_root or self.instance_dir / "extracts").resolve()

    @property
    def source_dir(self) -> Path:
        return (self.extracts.source_dir or self.instance_dir / "source").resolve()

    @property
    def keys_dir(self) -> Path:
        return (self.instance_dir / "keys").resolve()

    @property
    def homes_root(self) -> Path:
        return (self.workspaces.homes_root or self.instance_dir / "homes").resolve()

    @property
    def certificates_dir(self) -> Path:
        return (self.instance_dir / "certificates").resolve()

    @property
    def outputs_dir(self) -> Path:
        return (self.outputs.storage_dir or self.instance_dir / "outputs").resolve()

    def resolved_secret_key(self) -> str:
        """Use the configured key, or one kept in the instance folder so sessions survive restarts."""
        if self.secret_key:
            return self.secret_key
        if self.env == "production":
            raise RuntimeError("SDE_SECRET_KEY must be set in production")
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        key_file = self.instance_dir / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        return key_file.read_text().strip()


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Read the YAML file (if any), then environment variables, then explicit overrides."""
    data: dict[str, Any] = {}
    config_file = os.environ.get("SDE_CONFIG")
    if config_file:
        data.update(yaml.safe_load(Path(config_file).read_text()) or {})
    env_map = {
        "SDE_ENV": "env",
        "SDE_INSTANCE_DIR": "instance_dir",
        "SDE_DATABASE_URL": "database_url",
        "SDE_SECRET_KEY": "secret_key",
        "SDE_ASSETS_DIR": "assets_dir",
    }
    for var, key in env_map.items():
        if os.environ.get(var):
            data[key] = os.environ[var]
    if overrides:
        data.update(overrides)
    return Settings.model_validate(data)
