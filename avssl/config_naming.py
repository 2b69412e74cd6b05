"""Naming the ``--config`` file in a refusal raised after :func:`~avssl.config.load_config`
(the model's build, the front end, the pooling, the device), as ``load_config`` names it in its
own: ``FILE: KEY: reason``, when the file decided the refused value."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from dataclasses import fields
from pathlib import Path

from avssl.config import Config, read_config_file
from avssl.config_decided import file_decided, file_error, written_keys
from avssl.errors import ConfigError


def leading_key(message: str) -> str | None:
    """The dotted config key a refusal begins with (``model.audio.kind`` of ``model.audio.kind:
    unknown front end ...``, ``train.precision`` of ``train.precision=fp16 needs CUDA``, the
    section ``model`` of ``model: 1.2 M parameters need ...``), or None when it begins with
    anything else (a file, an entry point, a flag)."""
    found = re.match(r"([A-Za-z_]\w*(?:\.\w+)*)(?=[:= ]|$)", message)
    if found is None:
        return None
    node = Config()
    for part in found.group(1).split("."):
        if not dataclasses.is_dataclass(node) or part not in {f.name for f in fields(node)}:
            return None
        node = getattr(node, part)
    return found.group(1)


@contextlib.contextmanager
def naming_config_file(path: str | os.PathLike | None, overrides: list[str] = ()):
    """Name the config file ``path`` in a :class:`ConfigError` raised inside, as
    :func:`load_config` names it in its own (``FILE: KEY: reason``), for the checks that run
    later on the loaded config (the model's build, the front end, the pooling, the device).

    The file is named only when the refusal begins with a config key and the file decided it
    (:func:`~avssl.config_decided.file_decided`, the rule of :func:`load_config`): the file
    sets that key or one the refusal names, and no ``--set`` override decided it. A refusal that
    begins with something else (another file, an entry point), or names a config file already
    (:attr:`~avssl.errors.ConfigError.config_file`; a file called ``model`` is no section), is
    raised as it is. The file is read again only for such a refusal.
    """
    try:
        yield
    except ConfigError as err:
        message = str(err)
        if path is None or err.config_file is not None:
            raise
        key = leading_key(message)
        if key is None:
            raise
        try:
            keys = written_keys(read_config_file(path))
        except ConfigError:  # gone or unreadable since: what it set is not known
            keys = frozenset()
        if not file_decided(key, message[len(key) :], keys, overrides):
            raise
        # its type kept (UnknownMethodError); the path spelt as load_config spells it
        raise file_error(Path(path), message, type(err)) from None
