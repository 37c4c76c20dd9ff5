"""The [[channels]] models and how a channel's secret is read.

One model per channel type (email, webhook, apprise, file) on a shared base with the
name and digest period, `ChannelSettings` (their union) and the type-to-model table the
loader dispatches on; `resolve_secret` reads a password, token or URL from the
environment variable or file a channel names, when a notifier needs it. Whether those
variables and files exist is checked at load time (`checks._secret_problems`).
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta, field

from watcher.config.schema import After, Before, Table
from watcher.config.settings import ConfigError, Duration, NonEmpty, _digest


class _ChannelBase(Table, frozen=True, kw_only=True):
    name: NonEmpty
    digest: Annotated[timedelta | str, Before(_digest)] = timedelta(0)


def _not_empty(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError('expected at least one address, such as ["desk@example.org"]')
    return values


class EmailChannel(_ChannelBase, frozen=True, kw_only=True):
    type: Literal["email"]
    to: Annotated[tuple[str, ...], After(_not_empty)]
    from_: str = field(name="from")
    host: str = "localhost"
    port: Annotated[int, Meta(gt=0, lt=65536)] = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    timeout: Duration = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if self.username and self.security == "none" and not _loopback(self.host):
            raise ValueError(
                f"username with security = \"none\" would send the password unencrypted to "
                f"{self.host}: use security = \"starttls\" or \"tls\" (plain SMTP with a "
                "password is allowed to a relay on this machine only)")


def _loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _http_url(url: str) -> str:
    if url and not url.startswith(("http://", "https://")):
        # not the whole value: a webhook URL's path is often its token
        raise ValueError("expected an http:// or https:// URL, got one starting "
                         f"{url.split('/')[0][:40]!r}")
    return url


class WebhookChannel(_ChannelBase, frozen=True, kw_only=True):
    type: Literal["webhook"]
    url: Annotated[str, After(_http_url)] = ""
    url_env: str = ""  # the URL from this env var (it may hold a token)
    url_file: str = ""  # or from this file, relative to the config's folder
    secret_env: str = ""
    secret_file: str = ""
    format: Literal["json", "slack", "discord"] = "json"
    timeout: Duration = timedelta(seconds=15)

    def __post_init__(self) -> None:
        given = [k for k in ("url", "url_env", "url_file") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "a webhook channel needs exactly one of url, url_env, url_file"
                + (f" (got {', '.join(given)})" if given else "")
            )


class AppriseChannel(_ChannelBase, frozen=True, kw_only=True):
    type: Literal["apprise"]
    urls_env: str = ""
    urls_file: str = ""


class FileChannel(_ChannelBase, frozen=True, kw_only=True):
    """Appends each alert's JSON payload as a line to a file (relative to the config)."""

    type: Literal["file"]
    path: NonEmpty


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
        if not value.strip():  # an empty signing secret would turn signing off unseen
            raise ConfigError([f"environment variable {env_name} is empty"])
        return value
    if file_name:
        path = secret_path(file_name, base_dir)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"cannot read secret file {path}: {exc.strerror}"]) from exc
        if not value:
            raise ConfigError([f"secret file {path} is empty"])
        return value
    return ""
