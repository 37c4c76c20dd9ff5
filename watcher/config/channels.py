"""The [[channels]] models and how a channel's secret is read.

One model per channel type (email, webhook, apprise, file) on a shared base with the
name and digest period, `ChannelSettings` (their union) and the type-to-model table the
loader dispatches on; `resolve_secret` reads a password, token or URL from the
environment variable or file a channel names, when a notifier needs it. Whether those
variables and files exist is checked at load time (`checks._secret_problems`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from watcher.config.settings import ConfigError, Duration, _digest, _Strict


class _ChannelBase(_Strict):
    name: str = Field(min_length=1)
    digest: Annotated[timedelta | str, BeforeValidator(_digest)] = timedelta(0)


class EmailChannel(_ChannelBase):
    type: Literal["email"]
    to: tuple[str, ...] = Field(min_length=1)
    from_: str = Field(alias="from")
    host: str = "localhost"
    port: int = Field(default=25, gt=0, lt=65536)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    timeout: Duration = timedelta(seconds=30)


class WebhookChannel(_ChannelBase):
    type: Literal["webhook"]
    url: str = ""
    url_env: str = ""  # the URL from this env var (it may hold a token)
    url_file: str = ""  # or from this file, relative to the config's folder
    secret_env: str = ""
    secret_file: str = ""
    format: Literal["json", "slack", "discord"] = "json"
    timeout: Duration = timedelta(seconds=15)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        return url

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannel:
        given = [k for k in ("url", "url_env", "url_file") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "a webhook channel needs exactly one of url, url_env, url_file"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class AppriseChannel(_ChannelBase):
    type: Literal["apprise"]
    urls_env: str = ""
    urls_file: str = ""


class FileChannel(_ChannelBase):
    """Appends each alert's JSON payload as a line to a file (relative to the config)."""

    type: Literal["file"]
    path: str = Field(min_length=1)


ChannelSettings = EmailChannel | WebhookChannel | AppriseChannel | FileChannel
_CHANNEL_TYPES: dict[str, type[_ChannelBase]] = {
    "email": EmailChannel,
    "webhook": WebhookChannel,
    "apprise": AppriseChannel,
    "file": FileChannel,
}


def secret_path(file_name: str, base_dir: Path) -> Path:
    """Where a `*_file` secret is read: a bare name that systemd passed as a credential
    (`LoadCredential=NAME:...`, in $CREDENTIALS_DIRECTORY, readable by the service alone)
    is read from there; anything else relative to the config's folder."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and "/" not in file_name:
        candidate = Path(credentials) / file_name
        if candidate.is_file():
            return candidate
    return base_dir / file_name


def resolve_secret(env_name: str, file_name: str, base_dir: Path) -> str:
    """A secret from an environment variable or a file; empty when neither is configured."""
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigError([f"environment variable {env_name} is not set"])
        return value
    if file_name:
        path = secret_path(file_name, base_dir)
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"cannot read secret file {path}: {exc.strerror}"]) from exc
    return ""
