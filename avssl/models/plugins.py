"""Methods installed by other packages: entry points of the group ``avssl.methods``.

A package ships a method by declaring, in its packaging metadata, an entry point whose name is
the method's name and whose value is ``module:Class``, the class a subclass of
:class:`~avssl.models.base.AVModel` (README, "Adding a method")::

    [options.entry_points]
    avssl.methods =
        mine = mypkg.mine:Mine

How :func:`avssl.models.method_class` and :func:`avssl.models.build_model` resolve a name:

- A name in :data:`avssl.models.METHODS` (the built-ins, and any registered in-process) is that
  entry. No package's metadata is read and no plugin is imported, so a plugin that does not
  import cannot affect a run of such a method. (A damaged ``entry_points.txt`` of any package
  is another matter: ``import torch`` reads every one, for its device backends and triton's,
  and fails before avssl runs; the refusal of :func:`_declared` is for one damaged later.)
- Any other name is looked up among the group's entry points (:func:`plugin_class`), and only
  the module of the entry point with that name is imported, each time the name is resolved
  (Python imports a module once; there is no other cache, so a package installed or removed
  between two calls is seen).
- An entry point named as a registered method is never loaded: it cannot replace it. The error
  of an unknown name, which lists the valid names from the metadata alone (nothing is imported
  to list them), names it as ignored, with its distribution (:func:`unknown_method`).
- A plugin that cannot be used is a :class:`~avssl.errors.ConfigError` naming its entry point,
  its distribution and the reason: its module does not import, its object is not an
  ``AVModel`` subclass, or installed packages declare the name with different values.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from avssl.errors import ConfigError, UnknownMethodError
from avssl.models.base import AVModel

GROUP = "avssl.methods"
_REASON_CHARS = 200  # of an import error's first line


def describe(ep: EntryPoint) -> str:
    """``avssl.methods: mine = mypkg.mine:Mine (mypkg 0.1)``: the entry point as declared, and
    the distribution declaring it (its name and version, when known)."""
    try:
        meta = ep.dist.metadata
        name, version = meta["Name"] or "?", meta["Version"] or "?"
    except Exception:  # no distribution, or metadata without a METADATA file
        name, version = "?", "?"
    return f"{GROUP}: {ep.name} = {ep.value} ({name} {version})"


def _reason(err: BaseException) -> str:
    """``Type: first line of the message``, at most :data:`_REASON_CHARS` characters."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _declared(name: str) -> list[EntryPoint]:
    """Every entry point of :data:`GROUP` of the installed packages (metadata only).

    Raises:
        ConfigError: the metadata cannot be read (a package's ``entry_points.txt`` is damaged).
    """
    try:
        return list(entry_points(group=GROUP))
    except Exception as err:  # any installed package's metadata, not only a plugin's
        raise ConfigError(
            f"model.method: {name!r} is not a registered method, and the {GROUP} entry points "
            f"of the installed packages cannot be read ({_reason(err)})"
        ) from None


def _kind(obj: object) -> str:
    """What ``obj`` is, for a refusal: ``the class pkg.mod.Name``, ``a module``, ``a function``."""
    if isinstance(obj, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, ModuleType):
        return f"the module {obj.__name__}"
    return f"a {type(obj).__name__}"


def load(ep: EntryPoint) -> type[AVModel]:
    """Import the class entry point ``ep`` names and check that it is a method.

    Raises:
        ConfigError: its value is not ``module:Class``, its module does not import (any error
            raised while importing it), or its object is not a subclass of ``AVModel``.
    """
    where = f"model.method: {describe(ep)}"
    if EntryPoint.pattern.match(ep.value) is None or ":" not in ep.value:
        raise ConfigError(f"{where}: the value is not of the form module:Class")
    try:
        obj = ep.load()
    except Exception as err:  # a plugin's import can raise anything; it must not be a traceback
        raise ConfigError(f"{where}: cannot import it ({_reason(err)})") from None
    if not (isinstance(obj, type) and issubclass(obj, AVModel)):
        raise ConfigError(f"{where}: {_kind(obj)}, not a subclass of avssl.models.base.AVModel")
    return obj


def plugin_class(name: str) -> type[AVModel] | None:
    """The method class installed as entry point ``name`` of :data:`GROUP`, imported now; None
    when no installed package declares that name.

    Args:
        name: a method name that is not in :data:`avssl.models.METHODS` (the caller looks there
            first: a registered name never reaches the plugins).

    Raises:
        ConfigError: the plugin cannot be used (:func:`load`), installed packages declare
            ``name`` with different values, or the metadata cannot be read.
    """
    named = [ep for ep in _declared(name) if ep.name == name]
    if not named:
        return None
    # importlib keeps the first copy of a distribution on sys.path; two distributions
    # declaring one value are one plugin
    if len({ep.value for ep in named}) > 1:
        listed = "; ".join(sorted(describe(ep) for ep in named))
        raise ConfigError(
            f"model.method: {name!r} is declared by more than one entry point ({listed}); "
            "uninstall all but one"
        )
    return load(named[0])


def unknown_method(name: object, registered: Iterable[str]) -> UnknownMethodError:
    """The refusal of a method name neither registered nor installed.

    It lists the valid names, the registered ones first, then the installed plugins' (read from
    the metadata: no plugin is imported to list it), and names the entry points ignored because
    a registered method has their name.

    Args:
        name: the unknown ``model.method``.
        registered: the names of :data:`avssl.models.METHODS`.
    """
    registered = list(registered)
    declared = _declared(str(name))
    plugins = sorted({ep.name for ep in declared if ep.name not in registered})
    valid = ", ".join([*registered, *plugins])
    shadowed = "; ".join(sorted(describe(ep) for ep in declared if ep.name in registered))
    ignored = f"; ignored, as a registered method's name: {shadowed}" if shadowed else ""
    return UnknownMethodError(f"model.method: unknown method {name!r} (valid: {valid}{ignored})")
