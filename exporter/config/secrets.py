"""Secrets the config names (API keys, the bearer token), read when the daemon starts.

Loading a config reads no secret, so a job that only writes rules (``generate``) or checks a
file (``check-config``) runs without the production environment. The daemon calls
``resolve_secrets`` before it serves, and again on every reload.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from exporter.config.model import Config
from exporter.exceptions import ConfigError

__all__ = ["Secret", "needed_secrets", "resolve_secrets"]


@dataclass(frozen=True, slots=True)
class Secret:
    """Where one secret comes from: an environment variable or a file, and the key naming it."""

    path: str
    env: str | None = None
    file: str | None = None

    def read(self) -> str:
        """Return the secret's value; raise ``ValueError`` saying why there is none."""
        if self.env is not None:
            value = os.environ.get(self.env, "")
            if not value:
                raise ValueError("unset or empty")
            return value
        assert self.file is not None  # one of the two, by construction
        try:
            # Stripped: a token file written by `echo` ends with a newline.
            value = Path(self.file).read_text("utf-8").strip()
        except OSError as error:
            raise ValueError(f"unreadable: {error.strerror}") from error
        except UnicodeDecodeError as error:
            raise ValueError("not UTF-8 text") from error
        if not value:
            raise ValueError("empty")
        return value

    @property
    def where(self) -> str:
        """Return ``environment variable NAME`` or ``file PATH``."""
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


def needed_secrets(config: Config) -> tuple[Secret, ...]:
    """Return every secret the daemon will read for ``config``, in config order."""
    auth = config.server.auth
    found = []
    if auth.bearer_token_env:
        found.append(Secret("$.server.auth.bearer_token_env", env=auth.bearer_token_env))
    elif auth.bearer_token_file:
        found.append(Secret("$.server.auth.bearer_token_file", file=auth.bearer_token_file))
    for name, judge in config.judges.items():
        if judge.api_key_env:
            found.append(Secret(f"$.judges.{name}.api_key_env", env=judge.api_key_env))
    return tuple(found)


def resolve_secrets(config: Config) -> Config:
    """Return ``config`` with every secret read; raise one ``ConfigError`` naming each missing."""
    values, problems = {}, []
    for secret in needed_secrets(config):
        try:
            values[secret.path] = secret.read()
        except ValueError as error:
            message = f"{secret.where} is {error}"
            problems.append(ConfigError(message, source=config.source, path=secret.path))
    if problems:
        raise ConfigError.of(problems)
    auth = config.server.auth
    token = values.get("$.server.auth.bearer_token_env") or values.get(
        "$.server.auth.bearer_token_file"
    )
    judges = {
        name: dataclasses.replace(judge, api_key=values.get(f"$.judges.{name}.api_key_env"))
        for name, judge in config.judges.items()
    }
    return dataclasses.replace(
        config,
        server=dataclasses.replace(
            config.server, auth=dataclasses.replace(auth, bearer_token=token)
        ),
        judges=MappingProxyType(judges),
    )
