"""Configuration in one place: every setting has a `TLC_…` env var and may sit in `.env`.

    >>> from tlc_widgets.config import Settings
    >>> Settings(port=8001, upstreams=["http://127.0.0.1:1234/v1"]).port
    8001

Model presets (per-model defaults a learner starts from) come from a TOML file:

    [models."qwen2.5-7b-instruct"]
    display_name = "Qwen 2.5 7B"
    temperature = 0.7
    max_tokens = 1024
    system_prompt = "You are a patient tutor."

Built-in presets for the practice models ship in `tlc_widgets/presets.toml`; a file named by
`TLC_PRESETS_FILE` is laid over them. A model with no preset gets `ModelPreset()`.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from .hub_config import HubSettings

__all__ = ["DEFAULT_HISTORY_PATH", "DEFAULT_UPSTREAM", "ModelPreset", "Settings", "load_presets"]

DEFAULT_UPSTREAM = "http://localhost:1234/v1"
#: e.g. ~/.local/share/tlc/history.sqlite3 on Linux, ~/Library/Application Support/tlc/… on macOS
DEFAULT_HISTORY_PATH = str(platformdirs.user_data_path("tlc") / "history.sqlite3")


class ModelPreset(BaseModel):
    """What the chat panel fills in when a learner picks a model."""

    display_name: str | None = None
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)
    system_prompt: str = "You are a helpful assistant. Answer clearly and briefly."
    description: str | None = None


class Settings(HubSettings):
    """The queue server's settings. Flags of `tlc serve` override these."""

    model_config = SettingsConfigDict(
        env_prefix="TLC_", env_file=".env", extra="ignore", validate_default=True
    )

    host: str = Field(
        "127.0.0.1", description="Address to bind. Keep loopback unless you use keys."
    )
    port: int = Field(8000, ge=0, le=65535, description="Port of the queue server.")
    upstreams: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_UPSTREAM],
        description="OpenAI-compatible base URLs (comma-separated), e.g. LM Studio's.",
    )
    practice: bool = Field(False, description="Start the practice model in-process as upstream.")
    practice_port: int = Field(0, ge=0, le=65535, description="Port for --practice (0: any free).")
    slots: int = Field(1, ge=1, description="Slots of an upstream that does not report its own.")
    max_queue: int = Field(1000, ge=1, description="Most requests waiting at once (then 429).")
    max_per_user: int = Field(20, ge=1, description="Most waiting requests per user (then 429).")
    running_per_student: int = Field(
        2, ge=0, description="Most running requests per student while others wait (0: no cap)."
    )
    running_per_teacher: int = Field(
        0, ge=0, description="The same for teachers and admins (0: no cap)."
    )
    running_cap_strict: bool = Field(
        False,
        description="Hold the cap even when nobody else waits (slots may idle; newcomers start "
        "at once).",
    )
    max_tokens_cap: int = Field(4096, ge=1, description="Largest max_tokens a request may ask.")
    max_prompt_chars: int = Field(200_000, ge=1, description="Longest conversation, in characters.")
    default_model: str | None = Field(None, description="Model used when a request names none.")
    queue_timeout_s: float = Field(900, gt=0, description="Longest wait in the queue.")
    connect_timeout_s: float = Field(5, gt=0, description="Time to reach an upstream.")
    first_token_timeout_s: float = Field(300, gt=0, description="Longest wait for a first token.")
    stall_timeout_s: float = Field(
        60, gt=0, description="Longest silence between two tokens (caught after half to all of it)."
    )
    position_interval_s: float = Field(
        0.2, ge=0, description="Position updates per request at most once per this many seconds."
    )
    ping_interval_s: float = Field(
        5,
        gt=0,
        # 5 s: a client with a 10 s read timeout (a common SDK setting) never times out
        # while it waits in line.
        description="An idle event stream gets a `: ping` comment this often.",
    )
    max_streams_per_request: int = Field(
        8, ge=1, description="Most open event streams on one request (then 429)."
    )
    max_streams_per_user: int = Field(
        64, ge=1, description="Most open event streams of one user (then 429)."
    )
    disconnect_grace_s: float = Field(
        10, ge=0, description="A request whose every listener left is cancelled after this."
    )
    retain_s: float = Field(900, ge=0, description="How long finished requests stay readable.")
    retain_bytes: int = Field(
        256 * 2**20,
        ge=0,
        description="Most bytes finished requests keep in memory; the oldest go first "
        "(history keeps everything).",
    )
    max_reply_bytes: int = Field(
        4 * 2**20, ge=1, description="Largest reply relayed and kept (then reply_too_large)."
    )
    shutdown_grace_s: float = Field(
        10, ge=0, description="At SIGTERM, running replies get this long to finish."
    )
    refresh_s: float = Field(10, gt=0, description="How often upstream model lists are re-read.")
    presets_file: Path | None = Field(None, description="TOML file of model presets.")
    log_level: str = Field("info", description="Logging level of the server.")

    # -- identity: with keys, every request needs `Authorization: Bearer KEY`
    keys: SecretStr | None = Field(
        None, description="API keys as 'key:user:role,…' (role: student, teacher or admin)."
    )
    keys_file: Path | None = Field(
        None, description='TOML file of API keys: [keys."KEY"] user = "ada", role = "student".'
    )
    # -- history
    history_path: str = Field(
        DEFAULT_HISTORY_PATH,
        description="SQLite file of every request. Empty: no history; ':memory:': this run only.",
    )
    history_flush_s: float = Field(
        0.5, gt=0, description="A running request's text so far is saved at least this often."
    )
    # -- rate limits per user, by role (empty: unlimited without keys, a default with keys)
    rate_student_rpm: int | None = Field(None, ge=0, description="Requests/minute of a student.")
    rate_student_tpm: int | None = Field(None, ge=0, description="Tokens/minute of a student.")
    rate_teacher_rpm: int | None = Field(None, ge=0, description="Requests/minute of a teacher.")
    rate_teacher_tpm: int | None = Field(None, ge=0, description="Tokens/minute of a teacher.")
    rate_admin_rpm: int | None = Field(None, ge=0, description="Requests/minute of an admin.")
    rate_admin_tpm: int | None = Field(None, ge=0, description="Tokens/minute of an admin.")
    # -- input limits
    max_body_bytes: int = Field(
        1_048_576, ge=1, description="Largest request body, in bytes (then 413)."
    )
    max_messages: int = Field(200, ge=1, description="Most messages in one conversation.")
    max_message_chars: int = Field(
        100_000, ge=1, description="Longest single message, in characters."
    )
    allowed_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models requests may use (comma-separated). Empty: every upstream model.",
    )
    warm_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models kept loaded during `warm_hours` (comma-separated), ready for class.",
    )
    warm_hours: str | None = Field(
        None,
        pattern=r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$",
        description="Local hours to keep `warm_models` loaded, e.g. '08:00-16:00'. Empty: always.",
    )
    # -- a class: budgets, the class prompt, the notice, history retention (docs/classroom.md)
    budget_prompts_per_day: int = Field(
        0, ge=0, description="Prompts a student may send per day (0: unlimited)."
    )
    budget_tokens_per_day: int = Field(
        0, ge=0, description="Reply tokens a student may receive per day (0: unlimited)."
    )
    class_prompt: str = Field(
        "", description="Instructions added to every student request, for all models."
    )
    class_notice: str = Field(
        "Your teacher can read your conversations with the assistant.",
        description="What /api/me tells every student about who reads their chats.",
    )
    history_days: int = Field(
        0, ge=0, description="Delete history rows older than this many days (0: keep all)."
    )

    @field_validator(
        "rate_student_rpm",
        "rate_student_tpm",
        "rate_teacher_rpm",
        "rate_teacher_tpm",
        "rate_admin_rpm",
        "rate_admin_tpm",
        mode="before",
    )
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        # `TLC_RATE_STUDENT_RPM=` in .env means "the default", like leaving the line out.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("upstreams", "allowed_models", "warm_models", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("upstreams")
    @classmethod
    def _no_trailing_slash(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one upstream URL is needed")
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream {url!r} must start with http:// or https://")
        return [url.rstrip("/") for url in value]

    # -- who may reach the server (server/guard.py, server/connections.py, server/upstream_keys.py)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the server answers to besides loopback and the bind address "
        "(comma-separated; '*.example.org' matches subdomains, '*' any name).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins of web pages allowed to call the API (CORS), e.g. "
        "'https://hub.example.org'. Empty: no cross-origin browser calls.",
    )
    anyone_on_the_network: bool = Field(
        False, description="Allow binding beyond loopback without keys: anyone may use it."
    )
    header_timeout_s: float = Field(
        10, gt=0, description="A request whose headers take longer gets 408 and is closed."
    )
    max_header_bytes: int = Field(
        65_536, ge=1024, description="Largest request line + headers, in bytes (then 431)."
    )
    max_connections: int = Field(
        4096, ge=1, description="Most open connections (lowered to fit the open-file limit)."
    )
    upstream_keys: SecretStr | None = Field(
        None,
        description="Keys upstreams require (LM Studio 'Require Authentication'): KEY for "
        "every upstream, or URL=KEY pairs, comma-separated.",
    )

    redis_url: SecretStr | None = Field(
        None,
        description="Share the upstreams' slots with other `tlc serve` replicas through this "
        "Redis 7 or Valkey, redis://host:port/db (unset: one process, nothing to install).",
    )
    redis_name: str = Field(
        "default", min_length=1, description="Which shared queue in that Redis (one per class)."
    )
    lease_s: float = Field(
        10, gt=0, description="A replica's hold on a slot ends this long after its last renewal."
    )

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _split_guard_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and (
                not origin.startswith(("http://", "https://")) or "/" in origin.split("//", 1)[1]
            ):
                raise ValueError(
                    f"CORS origin {origin!r} must be scheme://host[:port], e.g. "
                    "'https://hub.example.org' (no path, no trailing slash)"
                )
        return [origin.lower() for origin in value]

    def presets(self) -> dict[str, ModelPreset]:
        return load_presets(self.presets_file)


def load_presets(path: Path | None = None) -> dict[str, ModelPreset]:
    """Built-in presets, with those of `path` (if any) laid over them."""
    text = resources.files("tlc_widgets").joinpath("presets.toml").read_text("utf-8")
    tables: dict[str, Any] = dict(tomllib.loads(text).get("models", {}))
    if path is not None:
        with path.open("rb") as f:
            tables.update(tomllib.load(f).get("models", {}))
    return {name: ModelPreset(**table) for name, table in tables.items()}
