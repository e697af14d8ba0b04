"""Strict loading: configs/default.yaml and flags fill the settings dataclasses; an unknown key, a wrong type or an
out-of-range value is a one-line ConfigError naming the key (and the closest one)."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from stream.config.sections import DEFAULT_CONFIG, ConfigError, Settings, VerdictPolicy
from stream.config.store_location import PostgresUrl, StoreTarget, parse_store_target
from stream.text import redact_url

# Fields of a section's dataclass that are not configuration (set by the program, not by YAML or flags).
_NOT_CONFIG: dict[type, frozenset[str]] = {VerdictPolicy: frozenset({"calibrated", "threshold_from"})}
_SECTIONS: dict[str, type] = dict(typing.get_type_hints(Settings))
_HINTS: dict[type, dict[str, Any]] = {cls: typing.get_type_hints(cls) for cls in _SECTIONS.values()}


def config_keys(section: str) -> list[str]:
    """The keys YAML and flags may set in `section`, in declaration order."""
    cls = _SECTIONS[section]
    return [f.name for f in fields(cls) if f.init and f.name not in _NOT_CONFIG.get(cls, frozenset())]


_KEYS: dict[str, list[str]] = {section: config_keys(section) for section in _SECTIONS}
_DOTTED: dict[str, str] = {key: f"{section}.{key}" for section, keys in _KEYS.items() for key in keys}


def _closest(word: str, candidates: list[str]) -> str | None:
    matches = difflib.get_close_matches(word, candidates, n=1)
    return matches[0] if matches else None


def _unknown_key(origin: str, section: str, key: str) -> ConfigError:
    """`key` is not in `section`: suggest a key it was meant to be, here or in another section, else list them."""
    name = f"{section}.{key}"
    suggestion = _DOTTED.get(key)  # the right key in the wrong section
    if suggestion is None:
        close = _closest(key, _KEYS[section])
        suggestion = f"{section}.{close}" if close else None
    if suggestion is None:
        close = _closest(key, list(_DOTTED))
        suggestion = _DOTTED[close] if close else None
    if suggestion is not None:
        return ConfigError(f"{origin}: unknown key {name} (did you mean {suggestion}?)")
    return ConfigError(f"{origin}: unknown key {name} (valid keys of {section}: {', '.join(_KEYS[section])})")


def _unknown_top_level(origin: str, name: str, is_section: bool) -> ConfigError:
    """`name` at top level is neither a section nor placed in one: suggest a section or the full dotted key.

    `is_section`: it holds a mapping, so a section is the likelier meaning; else a key left out of its section.
    """
    if name in _DOTTED:
        return ConfigError(f"{origin}: unknown key {name} at top level (did you mean {_DOTTED[name]}?)")
    section, key = _closest(name, list(_SECTIONS)), _closest(name, list(_DOTTED))
    dotted = _DOTTED[key] if key else None
    first, second = (section, dotted) if is_section else (dotted, section)
    suggestion = first or second
    kind = "section" if is_section else "key"
    if suggestion is not None:
        return ConfigError(f"{origin}: unknown {kind} {name} (did you mean {suggestion}?)")
    return ConfigError(f"{origin}: unknown {kind} {name} (valid sections: {', '.join(_SECTIONS)})")


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


_EXPECTED = {int: "an integer", float: "a number", bool: "true or false", str: "a string", Path: "a path (string)"}
# Keys whose value is a secret: kept out of the config saved with a session ("<set>" when set).
SECRET_KEYS = frozenset({"service.token", "service.publish_token", "service.webhook_secret"})
# Keys whose values are URLs that may carry a secret: saved without it (stream.text.redact_url).
URL_KEYS = frozenset({"service.webhooks"})
# The environment variable that sets service.webhook_secret, so the secret stays off the command line.
WEBHOOK_SECRET_ENV = "DEEPFAKE_STREAM_WEBHOOK_SECRET"


def _hidden(value: Any) -> str:
    """A value that may hold a secret, in an error message: its type only."""
    return f"a value of type {type(value).__name__} (not shown: it may hold a secret)"


def _typed(origin: str, dotted: str, hint: Any, value: Any) -> Any:
    """`value` checked against the field annotation `hint` (and int -> float, str -> Path); ConfigError if it is not."""
    show = _hidden if dotted in SECRET_KEYS | URL_KEYS else _shown
    if hint == StoreTarget:  # read as a URL before it is read as a path
        if not isinstance(value, str | Path | PostgresUrl):
            raise ConfigError(f"{origin}: {dotted} must be a path or a postgresql:// URL (string), got {show(value)}")
        try:
            return parse_store_target(value)
        except ValueError as error:
            raise ConfigError(f"{origin}: {dotted}: {error}") from None
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        if len(members) != 1:
            raise TypeError(f"config field {dotted}: unsupported annotation {hint}")
        hint = members[0]
    if value is None and optional:
        return None
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{origin}: {dotted} must be a list of strings, got {show(value)}")
        return tuple(value)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is Path:
        ok = isinstance(value, str | Path)
        value = Path(value) if ok else value
    else:
        raise TypeError(f"config field {dotted}: unsupported annotation {hint}")
    if not ok:
        expected = _EXPECTED[hint] + (" or null" if optional else "")
        raise ConfigError(f"{origin}: {dotted} must be {expected}, got {show(value)}")
    return value


def _section_values(origin: str, section: str, values: Mapping[Any, Any]) -> dict[str, Any]:
    hints = _HINTS[_SECTIONS[section]]
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in _KEYS[section]:
            raise _unknown_key(origin, section, str(key))
        checked[key] = _typed(origin, f"{section}.{key}", hints[key], value)
    return checked


def _build(origin: str, section: str, make: Callable[..., Any], values: dict[str, Any]) -> Any:
    """`make(**values)` with the dataclass's own ValueError as a ConfigError naming origin and section."""
    try:
        return make(**values)
    except ValueError as error:
        raise ConfigError(f"{origin}: {section}: {error}") from None


def settings_from_mapping(data: Mapping[Any, Any], origin: str) -> Settings:
    """Settings from parsed YAML `{section: {key: value}}`; absent sections and keys keep their defaults."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: must be a mapping of sections, got {_shown(data)}")
    sections: dict[str, Any] = {}
    for name, values in data.items():
        if not isinstance(name, str) or name not in _SECTIONS:
            raise _unknown_top_level(origin, str(name), is_section=isinstance(values, Mapping))
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: section {name} must be a mapping of keys, got {_shown(values)}")
        sections[name] = _build(origin, name, _SECTIONS[name], _section_values(origin, name, values))
    return Settings(**sections)


def with_overrides(settings: Settings, overrides: Mapping[str, Any], origin: str = "flags") -> Settings:
    """`settings` with dotted keys (`{"model.window": 10}`) replaced; a value of None (flag not given) is skipped."""
    changes: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, dot, key = dotted.partition(".")
        if not dot and dotted in _SECTIONS:
            keys = ", ".join(f"{dotted}.{key}" for key in _KEYS[dotted])
            raise ConfigError(f"{origin}: {dotted} is a section, not a key (its keys: {keys})")
        if not dot:
            raise _unknown_top_level(origin, dotted, is_section=False)
        if section not in _SECTIONS:
            suggestion = _DOTTED.get(key) or _closest(dotted, list(_DOTTED.values()))
            if suggestion is None:
                raise ConfigError(f"{origin}: unknown key {dotted} (valid sections: {', '.join(_SECTIONS)})")
            raise ConfigError(f"{origin}: unknown key {dotted} (did you mean {suggestion}?)")
        changes.setdefault(section, {}).update(_section_values(origin, section, {key: value}))
    updated: dict[str, Any] = {}
    for section, values in changes.items():
        updated[section] = _build(origin, section, partial(replace, getattr(settings, section)), values)
    return replace(settings, **updated)


def load_settings(path: Path | None = DEFAULT_CONFIG, overrides: Mapping[str, Any] | None = None) -> Settings:
    """The YAML file at `path` (None: the defaults alone) over the defaults, then `overrides` (dotted keys)."""
    settings = Settings()
    if path is not None:
        try:
            content = yaml.safe_load(Path(path).read_text())
        except OSError as error:
            raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config {path} is not valid YAML: {_yaml_problem(error)}") from None
        if not isinstance(content, Mapping):
            raise ConfigError(f"config {path} must be a mapping of sections, got {_shown(content)}")
        settings = settings_from_mapping(content, str(path))
    return with_overrides(settings, overrides or {})


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return problem if mark is None else f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def settings_as_dict(settings: Settings) -> dict[str, dict[str, Any]]:
    """Exactly the config keys, JSON-serialisable (paths as strings): the resolved config saved with a run."""
    result: dict[str, dict[str, Any]] = {}
    for section, keys in _KEYS.items():
        values = getattr(settings, section)
        result[section] = {key: _saved(f"{section}.{key}", getattr(values, key)) for key in keys}
    return result


def _saved(dotted: str, value: Any) -> Any:
    if dotted in SECRET_KEYS and value is not None:
        return "<set>"
    if dotted in URL_KEYS:
        return [redact_url(url) for url in value]
    return _plain(value)


def environment_overrides(environ: Mapping[str, str]) -> dict[str, object]:
    """The keys the environment sets (flags over the config file's): service.webhook_secret from
    $DEEPFAKE_STREAM_WEBHOOK_SECRET."""
    secret = environ.get(WEBHOOK_SECRET_ENV)
    return {"service.webhook_secret": secret} if secret else {}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return str(value) if isinstance(value, Path | PostgresUrl) else value
