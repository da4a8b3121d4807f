"""The settings of JupyterHub service mode: users and roles come from Hub tokens.

    >>> HubSettings(hub_teacher_groups="teachers, tutors").hub_teacher_groups
    ['teachers', 'tutors']

The Hub gives a service its `JUPYTERHUB_*` variables; those names are read as they are
(`validation_alias`), beside the `TLC_HUB_*` ones. `Settings` (config.py) inherits these
fields; see docs/jupyterhub.md for a class's configuration.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode

__all__ = ["HubSettings"]


class HubSettings(BaseSettings):
    """The Hub part of the queue server's settings."""

    hub: bool | None = Field(
        None,
        description="Identify users by their JupyterHub token. Empty: on when JUPYTERHUB_API_URL, "
        "JUPYTERHUB_API_TOKEN and JUPYTERHUB_SERVICE_NAME are set (as for a Hub service).",
    )
    hub_teacher_groups: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["teachers"],
        description="Hub groups whose members are teachers (comma-separated); Hub admins are "
        "admins, everyone else a student.",
    )
    hub_cache_s: float = Field(
        60, ge=0, description="How long the Hub's answer about a token is reused."
    )
    hub_stale_s: float = Field(
        3600, ge=0, description="While the Hub is down, identities seen this recently still work."
    )
    hub_cache_size: int = Field(10_000, ge=1, description="Most tokens remembered at once.")
    hub_api_url: str | None = Field(
        None,
        validation_alias=AliasChoices("hub_api_url", "JUPYTERHUB_API_URL"),
        description="The Hub's API, e.g. http://127.0.0.1:8081/hub/api [JUPYTERHUB_API_URL].",
    )
    hub_api_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("hub_api_token", "JUPYTERHUB_API_TOKEN"),
        description="This service's own Hub token [JUPYTERHUB_API_TOKEN].",
    )
    hub_service_name: str | None = Field(
        None,
        validation_alias=AliasChoices("hub_service_name", "JUPYTERHUB_SERVICE_NAME"),
        description="The service's name: tokens must grant access:services!service=NAME.",
    )
    hub_service_prefix: str | None = Field(
        None,
        validation_alias=AliasChoices("hub_service_prefix", "JUPYTERHUB_SERVICE_PREFIX"),
        description="Path the Hub's proxy forwards, e.g. /services/tlc/ (served as well as /).",
    )
    hub_service_url: str | None = Field(
        None,
        validation_alias=AliasChoices("hub_service_url", "JUPYTERHUB_SERVICE_URL"),
        description="Where the Hub expects the service to listen (unless host/port are given).",
    )

    hub_client_id: str | None = Field(
        None,
        validation_alias=AliasChoices("hub_client_id", "JUPYTERHUB_CLIENT_ID"),
        description="The OAuth client the Hub made for this service (browser login).",
    )
    hub_oauth_callback_url: str | None = Field(
        None,
        validation_alias=AliasChoices("hub_oauth_callback_url", "JUPYTERHUB_OAUTH_CALLBACK_URL"),
        description="Where the Hub sends a browser back after its login.",
    )
    hub_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("hub_base_url", "JUPYTERHUB_BASE_URL"),
        description="The Hub's base path (usually /), for its login page.",
    )

    @field_validator(
        "hub",
        "hub_api_url",
        "hub_service_name",
        "hub_service_prefix",
        "hub_service_url",
        "hub_client_id",
        "hub_oauth_callback_url",
        "hub_base_url",
        mode="before",
    )
    @classmethod
    def _hub_empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("hub_teacher_groups", mode="before")
    @classmethod
    def _hub_groups_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
