#!/usr/bin/env python3
"""The layering rule of src/: top-level modules in layer order, imports pointing down only.

Production code only (`#[cfg(test)]` modules and `tests.rs` files may reach anywhere). An
import is any `crate::<module>` path, in a `use` or inline. A module may import modules of its
own layer or of the layers below it.

Imports that point up and are not yet removed are listed in scripts/layers-known.txt: the
debt, which may only shrink. The check fails on an upward import that is not listed, and on a
listed one that no longer exists (take it off the list). `--graph` prints the module graph and
its cycles.
"""

import collections
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")
KNOWN = os.path.join(ROOT, "scripts", "layers-known.txt")

# Bottom up. Each layer may import itself and everything below.
LAYERS = [
    ["types", "error", "request", "buffers"],  # types shared by every layer
    ["settings"],  # plain, validated settings data
    ["dispatch"],  # upstream: URLs, custom-host rules, DNS, connections, one exchange
    ["stream"],  # SSE framing and the translator contract
    ["providers"],  # translators to and from each provider's API
    ["telemetry"],  # metric families, cost, the access-log writer
    ["guardrails"],  # hooks and checks
    ["portkey"],  # the Portkey interface: headers, config schema, routing queries
    ["routing"],  # plans, targets, breaker, retry budget
    ["cache"],  # response cache, simple and semantic
    ["feedback"],
    ["state"],  # what the process holds, built from the settings
    ["pipeline"],  # a request's walk: guardrails, cache, breakers, budget, each send
    ["proxy"],  # the Pingora phases and the request handler
    ["admin", "shutdown", "server"],  # the process: listeners, signals, start-up
]


def strip_tests(text):
    """Drops `#[cfg(test)] mod x { ... }` blocks and line comments."""
    out, i = [], 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        j, depth = m.end(), 1
        while depth and j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        i = j
    return re.sub(r"//[^\n]*", "", "".join(out))


def edges():
    layer_of = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    found = collections.defaultdict(lambda: collections.defaultdict(set))
    unknown = set()
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs") or f == "tests.rs" or f.endswith("_tests.rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, SRC)
            top = rel.split(os.sep)[0]
            top = top[:-3] if top.endswith(".rs") else top
            if top in ("main", "lib"):
                continue
            if top not in layer_of:
                unknown.add(top)
                continue
            text = strip_tests(open(path, encoding="utf-8").read())
            names = re.findall(r"crate::(\w+)", text)
            for group in re.findall(r"use crate::\{([^}]*)\}", text):
                names += re.findall(r"(?:^|,)\s*(\w+)", group)
            for d in names:
                if d in layer_of and d != top:
                    found[top][d].add(rel)
                elif d not in layer_of and d not in ("GatewayError", "Settings", "Portgate"):
                    pass
    return layer_of, found, unknown


def cycles(found):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in found.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted({m for layer in LAYERS for m in layer}):
        if v not in index:
            visit(v)
    return out


def main():
    layer_of, found, unknown = edges()
    if unknown:
        print(f"layers: modules without a layer: {', '.join(sorted(unknown))}")
        return 1
    up = {
        (a, b): files
        for a, targets in found.items()
        for b, files in targets.items()
        if layer_of[b] > layer_of[a]
    }
    if "--graph" in sys.argv:
        for a in sorted(found, key=lambda m: (layer_of[m], m)):
            print(f"{a} -> {' '.join(sorted(found[a]))}")
        for c in cycles(found):
            print(f"cycle: {' '.join(c)}")
        print(f"upward imports: {len(up)}")
    known = set()
    if os.path.exists(KNOWN):
        for line in open(KNOWN, encoding="utf-8"):
            line = line.split("#", 1)[0].strip()
            if line:
                a, b = line.split("->")
                known.add((a.strip(), b.strip()))
    failed = False
    for (a, b), files in sorted(up.items()):
        if (a, b) not in known:
            failed = True
            print(f"layers: {a} imports {b}, a layer above it ({', '.join(sorted(files))})")
    for a, b in sorted(known - set(up)):
        failed = True
        print(f"layers: {a} -> {b} is listed in scripts/layers-known.txt but gone: remove the line")
    if failed:
        return 1
    print(f"layers: ok ({len(LAYERS)} layers, {len(up)} known upward imports left)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
