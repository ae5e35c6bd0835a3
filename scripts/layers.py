#!/usr/bin/env python3
"""The layering rule of src/: top-level modules in layer order, imports pointing down only.

Production code only (`#[cfg(test)]` modules and `tests.rs` files may reach anywhere). An
import is any `crate::<module>` path, in a `use` or inline. A module may import modules of its
own layer or of the layers below it; the check fails on an import that points up and on any
cycle between top-level modules (two modules of one layer importing each other included).
`--graph` prints the module graph.
"""

import collections
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")

# Bottom up. Each layer may import itself and everything below.
LAYERS = [
    ["types", "error", "request", "buffers"],  # types shared by every layer
    ["settings"],  # plain, validated settings data
    ["store"],  # connections to the shared stores (Redis)
    ["dispatch"],  # upstream: URLs, custom-host rules, DNS, connections, one exchange
    ["stream"],  # SSE framing and the translator contract
    ["providers"],  # translators to and from each provider's API
    ["telemetry"],  # metric families, cost, the access-log writer
    ["guardrails"],  # hooks and checks
    ["portkey"],  # the Portkey interface: headers, config schema, routing queries
    ["routing"],  # plans, targets, breaker, retry budget
    ["cache"],  # response cache, simple and semantic
    ["limits"],  # rate limits and budgets, counted in this process or in Redis
    ["feedback"],
    ["log_store"],  # requests and feedback kept for datasets (files or PostgreSQL)
    ["state"],  # what the process holds, built from the settings
    ["pipeline"],  # a request's walk: guardrails, cache, breakers, budget, each send
    ["proxy"],  # the Pingora phases and the request handler
    ["admin", "shutdown", "reload", "server", "commands"],  # the process: listeners, signals, start-up
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


def edges(src=SRC):
    layer_of = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    found = collections.defaultdict(lambda: collections.defaultdict(set))
    unknown = set()
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs") or f == "tests.rs" or f.endswith("_tests.rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src)
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


def self_test():
    """The check fails on an upward import and on a cycle within a layer, and passes a tree
    without either."""
    import tempfile

    def tree(files):
        d = tempfile.mkdtemp()
        for m in sorted({m for layer in LAYERS for m in layer}):
            os.makedirs(os.path.join(d, m), exist_ok=True)
            open(os.path.join(d, m, "mod.rs"), "w").write(files.get(m, "") + "\n")
        return d

    clean = tree({"state": "use crate::settings::Settings;"})
    up = tree({"settings": "use crate::state::State;"})
    cycle = tree({"error": "use crate::request::X;", "request": "use crate::error::E;"})
    tested = "#[cfg(test)]\nmod tests {\n    use crate::state::State;\n}"
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        results = [check(clean), check(up), check(cycle), check(tree({"settings": tested}))]
    if results != [0, 1, 1, 0]:
        print(f"layers: self-test failed: {results}")
        return 1
    print("layers: self-test ok")
    return 0


def main():
    if "--self-test" in sys.argv:
        return self_test()
    return check(SRC, "--graph" in sys.argv)


def check(src, graph=False):
    layer_of, found, unknown = edges(src)
    if unknown:
        print(f"layers: modules without a layer: {', '.join(sorted(unknown))}")
        return 1
    up = {
        (a, b): files
        for a, targets in found.items()
        for b, files in targets.items()
        if layer_of[b] > layer_of[a]
    }
    if graph:
        for a in sorted(found, key=lambda m: (layer_of[m], m)):
            print(f"{a} -> {' '.join(sorted(found[a]))}")
    failed = False
    for (a, b), files in sorted(up.items()):
        failed = True
        print(f"layers: {a} imports {b}, a layer above it ({', '.join(sorted(files))})")
    for c in cycles(found):
        failed = True
        print(f"layers: import cycle between {', '.join(c)}")
    if failed:
        return 1
    print(f"layers: ok ({len(LAYERS)} layers, no upward import, no cycle)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
