#!/usr/bin/env python3
"""Fails on an import circle among the Rust files of a crate, or on an
import from a lower layer to a higher one.

Layers, bottom up: ring (ring/src) <- media (src/media) <- app (src/app)
<- the binaries and the crate root (src/bin, src/lib.rs) and the Python
bindings (python/src). A file may import from its own layer or a lower one.

Every .rs file under each crate's source folder is read (the tree is walked,
so files may move); an import is any path the code names, in a `use` or
inline: `crate::…`, `super::…`, `self::…`, a child module's name, or another
crate of the workspace (`framering::…`, `framering_ring::…`, and the root
crate's `ring` alias of the ring crate). A path is resolved to the file of
the longest module prefix it names. Comments and string literals are not
read; `mod x;` declares a child and is no import; a file's own inline
modules (`mod tests { use super::*; }`) are the file itself.

Usage: .ci/check_layers.py [REPO]  (exit 0: no circle, no upward import;
1: each one found is printed with the names that tie it).
"""

import os
import re
import sys

# (crate name as code names it, source folder, layer of a file by its path)
CRATES = [
    ("framering_ring", "ring/src"),
    ("framering", "src"),
    ("framering_py", "python/src"),
]
# Layer of a file: the first prefix that matches its path.
LAYERS = [
    ("ring/src/", 0, "ring"),
    ("src/media/", 1, "media"),
    ("src/app/", 2, "app"),
    ("src/bin/", 3, "binaries"),
    ("src/lib.rs", 3, "crate root"),
    ("python/src/", 3, "bindings"),
]

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
CHAR = re.compile(r"'(?:\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'\n])'")


def strip(text):
    """The code with comments, strings and char literals blanked (newlines
    kept, so offsets and lines stay as they were)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif re.match(r'b?r#*"', text[i:i + 260]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'(b?r)(#*)"', text[i:])
            end = '"' + m.group(2)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i:j + 1]))
            i = j + 1
        elif c == "'":
            m = CHAR.match(text, i)
            if m:
                out.append(blank(m.group(0)))
                i = m.end()
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use(tree):
    """`a::{b, c::{d as x}}` -> [([a, b], b), ([a, c, d], x)]: each path
    with the name it is known by (`self` in a group is the prefix)."""
    tree = re.sub(r"\s+as\s+(" + IDENT + r")", r" as \1", tree.strip())

    def parse(s):
        s = s.strip()
        k = s.find("{")
        if k < 0:
            alias = None
            m = re.match(r"(.*?)\s+as\s+(" + IDENT + r")$", s)
            if m:
                s, alias = m.group(1), m.group(2)
            segs = [p.strip() for p in s.split("::") if p.strip()]
            return [(segs, alias)] if segs else []
        prefix = [p.strip() for p in s[:k].split("::") if p.strip()]
        inner = s[k + 1:s.rfind("}")]
        parts, depth, cur = [], 0, ""
        for ch in inner:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        parts.append(cur)
        paths = []
        for part in parts:
            for segs, alias in parse(part):
                if segs == ["self"]:
                    paths.append((prefix, alias))
                else:
                    paths.append((prefix + segs, alias))
        return paths

    return [(segs, alias or (segs[-1] if segs else None)) for segs, alias in parse(tree)]


class Crate:
    def __init__(self, repo, name, folder):
        self.name, self.folder = name, folder
        self.modules = {}  # module path tuple -> file (repo-relative)
        self.files = []  # (file, module path of the file, crate id)
        base = os.path.join(repo, folder)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for f in sorted(filenames):
                if not f.endswith(".rs"):
                    continue
                path = os.path.relpath(os.path.join(dirpath, f), repo)
                rel = os.path.relpath(os.path.join(dirpath, f), base)
                parts = rel[:-3].split(os.sep)
                if parts[0] == "bin":
                    # A binary is a crate of its own.
                    self.files.append((path, (), "bin:" + path))
                    continue
                if parts[-1] in ("lib", "main") and len(parts) == 1:
                    parts = []
                elif parts[-1] == "mod":
                    parts = parts[:-1]
                self.modules[tuple(parts)] = path
                self.files.append((path, tuple(parts), name))


def layer(path):
    for prefix, rank, label in LAYERS:
        if path == prefix or path.startswith(prefix):
            return rank, label
    return None


class Source:
    """One file: its code (comments and strings blanked), inline modules,
    child modules, the paths it names and the names it re-exports."""

    def __init__(self, repo, crate, path, modpath, cid):
        self.crate, self.path, self.modpath, self.cid = crate, path, modpath, cid
        self.code = code = strip(open(os.path.join(repo, path)).read())
        # Inline modules: (start, end, names) by brace depth.
        self.inline, stack, depth = [], [], 0
        for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*([{;])|[{}]", code):
            if m.group(1):
                if m.group(2) == "{":
                    depth += 1
                    stack.append((m.group(1), depth, m.start()))
                continue
            if m.group(0) == "{":
                depth += 1
            else:
                if stack and stack[-1][1] == depth:
                    name, _, start = stack.pop()
                    self.inline.append((start, m.end(), [x[0] for x in stack] + [name]))
                depth -= 1
        n = len(modpath)
        self.children = {p[n] for p in crate.modules if len(p) == n + 1 and p[:n] == modpath}
        self.refs = []  # (segments, offset)
        self.exports = {}  # name -> (segments, offset): `pub use`
        self.globs = []  # (segments, offset): `pub use path::*`
        uses = []
        for m in re.finditer(r"\b(pub\s*(?:\([^)]*\))?\s*)?use\s+([^;]+);", code):
            uses.append((m.start(), m.end()))
            top = m.group(1) and not self.context(m.start())[len(modpath):]
            for segs, alias in expand_use(m.group(2)):
                if segs and segs[-1] == "*":
                    self.refs.append((segs[:-1], m.start()))
                    if top:
                        self.globs.append((segs[:-1], m.start()))
                elif segs:
                    self.refs.append((segs, m.start()))
                    if top:
                        self.exports[alias] = (segs, m.start())
        for m in re.finditer(r"(?<![A-Za-z0-9_:$])(" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)", code):
            if any(a <= m.start() < b for a, b in uses):
                continue
            segs = [m.group(1)] + re.findall(IDENT, m.group(2))
            self.refs.append((segs, m.start()))

    def context(self, pos):
        """The module path at `pos` (the file's, plus inline modules)."""
        best = []
        for start, end, names in self.inline:
            if start <= pos < end and len(names) > len(best):
                best = names
        return list(self.modpath) + best


def scan(repo):
    crates = {}
    for name, folder in CRATES:
        if os.path.isdir(os.path.join(repo, folder)):
            crates[name] = Crate(repo, name, folder)
    sources = {}
    for c in crates.values():
        for path, modpath, cid in c.files:
            sources[path] = Source(repo, c, path, modpath, cid)
    # Crate aliases at a root: `pub use framering_ring as ring;`.
    aliases = {}
    for c in crates.values():
        root = sources.get(c.modules.get(()))
        for name, (segs, _) in (root.exports.items() if root else []):
            if len(segs) == 1 and segs[0] in crates:
                aliases[(c.name, name)] = segs[0]

    def defines(path, name):
        """Whether the file defines an item `name` (or re-exports it)."""
        src = sources[path]
        item = r"\b(?:fn|struct|enum|union|trait|type|const|static|mod)\s+" + re.escape(name) + r"\b"
        return bool(re.search(item, src.code)) or name in src.exports

    def in_crate(crate, segs, seen):
        """The file that defines what `crate::segs` names: the file of its
        longest module prefix, followed through that file's `pub use`."""
        if segs and (crate.name, segs[0]) in aliases:
            return in_crate(crates[aliases[(crate.name, segs[0])]], segs[1:], seen)
        for k in range(len(segs), -1, -1):
            f = crate.modules.get(tuple(segs[:k]))
            if f:
                src = sources[f]
                if k < len(segs) and (f, segs[k]) not in seen:
                    seen = seen | {(f, segs[k])}
                    if segs[k] in src.exports:
                        inner, pos = src.exports[segs[k]]
                        return target(src, inner + segs[k + 1:], pos, seen) or f
                    # A glob re-export: the file it names that defines it.
                    for inner, pos in src.globs:
                        to = target(src, inner + segs[k:], pos, seen)
                        if to and to != f and defines(to, segs[k]):
                            return to
                return f
        return None

    def target(src, segs, pos, seen=frozenset()):
        """The file a path named at `pos` of `src` leads to, or None (std,
        external crates, a binary's own items)."""
        here = src.context(pos)
        first = segs[0]
        if first in ("crate", "self", "super"):
            if src.cid.startswith("bin:"):
                return None  # within the binary itself
            if first == "crate":
                return in_crate(src.crate, segs[1:], seen)
            mod, i = list(here), 0
            while i < len(segs) and segs[i] in ("self", "super"):
                if segs[i] == "super":
                    if not mod:
                        return None
                    mod.pop()
                i += 1
            return in_crate(src.crate, mod + segs[i:], seen)
        if first in crates:
            return in_crate(crates[first], segs[1:], seen)
        if len(here) == len(src.modpath) and first in src.children and not src.cid.startswith("bin:"):
            return in_crate(src.crate, list(src.modpath) + segs, seen)
        return None

    edges = {}  # (from, to) -> names
    for src in sources.values():
        for segs, pos in src.refs:
            to = target(src, segs, pos)
            if to and to != src.path:
                edges.setdefault((src.path, to), set()).add("::".join(segs))
    return edges


def circles(edges):
    """Strongly connected components of more than one file (Tarjan)."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    edges = scan(repo)
    problems = 0
    for comp in circles(edges):
        problems += 1
        print(f"import circle among {len(comp)} files: {', '.join(comp)}")
        for (a, b), names in sorted(edges.items()):
            if a in comp and b in comp:
                print(f"  {a} -> {b}: {', '.join(sorted(names))}")
    for (a, b), names in sorted(edges.items()):
        la, lb = layer(a), layer(b)
        if la and lb and lb[0] > la[0]:
            problems += 1
            print(f"upward import: {a} ({la[1]}) -> {b} ({lb[1]}): {', '.join(sorted(names))}")
    files = len({f for e in edges for f in e})
    if problems:
        print(f"check_layers: {problems} problem(s) ({len(edges)} import arrows among {files} files)")
        return 1
    print(f"check_layers: no import circle, no upward import ({len(edges)} import arrows among {files} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
