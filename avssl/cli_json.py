"""The JSON the commands print: strict (no NaN) and keeping file names readable.

Re-exported by :mod:`avssl.cli`, where the commands import them from.
"""

from __future__ import annotations

import json
import math
import re


def json_safe(value):
    """``value`` with every NaN or infinity replaced by None, recursively (strict JSON).

    A metric with nothing to average over (e.g. hard-negative accuracy on clips too short for a
    shift) is NaN inside the code and ``null`` in every JSON avssl prints.
    """
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_line(obj) -> str:
    """The one-line JSON object every command prints last (strict JSON: no NaN)."""
    return json.dumps(json_safe(obj), allow_nan=False)


# the lone surrogates os.fsdecode makes of the bytes of a file name that are not UTF-8
_SURROGATE = re.compile("[\ud800-\udfff]")


def names_json(obj) -> str:
    """``obj`` as one line of JSON keeping non-ASCII names readable (``ensure_ascii=False``),
    with the lone surrogates of a name that is not UTF-8 escaped (``caf\\udce9.mp4``): no UTF-8
    output can hold them, and ``json.loads`` gives the same name back."""
    text = json.dumps(obj, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
