"""Masking secrets in URLs and in free text (log lines, stored delivery errors).

One masking path for the whole project: `mask_url` for a URL, `mask_text` for any text
that may quote URLs (exception messages, HTTP client errors). The scheme, host and port
stay readable so a user can still tell which URL is meant; what is masked becomes `***`:

- credentials: `https://user:pw@host` -> `https://***:***@host` (a lone user too);
- query (and fragment) parameters whose name looks secret (token, key, sig, password, ...)
  and any parameter value that looks like a random token;
- path tokens: Slack `hooks.slack.com/services/T…/B…/X…`, Discord `/api/webhooks/<id>/<token>`,
  Telegram `/bot<id>:<token>/`, and any segment that looks random (>= 16 characters of
  `[A-Za-z0-9_-]` mixing letters and digits).

It errs towards masking: a long id in a path is masked even when it is not secret.

When the secret URL itself is known (an Apprise service URL, whose token may be its
"host"), `secret_fragments` lists every piece of it that may be secret and
`mask_fragments` masks exactly those anywhere in a text, whatever form the text quotes
them in.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_SECRET_NAME = re.compile(
    r"pass(word|wd)?|pwd|secret|token|key|sig(nature)?|auth|credential|session|code"
    r"|apikey|api_key|access_token|client_secret|private",
    re.IGNORECASE,
)
_RANDOM = re.compile(r"[A-Za-z0-9_\-]{16,}")
_WORD_SEP = re.compile(r"[-_]")
_TELEGRAM_BOT = re.compile(r"bot\d+:[A-Za-z0-9_\-]+")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s<>\"'`]+")
_FRAGMENT = re.compile(r"[^/@?&=#:,;]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]{0,20})://")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#@]*)@")
# (host suffix, path prefix): every segment after the prefix is a secret
_HOOK_PATHS = (
    ("hooks.slack.com", "/services/"),
    ("hooks.slack.com", "/workflows/"),
    ("hooks.slack.com", "/triggers/"),
    ("discord.com", "/api/webhooks/"),
    ("discordapp.com", "/api/webhooks/"),
    ("", "/api/webhooks/"),
    ("webhook.office.com", "/webhookb2/"),
    ("api.telegram.org", "/"),
)


def looks_random(piece: str) -> bool:
    """True for a token-like string: >= 16 of [A-Za-z0-9_-] mixing letters and digits,
    and not a readable slug (words and numbers joined by '-' or '_': 2025-kursk-evacuation)."""
    if _RANDOM.fullmatch(piece) is None:
        return False
    if not (any(c.isdigit() for c in piece) and any(c.isalpha() for c in piece)):
        return False
    words = _WORD_SEP.split(piece)
    return not (len(words) > 1 and all(w.isalpha() or w.isdigit() for w in words if w))


def _mask_segment(segment: str) -> str:
    if looks_random(segment) or _TELEGRAM_BOT.fullmatch(segment):
        return MASK
    return segment


def _mask_path(host: str, path: str) -> str:
    for suffix, prefix in _HOOK_PATHS:
        if (not suffix or host == suffix or host.endswith("." + suffix)) \
                and path.startswith(prefix) and len(path) > len(prefix):
            if suffix == "api.telegram.org":
                break  # only its bot<id>:<token> segment is secret: the generic rule
            rest = path[len(prefix):]
            return prefix + "/".join(MASK if seg else seg for seg in rest.split("/"))
    return "/".join(_mask_segment(seg) for seg in path.split("/"))


def _mask_params(query: str) -> str:
    """name=value pairs separated by & or ;, kept as written but for secret values."""
    out = []
    for pair in re.split(r"([&;])", query):
        if pair in ("&", ";") or not pair:
            out.append(pair)
            continue
        name, eq, value = pair.partition("=")
        if eq and value and (_SECRET_NAME.search(name) or looks_random(value)):
            out.append(f"{name}={MASK}")
        elif not eq and looks_random(name):
            out.append(MASK)
        else:
            out.append(pair)
    return "".join(out)


def _mask_netloc(netloc: str) -> str:
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        userinfo = f"{MASK}:{MASK}" if ":" in userinfo else MASK
    if not hostport.startswith("["):
        host, _, port = hostport.partition(":")
        if looks_random(host) or looks_random(port):
            hostport = MASK  # a token as the host (Apprise's tgram://<bot id>:<token>/...)
    return f"{userinfo}@{hostport}" if at else hostport


def mask_url(url: str) -> str:
    """`url` with credentials, secret parameters and path tokens replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable (a bad IPv6 host, ...): mask what a regex can find
        return _USERINFO.sub(rf"\g<1>{MASK}@", url)
    if not parts.scheme or not parts.netloc:
        return url
    host = (parts.hostname or "").lower()
    return urlunsplit((parts.scheme, _mask_netloc(parts.netloc), _mask_path(host, parts.path),
                       _mask_params(parts.query), _mask_params(parts.fragment)))


def mask_text(text: str) -> str:
    """Free text with every URL in it passed through `mask_url`."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def secret_fragments(url: str) -> tuple[str, ...]:
    """Parts of a URL that may be secret: the user and password, and every other piece but
    the scheme, dotted host names and short words (Telegram's token is the 'host', Slack's
    tokens are path segments); longest first."""
    rest = _SCHEME.sub("", url)
    found = {url, rest}
    for piece in _FRAGMENT.findall(rest):
        dotted_host = "." in piece and re.fullmatch(r"[A-Za-z0-9.\-]+", piece) is not None
        if len(piece) >= 6 and not dotted_host:
            found.add(piece)
    try:
        parts = urlsplit(url)
        found.update(p for p in (parts.username, parts.password) if p and len(p) >= 3)
    except ValueError:
        pass
    return tuple(sorted(found, key=len, reverse=True))


def mask_fragments(text: str, fragments: tuple[str, ...] | list[str]) -> str:
    """`text` with each of `fragments` (from secret_fragments) replaced by `***`."""
    for fragment in fragments:
        if fragment:
            text = text.replace(fragment, MASK)
    return text
