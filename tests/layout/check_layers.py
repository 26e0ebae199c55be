#!/usr/bin/env python3
"""The tree is the architecture: checks what the build alone cannot.

    check_layers.py SOURCE_DIR

1. Layers: a file of src/chat/<layer>/ includes only its own layer, the layers below it, and the
   protocol libraries its layer may use (core -> ops -> session -> front ends / history / cluster
   -> server). The link check in CMakeLists.txt keeps the core's library from linking a backend;
   this keeps its headers from naming one.
2. The core knows no wire protocol: no code line of src/chat/core/ (comments aside) names IRC,
   JSON, HTTP, WebSocket, SQLite or Redis, or includes their libraries.
3. No source file under src/ is over 800 lines.
Prints every violation and exits 1 if there is any.
"""
import pathlib
import re
import sys

# What each layer may include besides itself: chat layers (src/chat/...) and other libraries of src/.
ALLOWED = {
    "core": {"reactor"},
    "ops": {"reactor", "chat/core"},
    "session": {"reactor", "chat/core", "chat/ops"},
    # frontends/frontend.h: the record every front end registers (the server loops over them).
    "frontends": {"reactor", "chat/core", "chat/ops", "chat/session"},
    # The native codec also speaks over WebSocket: it writes its frames with http/websocket.h.
    "frontends/tcp": {"reactor", "chat/core", "chat/ops", "chat/session", "chat/frontends", "http"},
    # WebSocket carries native JSON lines, and IRC's sessions are TCP sessions: both stand on tcp/.
    "frontends/web": {"reactor", "chat/core", "chat/ops", "chat/session", "chat/frontends", "chat/frontends/tcp",
                      "http"},
    "frontends/irc": {"reactor", "chat/core", "chat/ops", "chat/session", "chat/frontends", "chat/frontends/tcp",
                      "irc"},
    "history": {"reactor", "chat/core", "chat/ops"},
    "cluster": {"reactor", "chat/core", "chat/ops", "redis"},
    "server": {"reactor", "chat/core", "chat/ops", "chat/session", "chat/frontends", "chat/frontends/tcp", "chat/frontends/web",
               "chat/frontends/irc", "chat/history", "chat/cluster", "http", "irc", "redis"},
}
# System headers of the backends the core must not use.
BACKEND_HEADERS = re.compile(r"#include <(sqlite3|hiredis/|openssl/|wslay/|llhttp|nlohmann/)")
PROTOCOL_WORDS = re.compile(r"\b(irc|json|http|websocket|sqlite|redis|privmsg|nick)\w*", re.IGNORECASE)
MAX_LINES = 800


def layer_of(path: pathlib.Path, chat: pathlib.Path) -> str:
    rel = path.relative_to(chat).parts
    if rel[0] == "frontends":
        return "frontends" if len(rel) == 2 else "/".join(rel[:2])
    return rel[0]


def included_layer(name: str) -> str:
    parts = name.split("/")
    if parts[0] == "chat":
        if parts[1] == "frontends":
            return "chat/frontends" if len(parts) == 3 else "/".join(parts[:3])
        return "/".join(parts[:2])
    return parts[0]


def code_of(line: str) -> str:
    """The line without its // comment and string literals' contents kept (strings count as code)."""
    out, in_string = [], False
    i = 0
    while i < len(line):
        c = line[i]
        if in_string:
            if c == "\\":
                out.append(line[i:i + 2])
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif line.startswith("//", i):
            break
        out.append(c)
        i += 1
    return "".join(out)


def main() -> int:
    root = pathlib.Path(sys.argv[1])
    chat = root / "src" / "chat"
    problems = []
    for path in sorted(chat.rglob("*")):
        if path.suffix not in (".h", ".cpp") or path.name == "CMakeLists.txt":
            continue
        layer = layer_of(path, chat)
        if layer not in ALLOWED:
            problems.append(f"{path.relative_to(root)}: in no known layer ({layer})")
            continue
        allowed = ALLOWED[layer] | {"chat/" + layer}
        in_block_comment = False
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = re.match(r'#include "([^"]+)"', line)
            if m and included_layer(m.group(1)) not in allowed:
                problems.append(f"{path.relative_to(root)}:{n}: {layer} includes {m.group(1)}")
            if layer != "core":
                continue
            if BACKEND_HEADERS.match(line):
                problems.append(f"{path.relative_to(root)}:{n}: the core includes a backend: {line.strip()}")
            stripped = line.strip()
            if in_block_comment:
                in_block_comment = "*/" not in stripped
                continue
            if stripped.startswith("/*"):
                in_block_comment = "*/" not in stripped
                continue
            word = PROTOCOL_WORDS.search(code_of(line))
            if word and not line.startswith("#include"):
                problems.append(f"{path.relative_to(root)}:{n}: the core names a protocol ({word.group(0)}): {stripped}")
    for path in sorted((root / "src").rglob("*")):
        if path.suffix in (".h", ".cpp", ".c"):
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                problems.append(f"{path.relative_to(root)}: {lines} lines (at most {MAX_LINES})")
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)" if problems else "layers, the core's independence and file sizes: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
