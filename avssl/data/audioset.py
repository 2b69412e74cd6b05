"""Parsers of the AudioSet release formats: segment CSVs and ``ontology.json``.

AudioSet: Gemmeke et al., ICASSP 2017, https://research.google.com/audioset/. The ontology gives
the graded relevance used by the retrieval evaluation of "Objects that Sound"
(https://arxiv.org/abs/1712.06651): two clips are the more relevant, the closer their labels are
in the ontology.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from avssl.data.textfile import csv_fields, read_json_list, text_lines
from avssl.errors import ManifestError


@dataclass
class Segment:
    """One row of a segment CSV: a 10-s (or shorter) excerpt of a YouTube video."""

    ytid: str
    start: float
    end: float
    labels: list[str] = field(default_factory=list)


def read_segments(
    path: str | os.PathLike, bad: list[tuple[str, str]] | None = None
) -> list[Segment]:
    """Read ``balanced_train_segments.csv``, ``eval_segments.csv`` and the like.

    The format: ``#`` comment lines (the header), then ``YTID, start_seconds, end_seconds,
    "label,label,..."`` rows, with a space after each comma and the label list quoted.

    Args:
        path: the segment CSV.
        bad: when given, each malformed row is appended to it as ``(file:line, reason)`` and
            skipped; otherwise the first one is an error.

    Returns:
        The well-formed rows, in file order.

    Raises:
        ManifestError: the file is missing or unreadable, or (without ``bad``) naming
            ``file:line`` of the first malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such segment file")
    segments = []
    for lineno, line in enumerate(text_lines(path), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{lineno}"
        try:
            # a tab after a comma would keep a quoted label list's quotes (skipinitialspace
            # skips spaces only); no field of the format holds a tab
            fields = csv_fields(line.replace("\t", " "), where, skipinitialspace=True)
            segments.append(_segment(fields, where))
        except ManifestError as err:
            if bad is None:
                raise
            bad.append((where, str(err).removeprefix(f"{where}: ")))
    return segments


def _segment(fields: list[str], where: str) -> Segment:
    """One row's :class:`Segment` (``where`` names it in the error)."""
    if len(fields) != 4:
        raise ManifestError(f"{where}: expected 4 fields, got {len(fields)}")
    ytid, start, end, labels = (f.strip() for f in fields)
    try:
        t0, t1 = float(start), float(end)
    except ValueError:
        raise ManifestError(f"{where}: start/end are not numbers") from None
    if not ytid:
        raise ManifestError(f"{where}: empty YouTube id")
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0 or t0 < 0:
        raise ManifestError(f"{where}: bad segment times {t0} .. {t1}")
    return Segment(ytid, t0, t1, [x.strip() for x in labels.split(",") if x])


@dataclass
class Node:
    """One ontology class."""

    id: str
    name: str
    description: str = ""
    child_ids: list[str] = field(default_factory=list)
    restrictions: list[str] = field(default_factory=list)


class Ontology:
    """The AudioSet ontology: a DAG (some classes have several parents).

    Distances follow edges in either direction. :meth:`tree_distance` is the shortest path that
    goes up from ``a`` to some common ancestor and down to ``b``, minimised over *all* common
    ancestors (with several parents there is no unique lowest one) including a virtual root
    one edge above each top-level class, where classes under different top-level categories
    meet.

    Args:
        nodes: the classes; their ``child_ids`` must name classes of the list.
    """

    def __init__(self, nodes: list[Node]):
        self.nodes = {n.id: n for n in nodes}
        self._parents: dict[str, list[str]] = {i: [] for i in self.nodes}
        for node in nodes:
            for child in node.child_ids:
                if child not in self.nodes:
                    raise ManifestError(f"ontology: {node.id} lists unknown child {child!r}")
                self._parents[child].append(node.id)
        self._check_acyclic()
        self._up: dict[str, dict[str, int]] = {}

    def _check_acyclic(self) -> None:
        """Refuse a class that is its own ancestor (distances assume a DAG)."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for root in self.nodes:
            stack = [(root, iter(self.nodes[root].child_ids))]
            state.setdefault(root, 1)
            while stack:
                node, children = stack[-1]
                child = next(children, None)
                if child is None:
                    state[node] = 2
                    stack.pop()
                elif state.get(child) == 1:
                    raise ManifestError(f"ontology: {child} is its own ancestor (a cycle)")
                elif child not in state:
                    state[child] = 1
                    stack.append((child, iter(self.nodes[child].child_ids)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Ontology:
        """Read ``ontology.json`` (a list of objects with id, name, child_ids, restrictions...)."""
        path = Path(path)
        data = read_json_list(path, "classes")
        nodes = []
        for k, obj in enumerate(data):
            if not isinstance(obj, dict) or "id" not in obj or "name" not in obj:
                raise ManifestError(f"{path}: entry {k} has no 'id' or 'name'")
            lists = {key: obj.get(key, []) for key in ("child_ids", "restrictions")}
            if not isinstance(obj["id"], str) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists.values()
            ):
                raise ManifestError(
                    f"{path}: entry {k}: 'id' must be a string, 'child_ids' and 'restrictions' "
                    "lists of strings"
                )
            nodes.append(
                Node(
                    id=obj["id"],
                    name=str(obj["name"]),
                    description=str(obj.get("description", "")),
                    child_ids=list(lists["child_ids"]),
                    restrictions=list(lists["restrictions"]),
                )
            )
        try:
            return cls(nodes)
        except ManifestError as err:
            raise ManifestError(f"{path}: {err}") from None

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, id_: str) -> bool:
        return id_ in self.nodes

    def _node(self, id_: str) -> Node:
        try:
            return self.nodes[id_]
        except KeyError:
            raise KeyError(f"unknown ontology id {id_!r}") from None

    def name(self, id_: str) -> str:
        """The display name of class ``id_`` (``KeyError`` for an unknown id)."""
        return self._node(id_).name

    def children(self, id_: str) -> list[str]:
        """The ids of ``id_``'s direct subclasses, as its ``child_ids`` lists them."""
        return list(self._node(id_).child_ids)

    def parents(self, id_: str) -> list[str]:
        """The ids of the classes listing ``id_`` as a child (none for a root)."""
        self._node(id_)
        return list(self._parents[id_])

    def roots(self) -> list[str]:
        """Top-level classes (no parent), in file order."""
        return [i for i, p in self._parents.items() if not p]

    def _upward(self, id_: str) -> dict[str, int]:
        """Fewest edges from ``id_`` up to each of its ancestors (itself at 0)."""
        if id_ not in self._up:
            self._node(id_)
            dist, queue = {id_: 0}, deque([id_])
            while queue:
                cur = queue.popleft()
                for parent in self._parents[cur]:
                    if parent not in dist:
                        dist[parent] = dist[cur] + 1
                        queue.append(parent)
            self._up[id_] = dist
        return self._up[id_]

    def ancestors(self, id_: str) -> set[str]:
        """Every class above ``id_`` through any parent (not ``id_`` itself)."""
        return set(self._upward(id_)) - {id_}

    def depth(self, id_: str) -> int:
        """Fewest edges from ``id_`` up to a top-level class (top-level classes: 0)."""
        up = self._upward(id_)
        return min(d for i, d in up.items() if not self._parents[i])

    def tree_distance(self, a: str, b: str) -> int:
        """Edges on the shortest path from ``a`` up to a common ancestor and down to ``b``.

        0 for the same class, 1 for parent and child, 2 for siblings. A virtual root above
        every top-level class is a common ancestor of all classes (path length
        ``depth(a) + depth(b) + 2``); it is the meeting point when no real common ancestor is
        nearer (a class with several parents can be far below its real common ancestors).

        Args:
            a: an ontology class id.
            b: another class id (the distance is symmetric).
        """
        up_a, up_b = self._upward(a), self._upward(b)
        common = up_a.keys() & up_b.keys()
        via_root = self.depth(a) + self.depth(b) + 2
        return min([via_root, *(up_a[c] + up_b[c] for c in common)])

    def min_distance(self, labels_a: list[str], labels_b: list[str]) -> int:
        """Smallest :meth:`tree_distance` between any label of one list and any of the other.

        Args:
            labels_a: class ids of one clip (at least one).
            labels_b: class ids of the other clip (at least one).
        """
        return min(self.tree_distance(a, b) for a in labels_a for b in labels_b)

    def is_restricted(self, id_: str, kind: str | None = None) -> bool:
        """Whether the class carries restrictions (``"abstract"``, ``"blacklist"``), or ``kind``.

        Args:
            id_: an ontology class id.
            kind: the one restriction to look for; ``None``: any.
        """
        restrictions = self._node(id_).restrictions
        return kind in restrictions if kind is not None else bool(restrictions)
