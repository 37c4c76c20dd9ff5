"""Load and validate the TOML config into typed settings.

Every error names the file, the key path (``topics[2].threshold``) and what was expected.
The package is split by concern: `settings` (the [watcher], [[feeds]] and [[topics]]
models, the value parsers and `ConfigError`), `channels` (the [[channels]] models and
`resolve_secret`), `tables` (reading TOML and includes, validating tables, describing
errors), `checks` (cross-checks over all tables, secrets) and `loading` (`load_config`,
`Config`, `data_dir`). Everything other code uses is re-exported here, so callers import
from `watcher.config` alone.
"""

from watcher.config.channels import (
    AppriseChannel,
    ChannelSettings,
    EmailChannel,
    FileChannel,
    WebhookChannel,
    resolve_secret,
)
from watcher.config.loading import DEFAULT_PATH, EMBEDDING_NAMES, Config, data_dir, load_config
from watcher.config.settings import (
    ConfigError,
    Duration,
    FeedSettings,
    Network,
    Phrases,
    PhraseSpec,
    SurgeSettings,
    TopicSettings,
    WatcherSettings,
    parse_duration,
)
from watcher.config.tables import validate_feed

__all__ = [
    "DEFAULT_PATH",
    "EMBEDDING_NAMES",
    "AppriseChannel",
    "ChannelSettings",
    "Config",
    "ConfigError",
    "Duration",
    "EmailChannel",
    "FeedSettings",
    "FileChannel",
    "Network",
    "PhraseSpec",
    "Phrases",
    "SurgeSettings",
    "TopicSettings",
    "WatcherSettings",
    "WebhookChannel",
    "data_dir",
    "load_config",
    "parse_duration",
    "resolve_secret",
    "validate_feed",
]
