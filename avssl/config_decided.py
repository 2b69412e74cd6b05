"""Which settings decided a config refusal: the keys a ``--config`` file writes, the keys a
``--set`` assigns, and whether either set the refused value, so that a refusal names the file
only when the file decided it (:func:`avssl.config_checks.check_ranges`,
:func:`avssl.config_naming.naming_config_file`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import yaml

from avssl.errors import ConfigError


def written_keys(data: dict, prefix: str = "") -> frozenset[str]:
    """The dotted keys a config file's mapping gives a value, as written (``model.audio.n_fft``
    of ``{"model": {"audio": {"n_fft": 256}}}``). A section is no key of its own: the file sets
    only the keys written inside it (as ``--set model.audio={...}`` sets only the keys it names,
    :func:`_override_keys`), and a refusal naming the section (``model.audio``) is matched
    through them (:func:`file_decided`).

    Args:
        data: the mapping the YAML file holds.
        prefix: the dotted section ``data`` sits in, with its trailing dot.
    """
    keys = set()
    for name, value in data.items():
        if isinstance(value, dict):
            keys |= written_keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return frozenset(keys)


def file_decided(
    key: str, reason: str, file_keys: Iterable[str], overrides: list[str] = ()
) -> bool:
    """Whether a refusal of ``key`` is the config file's, to be named in it: the file sets
    ``key`` or a key the refusal names (as a whole key, or by its section), and no ``--set``
    override decided it (:func:`set_by_override`). A refusal of a value left at its default
    names no file. The one rule of :func:`check_ranges` and
    :func:`avssl.config_naming.naming_config_file`.

    Args:
        key: the dotted key refused, e.g. ``data.window``.
        reason: the rest of the refusal, naming the other keys that decide it.
        file_keys: the dotted keys the file gives a value (:func:`written_keys`).
        overrides: the ``--set key=value`` assignments applied after the file.
    """
    if set_by_override(key, reason, overrides):
        return False
    return any(_set_caused(key, k, reason) for k in file_keys)


def file_error(path, message: str, kind: type[ConfigError] = ConfigError) -> ConfigError:
    """A ``kind`` error ``PATH: message`` that records it names the config file ``path``
    (:attr:`ConfigError.config_file`), so that it is not named a second time."""
    err = kind(f"{path}: {message}")
    err.config_file = str(path)
    return err


def set_by_override(key: str, reason: str, overrides: list[str] = ()) -> bool:
    """Whether a ``--set`` override gave ``key`` (or a key its refusal names) its value, so that
    an error about it names no config file.

    Args:
        key: the dotted key refused, e.g. ``model.audio.kind``.
        reason: the rest of the refusal, which may name the other key of a combination
            (``train.lr`` beside ``train.weight_decay``).
        overrides: the ``--set key=value`` assignments applied after the file.
    """
    return any(_set_caused(key, k, reason) for k in _override_keys(overrides))


def _override_keys(overrides: list[str]) -> list[str]:
    """The dotted keys ``--set`` assignments give a value: a mapping given to a section sets the
    keys it names (``model.audio={n_mels: 64}`` sets ``model.audio.n_mels``), not the section."""
    keys = []
    for item in overrides:
        key, _, raw = item.partition("=")
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:  # not applied then: apply_override refused it first
            value = None
        keys.extend(written_keys(value, f"{key}.") if isinstance(value, dict) else [key])
    return keys


def _named(word: str, reason: str) -> bool:
    """Whether ``reason`` names ``word`` as a whole (dotted) key, not a part of another."""
    return re.search(rf"(?<![\w.]){re.escape(word)}(?!\w|\.\w)", reason) is not None


def _set_caused(key: str, k: str, reason: str) -> bool:
    """Whether setting ``k`` (a ``--set``, or a key the file writes) decides the refusal of
    ``key`` whose text is ``reason``."""
    if key == k or key.startswith(k + "."):  # the key, or a section set whole
        return True
    if k.startswith(key + ".") and _named(k[len(key) + 1 :], reason):  # a section's key, named
        return True
    parts = k.split(".")
    sections = (".".join(parts[:i]) for i in range(2, len(parts)))  # model.audio of its n_fft
    return _named(k, reason) or any(_named(s, reason) for s in sections)
