"""Where the service's tokens come from: a file only its owner can read, the environment, or (with a warning, since
`ps` shows every process's arguments to every local user) the command line. Never from argv silently, never logged."""

from __future__ import annotations

import argparse
import stat
from collections.abc import Mapping
from pathlib import Path

from stream.config.sections import ConfigError
from stream.network import PUBLISH_TOKEN_ENV, TOKEN_ENV

# (argparse dest of the value flag, of the file flag, environment variable, config key)
_TOKENS = (
    ("token", "token_file", TOKEN_ENV, "service.token"),
    ("publish_token", "publish_token_file", PUBLISH_TOKEN_ENV, "service.publish_token"),
)


def add_token_flags(parser: argparse.ArgumentParser) -> None:
    """`--token-file`, `--publish-token-file` and their visible-in-`ps` twins `--token`, `--publish-token`."""
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"the admin's bearer token, read from FILE (chmod 600) (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--publish-token-file",
        type=Path,
        metavar="FILE",
        help=f"a WHIP publisher's bearer token (WHIP only), read from FILE (chmod 600) (default: ${PUBLISH_TOKEN_ENV})",
    )
    parser.add_argument("--token", help="the admin's token itself (shown by `ps`: prefer --token-file)")
    parser.add_argument("--publish-token", help="a publisher's token itself (shown by `ps`: prefer the file)")


def read_token_file(path: Path) -> str:
    """The token in `path`: one word, in a regular file that neither group nor others may read or write (as ssh
    insists for a private key). ConfigError (one line, with the fix) otherwise."""
    try:
        info = path.stat()
    except OSError as error:
        raise ConfigError(f"token file {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"token file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"token file {path} is open to other users (mode {mode:04o}): run `chmod 600 {path}` (it is refused "
            "as ssh refuses such a key)"
        )
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read token file {path}: {getattr(error, 'strerror', None) or error}") from None
    if not token or any(char.isspace() for char in token):
        raise ConfigError(f"token file {path} must hold one token (one word on one line)")
    return token


def token_keys(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[dict[str, str | None], list[str]]:
    """The tokens as config keys (None: the config's value stands) and the warnings to print (a token given on the
    command line). A flag or file comes first, then the environment; a token flag and its file together are an
    error."""
    keys: dict[str, str | None] = {}
    warnings: list[str] = []
    for name, file_name, env, key in _TOKENS:
        given, file = getattr(args, name, None), getattr(args, file_name, None)
        flag, file_flag = "--" + name.replace("_", "-"), "--" + file_name.replace("_", "-")
        if given is not None and file is not None:
            raise ConfigError(f"give {flag} or {file_flag}, not both")
        if given is not None:
            warnings.append(
                f"{flag} is visible to every user of this machine (`ps` shows it): put it in a file only you can "
                f"read and give {file_flag} FILE, or set ${env}"
            )
        keys[key] = given or (read_token_file(file) if file is not None else None) or environ.get(env) or None
    return keys, warnings
