#!/usr/bin/env python3
"""Structural figures about a Rust crate's source tree, for before/after comparisons.

Usage: python3 tools/house-figures.py [SRC_DIR] [--json] [--no-tests]
                                      [--file-lines N] [--fn-lines N]

SRC_DIR defaults to core/src under the repository root (the parent of this
script's directory).  Every *.rs file under SRC_DIR is read; the script prints:

 1. files over 800 lines;
 2. functions over 150 lines, measured from the line of the `fn` keyword to the
    line of its matching closing brace (declarations without a body are skipped;
    nested fns and methods count on their own, and an outer fn includes them);
 3. module dependency circles: strongly connected components (more than one
    node) of the graph between top-level modules (`engine`, `media`, ...) and of
    the graph between file-level modules (`media/ingest`, `policy/script`, ...).
    Edges come from `use` trees (grouped and multi-line), `crate::`/`super::`/
    `self::` paths written inline, paths through a module imported by name
    (`use crate::media; ... media::fallback::X`), and a `mod.rs`/`lib.rs`
    naming one of its own child modules.  A path maps to the longest prefix that
    is a file module (`crate::media::ingest::Router` -> `media/ingest`).
    In main.rs (the binary) the library is reached as `<crate name>::`.
 4. "upward imports": references from a module inside media/ to anything outside
    media/ other than config, event, action, net and redact; references to wasm,
    policy or http are flagged separately;
 5. `fn lock` definitions and inline poison handling (`.lock().unwrap()`,
    `.read().unwrap()`, `.write().unwrap()`, `.lock().expect(`,
    `unwrap_or_else(|e| e.into_inner())`, `PoisonError::into_inner`);
 6. the number of files and total lines.

Code under `#[cfg(test)]` (and `#[test]` fns) is counted but marked "test";
--no-tests leaves it out of every figure except the line totals.

Limits: this is a heuristic tokenizer, not rustc.  It skips comments (line and
nested block), string literals (including raw, byte and C strings), char
literals and lifetimes correctly, but it does not expand macros, resolve glob
imports to their items, follow `pub use` re-exports, look at `#[path]`
attributes or cfg conditions other than `cfg(test)`, or know about local
shadowing.  A module file that no `mod` declares is still counted.  Figures are
meant to be compared with each other, not taken as exact.

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

FILE_LINES = 800
FN_LINES = 150
MEDIA = "media"
MEDIA_ALLOWED = {"config", "event", "action", "net", "redact"}
MEDIA_FLAGGED = {"wasm", "policy", "http"}


# --------------------------------------------------------------------------- tokenizer

@dataclass(slots=True)
class Tok:
    kind: str  # "id", "lt" (lifetime/label), "lit" (string/char/number), "p" (punctuation)
    text: str
    pos: int


_ID_START = re.compile(r"[A-Za-z_\u00c0-\uffff]")
_ID_CHARS = re.compile(r"[A-Za-z0-9_\u00c0-\uffff]*")
_NUM = re.compile(r"[0-9][0-9A-Za-z_]*")
_MULTI_PUNCT = ("::", "->", "=>")


def tokenize(text: str) -> list[Tok]:
    """Split Rust source into tokens, dropping comments and whitespace."""
    toks: list[Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if c == '"':
            i = _skip_string(text, i + 1)
            toks.append(Tok("lit", '""', i))
            continue
        if c == "'":
            start = i
            if i + 1 < n and text[i + 1] == "\\":
                j = i + 3  # past the quote, the backslash and the escaped char
                while j < n and text[j] != "'":
                    j += 1
                i = j + 1
                toks.append(Tok("lit", "''", start))
            elif i + 2 < n and text[i + 2] == "'":
                i += 3
                toks.append(Tok("lit", "''", start))
            else:  # a lifetime or a loop label: 'a, 'static, 'outer
                m = _ID_CHARS.match(text, i + 1)
                i = m.end()
                toks.append(Tok("lt", text[start:i], start))
            continue
        if c.isdigit():
            m = _NUM.match(text, i)
            j = m.end()
            # a float's fraction (1.5, 1.5e3) but not a range (1..2) or a method (1.max)
            if j + 1 < n and text[j] == "." and text[j + 1].isdigit():
                j = _NUM.match(text, j + 1).end()
            toks.append(Tok("lit", "0", i))
            i = j
            continue
        if _ID_START.match(c) or (c == "$" and i + 1 < n and _ID_START.match(text[i + 1])):
            start = i
            m = _ID_CHARS.match(text, i + 1)
            j = m.end()
            word = text[start:j]
            # raw strings: r"..", r#".."#, br"..", cr#".."#
            if word in ("r", "br", "cr") and j < n and text[j] in '"#':
                k = j
                while k < n and text[k] == "#":
                    k += 1
                if k < n and text[k] == '"':
                    hashes = k - j
                    end = text.find('"' + "#" * hashes, k + 1)
                    i = n if end < 0 else end + 1 + hashes
                    toks.append(Tok("lit", '""', start))
                    continue
                if word == "r" and k == j + 1 and k < n and _ID_START.match(text[k]):
                    m = _ID_CHARS.match(text, k + 1)  # raw identifier r#name
                    toks.append(Tok("id", text[k:m.end()], start))
                    i = m.end()
                    continue
            if word in ("b", "c") and j < n and text[j] == '"':
                i = _skip_string(text, j + 1)
                toks.append(Tok("lit", '""', start))
                continue
            if word == "b" and j < n and text[j] == "'":
                k = j + 1
                if k < n and text[k] == "\\":
                    k += 2
                    while k < n and text[k] != "'":
                        k += 1
                else:
                    k += 1
                i = k + 1
                toks.append(Tok("lit", "''", start))
                continue
            toks.append(Tok("id", word, start))
            i = j
            continue
        two = text[i:i + 2]
        if two in _MULTI_PUNCT:
            toks.append(Tok("p", two, i))
            i += 2
            continue
        toks.append(Tok("p", c, i))
        i += 1
    return toks


def _skip_string(text: str, i: int) -> int:
    """Index just past the closing quote of a "..." literal whose body starts at i."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        else:
            i += 1
    return n


def match_brackets(toks: list[Tok]) -> dict[int, int]:
    """Map each opening (, [ and { to its closing partner (and back)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    closers = {")": "(", "]": "[", "}": "{"}
    for i, t in enumerate(toks):
        if t.kind != "p":
            continue
        if t.text in "([{":
            stack.append(i)
        elif t.text in closers:
            # tolerate unbalanced input: unwind to the matching opener if there is one
            while stack and toks[stack[-1]].text != closers[t.text]:
                stack.pop()
            if stack:
                j = stack.pop()
                pairs[j] = i
                pairs[i] = j
    return pairs


# --------------------------------------------------------------------------- per file

@dataclass
class Ref:
    src: str          # file-level node of the referring file
    dst: str          # file-level node referred to
    path: str         # the resolved path, "crate::engine::Core"
    file: str
    line: int
    kind: str         # "use" or "path"
    test: bool


@dataclass
class FnInfo:
    file: str
    line: int
    name: str
    length: int
    test: bool


@dataclass
class FileInfo:
    rel: str
    node: str
    lines: int
    fns: list[FnInfo] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    lock_fns: list[FnInfo] = field(default_factory=list)
    patterns: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    test_children: list[str] = field(default_factory=list)
    whole_file_test: bool = False


PATTERNS = [
    ".lock().unwrap()",
    ".read().unwrap()",
    ".write().unwrap()",
    ".lock().expect(",
    ".read().expect(",
    ".write().expect(",
    "unwrap_or_else(|e| e.into_inner())",
    "PoisonError::into_inner",
]

_ITEM_KEYWORDS = {
    "fn", "mod", "impl", "struct", "enum", "union", "trait", "use", "const", "static", "type",
    "pub", "async", "unsafe", "extern", "let", "macro_rules",
}


class Crate:
    """The set of file modules under SRC_DIR and how paths map onto them."""

    def __init__(self, src: Path):
        self.src = src
        self.files = sorted(p for p in src.rglob("*.rs") if p.is_file())
        self.crate_name = _crate_name(src)
        self.node_of: dict[str, str] = {}
        self.modules: set[tuple[str, ...]] = set()
        for p in self.files:
            rel = p.relative_to(src).as_posix()
            node = file_node(rel)
            self.node_of[rel] = node
            if not is_bin_root(rel):
                self.modules.add(() if node == "lib" else tuple(node.split("/")))

    def module_path(self, rel: str) -> tuple[str, ...]:
        node = self.node_of[rel]
        return () if node in ("lib",) or is_bin_root(rel) else tuple(node.split("/"))

    def node_for(self, segs: tuple[str, ...]) -> str:
        for k in range(len(segs), 0, -1):
            if segs[:k] in self.modules:
                return "/".join(segs[:k])
        return "lib"

    def is_module(self, segs: tuple[str, ...]) -> bool:
        return segs in self.modules and segs != ()


def _crate_name(src: Path) -> str | None:
    manifest = src.parent / "Cargo.toml"
    try:
        text = manifest.read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r'^\[package\][^\[]*?^\s*name\s*=\s*"([^"]+)"', text, re.M | re.S)
    return m.group(1).replace("-", "_") if m else None


def file_node(rel: str) -> str:
    if rel.endswith("/mod.rs"):
        return rel[: -len("/mod.rs")]
    return rel[: -len(".rs")]


def is_bin_root(rel: str) -> bool:
    return rel == "main.rs" or rel.startswith("bin/")


def top_of(node: str) -> str:
    return node.split("/")[0]


def analyse_file(crate: Crate, path: Path) -> FileInfo:
    rel = path.relative_to(crate.src).as_posix()
    text = path.read_text(encoding="utf-8", errors="replace")
    info = FileInfo(rel=rel, node=crate.node_of[rel], lines=len(text.splitlines()))
    toks = tokenize(text)
    pairs = match_brackets(toks)
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(i: int) -> int:
        return bisect.bisect_right(newlines, toks[i].pos - 1) + 1 if i < len(toks) else len(newlines) + 1

    ntok = len(toks)

    def is_p(i: int, s: str) -> bool:
        return 0 <= i < ntok and toks[i].kind == "p" and toks[i].text == s

    def is_id(i: int, s: str | None = None) -> bool:
        return 0 <= i < ntok and toks[i].kind == "id" and (s is None or toks[i].text == s)

    # ---- test regions: items under #[cfg(test)] / #[test] / #[tokio::test]
    in_test = [False] * ntok
    i = 0
    while i < ntok:
        if is_p(i, "#") and (is_p(i + 1, "[") or (is_p(i + 1, "!") and is_p(i + 2, "["))):
            inner = is_p(i + 1, "!")
            open_ = i + 2 if inner else i + 1
            close = pairs.get(open_)
            if close is None:
                i += 1
                continue
            body = [t.text for t in toks[open_ + 1:close]]
            test_attr = body == ["cfg", "(", "test", ")"] or (
                body and (body[0] == "test" or (len(body) >= 3 and body[1] == "::" and body[2] == "test"))
                and (len(body) == 1 or body[1] in ("(", "::"))
            )
            if test_attr and inner:
                if all(not (t.kind == "p" and t.text == "{") for t in toks[:i]):
                    info.whole_file_test = True
                    for k in range(ntok):
                        in_test[k] = True
            elif test_attr:
                end = _item_end(toks, pairs, close + 1, is_p, is_id)
                for k in range(i, min(end + 1, ntok)):
                    in_test[k] = True
                # #[cfg(test)] mod name;  -> a whole test-only child file
                j = close + 1
                while is_id(j, "pub") or is_p(j, "("):
                    j = pairs.get(j, j) + 1 if is_p(j, "(") else j + 1
                if is_id(j, "mod") and is_id(j + 1) and is_p(j + 2, ";"):
                    info.test_children.append(toks[j + 1].text)
            i = close + 1
            continue
        i += 1

    cur_file_mod = crate.module_path(rel)
    bin_root = is_bin_root(rel)
    children = set()
    if not bin_root:
        children = {m[-1] for m in crate.modules if len(m) == len(cur_file_mod) + 1 and m[:-1] == cur_file_mod}

    # ---- scopes: inline modules (for super::) and impl/trait blocks (for method names)
    mod_stack: list[tuple[str, int]] = []   # (name, closing brace index)
    owner_stack: list[tuple[str, int]] = []
    mod_at: list[tuple[str, ...]] = [()] * ntok
    owner_at: list[str | None] = [None] * ntok
    for i in range(ntok):
        while mod_stack and mod_stack[-1][1] < i:
            mod_stack.pop()
        while owner_stack and owner_stack[-1][1] < i:
            owner_stack.pop()
        mod_at[i] = tuple(name for name, _ in mod_stack)
        owner_at[i] = owner_stack[-1][0] if owner_stack else None
        t = toks[i]
        if t.kind != "id":
            continue
        if t.text == "mod" and is_id(i + 1) and is_p(i + 2, "{") and (i + 2) in pairs:
            mod_stack.append((toks[i + 1].text, pairs[i + 2]))
        elif t.text in ("impl", "trait") and _starts_item(toks, i):
            j = i + 1
            while j < ntok and not (is_p(j, "{") or is_p(j, ";")):
                if is_p(j, "(") or is_p(j, "["):
                    j = pairs.get(j, j)
                j += 1
            if is_p(j, "{") and j in pairs:
                name = _impl_name(toks[i + 1:j]) if t.text == "impl" else (
                    toks[i + 1].text if is_id(i + 1) else None)
                owner_stack.append((name or "?", pairs[j]))

    # ---- use trees
    in_use = [False] * ntok
    use_entries: list[tuple[list[str], str | None, bool, int]] = []  # segs, alias, glob, tok index
    i = 0
    while i < ntok:
        if is_id(i, "use") and not is_p(i + 1, "<") and not is_p(i - 1, "::"):
            entries: list[tuple[list[str], str | None, bool, int]] = []
            j = _parse_use_tree(toks, pairs, i + 1, [], entries)
            while j < ntok and not is_p(j, ";"):
                j += 1
            for k in range(i, min(j + 1, ntok)):
                in_use[k] = True
            use_entries.extend(entries)
            i = j + 1
            continue
        i += 1

    def resolve(segs: list[str], at: int) -> tuple[str, ...] | None:
        """Library-absolute segments for a path written at token `at`; None when the
        path is outside the library (std, other crates, main.rs's own `crate::`)."""
        if not segs:
            return None
        first, rest = segs[0], list(segs[1:])
        here = cur_file_mod + mod_at[at]
        if first in ("crate", "$crate"):
            if bin_root:
                return None  # the binary's own crate: not the library
            base: tuple[str, ...] = ()
        elif crate.crate_name and first == crate.crate_name and bin_root:
            base = ()
        elif first == "super" and not bin_root:
            base = here[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif first == "self" and not bin_root:
            base = here
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif first in aliases:
            base = aliases[first]
        elif first in children and not mod_at[at]:
            base, rest = cur_file_mod, list(segs)
        else:
            return None
        return tuple(base) + tuple(s for s in rest if s != "self")

    def add_ref(abs_segs: tuple[str, ...], at: int, kind: str) -> None:
        dst = crate.node_for(abs_segs)
        info.refs.append(Ref(
            src=info.node, dst=dst, path="::".join(("crate",) + abs_segs), file=rel,
            line=line_of(at), kind=kind, test=in_test[at],
        ))

    # first the module names brought in by `use` (so that later paths can go through them);
    # repeated while new names appear, for `use crate::media; use media::fallback;` chains
    aliases: dict[str, tuple[str, ...]] = {}
    module_uses: list[tuple[str, tuple[str, ...], int]] = []
    item_uses: list[tuple[tuple[str, ...], int]] = []
    pending = list(use_entries)
    while True:
        unresolved = []
        for segs, alias, glob, at in pending:
            r = resolve(segs, at)
            if r is None:
                unresolved.append((segs, alias, glob, at))
                continue
            abs_segs = r
            name = alias or (segs[-2] if segs[-1] == "self" and len(segs) > 1 else segs[-1])
            if not glob and crate.is_module(abs_segs) and name not in ("crate", "super", "self", "_"):
                aliases[name] = abs_segs
                module_uses.append((name, abs_segs, at))
            else:
                item_uses.append((abs_segs, at))
        if len(unresolved) == len(pending):
            break
        pending = unresolved
    for abs_segs, at in item_uses:
        add_ref(abs_segs, at, "use")

    # ---- inline paths, fns, lock patterns
    used_aliases: set[str] = set()
    for i in range(ntok):
        t = toks[i]
        if t.kind != "id":
            continue
        # crate::a::b, super::x, self::x, alias::x, child::x written in code
        if not in_use[i] and is_p(i + 1, "::") and not is_p(i - 1, "::") and not is_p(i - 1, "."):
            if is_id(i - 1, "in") and is_p(i - 2, "("):
                pass  # pub(in crate::x): a visibility, not a dependency
            elif (t.text in ("crate", "$crate", "super", "self") or t.text in aliases
                  or (crate.crate_name and t.text == crate.crate_name and bin_root)
                  or (t.text in children and not mod_at[i])):
                segs = [t.text]
                j = i + 1
                while is_p(j, "::") and is_id(j + 1):
                    segs.append(toks[j + 1].text)
                    j += 2
                r = resolve(segs, i)
                if r is not None:
                    if t.text in aliases:
                        used_aliases.add(t.text)
                    add_ref(r, i, "path")
        if t.text == "fn" and is_id(i + 1):
            j = i + 2
            while j < ntok and not (is_p(j, "{") or is_p(j, ";")):
                if is_p(j, "(") or is_p(j, "["):
                    j = pairs.get(j, j)
                j += 1
            if is_p(j, "{") and j in pairs:
                name = toks[i + 1].text
                owner = owner_at[i]
                test = in_test[i] or _has_test_attr(toks, pairs, i)
                f = FnInfo(rel, line_of(i), f"{owner}::{name}" if owner else name,
                           line_of(pairs[j]) - line_of(i) + 1, test)
                info.fns.append(f)
                if name == "lock":
                    info.lock_fns.append(f)
        if t.text in ("lock", "read", "write") and is_p(i - 1, ".") and is_p(i + 1, "(") and is_p(i + 2, ")") \
                and is_p(i + 3, "."):
            if is_id(i + 4, "unwrap") and is_p(i + 5, "(") and is_p(i + 6, ")"):
                info.patterns[f".{t.text}().unwrap()"].append(in_test[i])
            elif is_id(i + 4, "expect") and is_p(i + 5, "("):
                info.patterns[f".{t.text}().expect("].append(in_test[i])
        if t.text == "unwrap_or_else" and is_p(i + 1, "(") and is_p(i + 2, "|") and is_id(i + 3) \
                and is_p(i + 4, "|") and is_id(i + 5, toks[i + 3].text) and is_p(i + 6, ".") \
                and is_id(i + 7, "into_inner") and is_p(i + 8, "(") and is_p(i + 9, ")"):
            info.patterns["unwrap_or_else(|e| e.into_inner())"].append(in_test[i])
        if t.text == "PoisonError" and is_p(i + 1, "::") and is_id(i + 2, "into_inner"):
            info.patterns["PoisonError::into_inner"].append(in_test[i])

    # a module imported by name but never reached through: the import itself is the reference
    for name, abs_segs, at in module_uses:
        if name not in used_aliases:
            add_ref(abs_segs, at, "use")
    return info


def _starts_item(toks: list[Tok], i: int) -> bool:
    """Whether the `impl`/`trait` at i begins an item (not `impl Trait` in a type)."""
    j = i - 1
    while j >= 0 and toks[j].kind == "id" and toks[j].text in ("unsafe", "default", "pub", "auto"):
        j -= 1
    if j >= 0 and toks[j].kind == "p" and toks[j].text == ")":
        # pub(crate) impl? not valid Rust, but pub(crate) trait is
        k = j
        while k >= 0 and not (toks[k].kind == "p" and toks[k].text == "("):
            k -= 1
        j = k - 2 if k >= 1 and toks[k - 1].text == "pub" else k - 1
    return j < 0 or (toks[j].kind == "p" and toks[j].text in ("}", ";", "{", "]"))


def _impl_name(sig: list[Tok]) -> str | None:
    """`impl<T> Trait for Foo<T> where ..` -> "Foo"; `impl Foo` -> "Foo"."""
    k = 0
    if sig and sig[0].text == "<":
        depth = 0
        while k < len(sig):
            if sig[k].text == "<":
                depth += 1
            elif sig[k].text == ">":
                depth -= 1
                if depth == 0:
                    k += 1
                    break
            k += 1
    rest = sig[k:]
    depth = 0
    for idx, t in enumerate(rest):
        if t.text == "<":
            depth += 1
        elif t.text == ">":
            depth -= 1
        elif t.text == "for" and depth == 0:
            rest = rest[idx + 1:]
            break
        elif t.text == "where" and depth == 0:
            rest = rest[:idx]
            break
    name = None
    for t in rest:
        if t.kind == "id" and t.text not in ("dyn", "mut", "const", "where", "unsafe"):
            name = t.text
        elif t.text in ("<", "where", "{"):
            if name:
                break
        elif t.text not in ("::", "&", "!", "*") and t.kind != "lt":
            if name:
                break
    return name


def _has_test_attr(toks: list[Tok], pairs: dict[int, int], i: int) -> bool:
    """Whether the fn at i carries #[test] / #[tokio::test] (looking back over its qualifiers)."""
    j = i - 1
    while j >= 0:
        t = toks[j]
        if t.kind == "id" and t.text in ("pub", "async", "const", "unsafe", "extern", "crate", "in", "self", "super"):
            j -= 1
        elif t.kind == "lit" or (t.kind == "p" and t.text in ("(", ")", "::")):
            j -= 1
        elif t.kind == "p" and t.text == "]" and j in pairs:
            open_ = pairs[j]
            body = [x.text for x in toks[open_ + 1:j]]
            if body and (body[0] == "test" or (len(body) >= 3 and body[1] == "::" and body[2] == "test")):
                return True
            j = open_ - 2 if open_ >= 1 and toks[open_ - 1].text == "#" else open_ - 1
        else:
            return False
    return False


def _item_end(toks, pairs, start, is_p, is_id) -> int:
    """Index of the last token of the item (or statement) beginning at `start`."""
    n = len(toks)
    j = start
    while is_p(j, "#") and is_p(j + 1, "[") and (j + 1) in pairs:
        j = pairs[j + 1] + 1
    keyword = j < n and toks[j].kind == "id" and toks[j].text in _ITEM_KEYWORDS
    k = j
    while is_id(k, "pub") or (is_p(k, "(") and k in pairs and is_id(k - 1, "pub")):
        k = pairs[k] + 1 if is_p(k, "(") else k + 1
    is_use = is_id(k, "use")
    while j < n:
        t = toks[j]
        if t.kind == "p":
            if t.text == ";":
                return j
            if t.text == "{" and not is_use:
                return pairs.get(j, n - 1)
            if t.text in "([{" and j in pairs:
                j = pairs[j] + 1
                continue
            if t.text in ")]}":
                return j - 1
            if t.text == "," and not keyword:
                return j
        j += 1
    return n - 1


def _parse_use_tree(toks, pairs, i, prefix, out) -> int:
    """Parse one use tree at i, appending (segments, alias, is_glob, token index); return the next index."""
    n = len(toks)
    segs: list[str] = []
    start = i
    if i < n and toks[i].kind == "p" and toks[i].text == "::":
        segs.append("")  # ::name (an extern crate)
        i += 1
    while i < n:
        t = toks[i]
        if t.kind == "id" and t.text != "as":
            segs.append(t.text)
            i += 1
            if i < n and toks[i].kind == "p" and toks[i].text == "::":
                i += 1
                continue
            break
        if t.kind == "p" and t.text == "*":
            out.append((prefix + segs, None, True, start))
            return i + 1
        if t.kind == "p" and t.text == "{":
            close = pairs.get(i, n)
            j = i + 1
            while j < close:
                j = _parse_use_tree(toks, pairs, j, prefix + segs, out)
                while j < close and not (toks[j].kind == "p" and toks[j].text == ","):
                    j += 1
                j += 1
            return close + 1
        break
    alias = None
    if i + 1 < n and toks[i].kind == "id" and toks[i].text == "as":
        alias = toks[i + 1].text
        i += 2
    full = prefix + segs
    if full and full[0] != "":
        out.append((full, alias, False, start))
    return i


# --------------------------------------------------------------------------- graphs

def strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components with more than one node, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out, key=lambda c: (-len(c), c))


def edge_table(refs: list[Ref], key) -> dict[tuple[str, str], list[Ref]]:
    table: dict[tuple[str, str], list[Ref]] = defaultdict(list)
    for r in refs:
        a, b = key(r.src), key(r.dst)
        if a != b:
            table[(a, b)].append(r)
    for v in table.values():
        v.sort(key=lambda r: (r.file, r.line, r.path))
    return table


def cycles(table: dict[tuple[str, str], list[Ref]], nodes: list[str]) -> list[dict]:
    adj: dict[str, set[str]] = defaultdict(set)
    for a, b in table:
        adj[a].add(b)
    out = []
    for comp in strongly_connected(nodes, adj):
        members = set(comp)
        edges = []
        for (a, b), rs in sorted(table.items()):
            if a in members and b in members:
                first = rs[0]
                edges.append({
                    "from": a, "to": b, "refs": len(rs),
                    "first": f"{first.file}:{first.line}", "example": first.path,
                    "test_only": all(r.test for r in rs),
                })
        out.append({"members": comp, "edges": edges})
    return out


# --------------------------------------------------------------------------- figures

def figures(src: Path, file_limit: int, fn_limit: int, no_tests: bool) -> dict:
    crate = Crate(src)
    infos = [analyse_file(crate, p) for p in crate.files]

    # files declared as `#[cfg(test)] mod x;` are test code throughout
    test_files = set()
    for info in infos:
        base = crate.module_path(info.rel)
        for child in info.test_children:
            node = "/".join(base + (child,))
            test_files.update(i.rel for i in infos if i.node == node or i.node.startswith(node + "/"))
    for info in infos:
        if info.rel in test_files or info.whole_file_test:
            for f in info.fns:
                f.test = True
            for r in info.refs:
                r.test = True
            for k in info.patterns:
                info.patterns[k] = [True] * len(info.patterns[k])

    keep = (lambda test: not test) if no_tests else (lambda test: True)

    long_files = sorted(
        ({"path": i.rel, "lines": i.lines} for i in infos if i.lines > file_limit),
        key=lambda d: (-d["lines"], d["path"]),
    )
    long_fns = sorted(
        ({"path": f.file, "line": f.line, "name": f.name, "length": f.length, "test": f.test}
         for i in infos for f in i.fns if f.length > fn_limit and keep(f.test)),
        key=lambda d: (-d["length"], d["path"], d["line"]),
    )

    refs = [r for i in infos for r in i.refs if keep(r.test)]
    file_nodes = sorted({i.node for i in infos})
    top_nodes = sorted({top_of(n) for n in file_nodes})
    top_table = edge_table(refs, top_of)
    file_table = edge_table(refs, lambda n: n)
    mutual = sorted(
        {tuple(sorted((a, b))) for (a, b) in top_table if (b, a) in top_table}
    )

    def target_top(r: Ref) -> str:
        # the first segment after crate:: (also when no file backs it, e.g. an item in lib.rs)
        segs = r.path.split("::")
        return segs[1] if len(segs) > 1 else "lib"

    upward = []
    for r in refs:
        if top_of(r.src) != MEDIA or target_top(r) == MEDIA or target_top(r) in MEDIA_ALLOWED:
            continue
        upward.append(r)
    grouped: dict[tuple[str, str], list[Ref]] = defaultdict(list)
    for r in upward:
        grouped[(r.file, r.path)].append(r)
    upward_rows = []
    for (file, path), rs in grouped.items():
        rs.sort(key=lambda r: r.line)
        upward_rows.append({
            "file": file, "line": rs[0].line, "path": path, "module": rs[0].dst,
            "refs": len(rs), "kind": "use" if any(r.kind == "use" for r in rs) else "path",
            "test_only": all(r.test for r in rs),
            "flagged": target_top(rs[0]) in MEDIA_FLAGGED,
        })
    upward_rows.sort(key=lambda d: (d["file"], d["line"], d["path"]))

    lock_fns = sorted(
        ({"path": f.file, "line": f.line, "name": f.name, "test": f.test}
         for i in infos for f in i.lock_fns if keep(f.test)),
        key=lambda d: (d["path"], d["line"]),
    )
    pattern_totals = {p: 0 for p in PATTERNS}
    pattern_files: dict[str, dict[str, int]] = {}
    for info in infos:
        for p in PATTERNS:
            n = sum(1 for test in info.patterns.get(p, []) if keep(test))
            if n:
                pattern_totals[p] += n
                pattern_files.setdefault(info.rel, {})[p] = n

    return {
        "src": str(src),
        "files": len(infos),
        "lines": sum(i.lines for i in infos),
        "tests_excluded": no_tests,
        "long_files": {"limit": file_limit, "count": len(long_files), "items": long_files},
        "long_functions": {"limit": fn_limit, "count": len(long_fns), "items": long_fns},
        "circles": {
            "top_level": {
                "nodes": len(top_nodes), "edges": len(top_table),
                "cycles": cycles(top_table, top_nodes),
                "mutual_pairs": [list(p) for p in mutual],
            },
            "file_level": {
                "nodes": len(file_nodes), "edges": len(file_table),
                "cycles": cycles(file_table, file_nodes),
            },
        },
        "upward_imports": {
            "allowed": sorted(MEDIA_ALLOWED),
            "count": len(upward_rows),
            "items": upward_rows,
            "flagged": [r for r in upward_rows if r["flagged"]],
        },
        "locks": {
            "fn_lock_count": len(lock_fns),
            "fn_lock": lock_fns,
            "patterns": pattern_totals,
            "patterns_total": sum(pattern_totals.values()),
            "per_file": {k: pattern_files[k] for k in sorted(pattern_files)},
        },
    }


def print_text(fig: dict) -> None:
    out = []
    w = out.append
    tests = " (test code left out)" if fig["tests_excluded"] else ""
    w(f"house figures for {fig['src']}: {fig['files']} files, {fig['lines']} lines of Rust{tests}")
    w("")
    lf = fig["long_files"]
    w(f"1. Files over {lf['limit']} lines: {lf['count']}")
    for d in lf["items"]:
        w(f"   {d['lines']:6d}  {d['path']}")
    w("")
    fn = fig["long_functions"]
    n_test = sum(1 for d in fn["items"] if d["test"])
    w(f"2. Functions over {fn['limit']} lines: {fn['count']} ({n_test} of them test code)")
    for d in fn["items"]:
        where = f"{d['path']}:{d['line']}"
        w(f"   {d['length']:6d}  {where:<34} {d['name']}{'  [test]' if d['test'] else ''}")
    w("")
    c = fig["circles"]
    w("3. Module circles")
    for label, key in (("(a) top-level modules", "top_level"), ("(b) file-level modules", "file_level")):
        g = c[key]
        w(f"   {label}: {g['nodes']} nodes, {g['edges']} edges, "
          f"{len(g['cycles'])} circle(s) (strongly connected, more than one module)")
        for k, cyc in enumerate(g["cycles"], 1):
            w(f"     circle {k}, {len(cyc['members'])} modules: {', '.join(cyc['members'])}")
            for e in cyc["edges"]:
                note = "  [test only]" if e["test_only"] else ""
                w(f"         {e['from']} -> {e['to']}  ({e['refs']} ref{'s' if e['refs'] != 1 else ''}, "
                  f"first {e['first']} {e['example']}){note}")
        if key == "top_level":
            pairs = c["top_level"]["mutual_pairs"]
            w(f"     mutual pairs (a uses b and b uses a): {len(pairs)}")
            for a, b in pairs:
                w(f"         {a} <-> {b}")
    w("")
    up = fig["upward_imports"]
    w(f"4. Upward imports from media/ (outside media, other than {', '.join(up['allowed'])}): {up['count']}")
    for d in up["items"]:
        flag = "  !!" if d["flagged"] else ""
        note = "  [test only]" if d["test_only"] else ""
        refs = f" x{d['refs']}" if d["refs"] > 1 else ""
        w(f"   {d['file']}:{d['line']}  {d['path']} ({d['kind']}{refs}){note}{flag}")
    w(f"   of media/ reaching wasm, policy or http: {len(up['flagged'])}")
    for d in up["flagged"]:
        w(f"   !! {d['file']}:{d['line']}  {d['path']}")
    w("")
    lk = fig["locks"]
    w(f"5. Lock helpers: `fn lock` definitions: {lk['fn_lock_count']}")
    for d in lk["fn_lock"]:
        w(f"   {d['path']}:{d['line']}  {d['name']}{'  [test]' if d['test'] else ''}")
    w(f"   inline lock/poison handling: {lk['patterns_total']}  (any closure name counts for |e| e.into_inner())")
    for p, n in lk["patterns"].items():
        w(f"   {n:6d}  {p}")
    if lk["per_file"]:
        w("   by file:")
        for f, counts in lk["per_file"].items():
            parts = ", ".join(f"{p} {n}" for p, n in counts.items())
            w(f"     {f}: {parts}")
    w("")
    w(f"6. Totals: {fig['files']} files, {fig['lines']} lines of Rust under {fig['src']}")
    print("\n".join(out))


def main(argv: list[str]) -> int:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", help="crate source directory (default: <repo>/core/src)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--no-tests", action="store_true", help="leave #[cfg(test)] / #[test] code out")
    ap.add_argument("--file-lines", type=int, default=FILE_LINES, help=f"long-file limit (default {FILE_LINES})")
    ap.add_argument("--fn-lines", type=int, default=FN_LINES, help=f"long-function limit (default {FN_LINES})")
    args = ap.parse_args(argv)
    src = Path(args.src) if args.src else repo / "core" / "src"
    if not src.is_dir():
        print(f"house-figures: {src} is not a directory", file=sys.stderr)
        return 2
    fig = figures(src, args.file_lines, args.fn_lines, args.no_tests)
    if args.src is None:
        fig["src"] = src.relative_to(repo).as_posix()
    if args.json:
        json.dump(fig, sys.stdout, indent=2)
        print()
    else:
        print_text(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
