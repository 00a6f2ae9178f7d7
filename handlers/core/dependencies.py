"""Which services need which: app.yaml's ``depends_on`` as a graph, built once per loaded configuration and
walked in memory.

An edge says that a service needs another: the web shop depends on payments with ``impact: full`` (it stops
when payments stops) or ``partial`` (it limps on without it). Dependencies are followed transitively, and
what reaches a service along a path is as bad as the path's mildest edge: a service is *fully* affected by
another's failure when some path of dependencies from it down to that service is full at every edge, and
*partly* affected when every such path has a partial edge somewhere. Each one reached comes with a shortest
path of its kind, dependent first (``mobile-app → webshop → payments``).

check-config refuses a service that depends on itself, on a service the catalogue does not have, or twice on
the same one, and every cycle, named as its path in the file (``webshop → payments → ledger → webshop``).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from handlers.core.config import AppConfig
    from handlers.core.config_catalogue import Service

Edges = Mapping[str, Sequence[tuple[str, str]]]  # service → (the service at the other end, impact)


@dataclass(frozen=True)
class Reach:
    """A service reached from another through the graph."""

    service: str
    impact: str  # full | partial
    path: tuple[str, ...]  # dependent first, each needing the next: ("mobile-app", "webshop", "payments")


class DependencyGraph:
    """The catalogue's dependencies in both directions; walks are remembered, since the graph never changes."""

    def __init__(self, services: Iterable[Service]):
        services = list(services)
        self.services: dict[str, Service] = {}  # by id: app.yaml's own look-up reads the list through
        for s in services:
            self.services.setdefault(s.id, s)
        known = self.services.keys()
        self.uses: dict[str, list[tuple[str, str]]] = {}  # a service → what it depends on
        self.used_by: dict[str, list[tuple[str, str]]] = {}  # a service → what depends on it
        for s in services:
            for d in s.depends_on:
                if d.service in known and d.service != s.id:
                    self.uses.setdefault(s.id, []).append((d.service, d.impact))
                    self.used_by.setdefault(d.service, []).append((s.id, d.impact))
        self._dependents: dict[str, list[Reach]] = {}
        self._dependencies: dict[str, list[Reach]] = {}

    @property
    def empty(self) -> bool:
        return not self.uses

    def dependents(self, service_id: str) -> list[Reach]:
        """Every service that needs this one, directly or through others, nearest first."""
        found = self._dependents.get(service_id)
        if found is None:
            found = self._dependents[service_id] = walk(service_id, self.used_by)
        return found

    def dependencies(self, service_id: str) -> list[Reach]:
        """Every service this one needs, directly or through others, nearest first; paths start at this one."""
        found = self._dependencies.get(service_id)
        if found is None:
            found = self._dependencies[service_id] = [
                Reach(r.service, r.impact, r.path[::-1]) for r in walk(service_id, self.uses)]
        return found

    def carried(self, service_ids: Iterable[str]) -> list[Reach]:
        """The services that need any of these (and are not among them): what a change to them also touches.
        Fully, if fully through any of them."""
        given = list(dict.fromkeys(service_ids))
        out: dict[str, Reach] = {}
        for sid in given:
            for r in self.dependents(sid):
                if r.service not in given and (r.service not in out or
                                               (r.impact == "full" and out[r.service].impact == "partial")):
                    out[r.service] = r
        return list(out.values())


def walk(start: str, edges: Edges) -> list[Reach]:
    """Breadth first from ``start`` along ``edges``, twice: over full edges alone (what is reached that way is
    fully reached) and over every edge. Each path runs from the service reached back to ``start``."""
    full = _parents(start, edges, only_full=True)
    every = _parents(start, edges, only_full=False)
    out = []
    for node in every:
        if node == start:
            continue
        impact, parents = ("full", full) if node in full else ("partial", every)
        path = [node]
        while path[-1] != start:
            path.append(parents[path[-1]])
        out.append(Reach(node, impact, tuple(path)))
    return out


def _parents(start: str, edges: Edges, only_full: bool) -> dict[str, str]:
    """Each node reached from ``start`` → the node it was reached from, in the order reached."""
    parents = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt, impact in edges.get(node, ()):
            if nxt not in parents and (impact == "full" or not only_full):
                parents[nxt] = node
                queue.append(nxt)
    return parents


_BUILT: dict[int, tuple[list, DependencyGraph]] = {}  # id(config.services) → (that list, its graph)


def dependency_graph(config: AppConfig) -> DependencyGraph:
    """The graph of this configuration's services, built on first use. Keyed by the services list itself,
    so a configuration copied with other services gets a graph of its own."""
    services = config.services
    hit = _BUILT.get(id(services))
    if hit is not None and hit[0] is services:
        return hit[1]
    graph = DependencyGraph(services)
    if len(_BUILT) >= 16:
        _BUILT.pop(next(iter(_BUILT)))
    _BUILT[id(services)] = (services, graph)
    return graph


def dependency_problems(services: Sequence[Service]) -> list[str]:
    """check-config's objections to ``depends_on``, each by its path in app.yaml."""
    problems = []
    index = {s.id: i for i, s in enumerate(services)}
    needs: dict[str, dict[str, int]] = {}  # the edges left once the faulty ones are out → their index
    for i, s in enumerate(services):
        edges = needs.setdefault(s.id, {})
        for j, d in enumerate(s.depends_on):
            where = f"services[{i}].depends_on[{j}]"
            if d.service == s.id:
                problems.append(f"{where}: a service cannot depend on itself")
            elif d.service not in index:
                problems.append(f"{where}: unknown service '{d.service}'")
            elif d.service in edges:
                problems.append(f"{where}: '{d.service}' is already services[{i}].depends_on[{edges[d.service]}]")
            else:
                edges[d.service] = j
    for cycle in _cycles(needs, index):
        first, second = cycle[0], cycle[1]
        problems.append(f"services[{index[first]}].depends_on[{needs[first][second]}]: a dependency cycle: "
                        + " → ".join(cycle))
    return problems


def _cycles(needs: dict[str, dict[str, int]], index: Mapping[str, int]) -> list[tuple[str, ...]]:
    """Every cycle, each once: graphlib finds one; its first edge is set aside and the search goes on."""
    left = {sid: set(edges) for sid, edges in needs.items()}
    found = []
    for _ in range(sum(map(len, left.values()))):
        try:
            TopologicalSorter(left).prepare()
            break
        except CycleError as exc:
            # graphlib lists each node before the one that needs it: reversed, each needs the next.
            ring = list(reversed(exc.args[1]))[:-1]
            start = min(range(len(ring)), key=lambda k: index[ring[k]])  # the one first in the file
            ring = ring[start:] + ring[:start]
            found.append((*ring, ring[0]))
            left[ring[0]].discard(ring[1])
    return found
