"""The manifest of a volume: every entry with its type, and the comparison of two manifests.

Independent of how bytes travel: the same shell script (POSIX sh, busybox or GNU find/stat/sha256sum,
getfattr when there is one) lists a volume wherever it is mounted (a helper container on the VPS, a helper
pod on a PVC), `scan` lists a local directory, and `compare` says what differs. An entry is a regular
file (size, sha256), a directory, a symlink (its target, never followed), or a special file (fifo,
socket, device); each has mode, uid and gid; regular files sharing an inode form a hard-link group;
extended attributes are digested when the side could read them.
"""

from __future__ import annotations

import hashlib
import os
import stat as st
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from migrator.errors import PermanentError

TMP_SUFFIX = ".migrator-part"

KINDS = {"regular file": "file", "regular empty file": "file", "directory": "dir", "symbolic link": "symlink",
         "fifo": "fifo", "socket": "socket", "character special file": "char", "block special file": "block"}
SPECIAL = {"fifo", "socket", "char", "block"}


def script(root: str) -> str:
    """A sh script printing the manifest of `root` (sections: entries, symlink targets, sha256, xattrs)."""
    return (f"cd {root} && find . -exec stat -c '%F|%a|%u|%g|%s|%i|%h|%n' {{}} + && echo --links-- && "
            "find . -type l -exec sh -c 'for f; do printf \"%s\\n%s\\n\" \"$f\" \"$(readlink \"$f\")\"; done' sh {} + "
            "&& echo --sums-- && find . -type f -exec sha256sum {} + && "
            "if command -v getfattr >/dev/null 2>&1; then echo --xattrs--; "
            "getfattr -R -h -d -m - -e hex . 2>/dev/null; fi; true")


@dataclass(frozen=True)
class Entry:
    path: str  # relative, "." for the root
    kind: str  # file, dir, symlink, fifo, socket, char, block
    mode: int  # permission bits (07777)
    uid: int
    gid: int
    size: int = 0  # regular files
    sha256: str | None = None  # regular files
    link: str | None = None  # symlinks: the target, as stored
    inode: int = 0  # side-local: for hard-link groups
    nlink: int = 1


@dataclass
class Manifest:
    entries: dict[str, Entry] = field(default_factory=dict)
    xattrs_read: bool = False  # False: this side could not read extended attributes
    xattrs: dict[str, dict[str, bytes]] = field(default_factory=dict)  # path -> {name: value}

    def files(self) -> dict[str, Entry]:
        return {p: e for p, e in self.entries.items() if e.kind == "file"}

    def specials(self) -> list[Entry]:
        return sorted((e for e in self.entries.values() if e.kind in SPECIAL), key=lambda e: e.path)

    def hardlink_groups(self) -> list[list[str]]:
        """Regular files sharing an inode, each group sorted (its first path is the one transferred)."""
        by: dict[int, list[str]] = {}
        for e in self.entries.values():
            if e.kind == "file" and e.nlink > 1:
                by.setdefault(e.inode, []).append(e.path)
        return sorted(sorted(g) for g in by.values() if len(g) > 1)

    def xattr_digest(self, path: str) -> str | None:
        if not self.xattrs_read:
            return None
        items = sorted(self.xattrs.get(path, {}).items())
        return hashlib.sha256(b"\n".join(k.encode() + b"=" + v.hex().encode() for k, v in items)).hexdigest()[:16]


def safe(name: str) -> str:
    """A manifest/tar path as a clean relative path; refuses anything that could leave the target."""
    p = PurePosixPath(name)
    parts = [x for x in p.parts if x not in (".", "")]
    if p.is_absolute() or ".." in parts:
        raise PermanentError(f"unsafe path in the volume: {name!r}")
    return "/".join(parts) or "."


def parse(text: str) -> Manifest:
    """The script's output -> a Manifest."""
    m = Manifest()
    section = "entries"
    links: list[str] = []
    xattr_file: str | None = None
    for line in text.split("\n"):
        if line in ("--links--", "--sums--", "--xattrs--"):
            section = line.strip("-")
            m.xattrs_read = m.xattrs_read or section == "xattrs"
            continue
        if section == "links":
            links.append(line)
            continue
        if not line:
            continue
        if section == "entries":
            kind, mode, uid, gid, size, inode, nlink, name = line.split("|", 7)
            if kind not in KINDS:
                raise PermanentError(f"volume entry {name!r} of an unknown type {kind!r}, or a name with a newline")
            path = safe(name)
            m.entries[path] = Entry(path, KINDS[kind], int(mode, 8), int(uid), int(gid),
                                    int(size) if KINDS[kind] == "file" else 0, inode=int(inode), nlink=int(nlink))
        elif section == "sums":
            digest, _, name = line.partition("  ")
            if digest.startswith("\\"):
                raise PermanentError(f"file name with a newline or backslash in the volume: {name!r}; rename it")
            path = safe(name)
            m.entries[path] = _with(m.entries[path], sha256=digest)
        elif line.startswith("# file: "):
            xattr_file = safe(line[len("# file: "):])
        elif xattr_file is not None and "=" in line:
            key, _, value = line.partition("=")
            raw = bytes.fromhex(value[2:]) if value.startswith("0x") else value.strip('"').encode()
            m.xattrs.setdefault(xattr_file, {})[key] = raw
    # Symlink targets come as pairs of lines (name, target); a newline in either breaks the pairing.
    if len(links) % 2:
        raise PermanentError("a symlink in the volume has a newline in its name or target; rename it")
    for name, target in zip(links[0::2], links[1::2], strict=True):
        path = safe(name)
        if path not in m.entries or m.entries[path].kind != "symlink":
            raise PermanentError(f"symlink {name!r} listed but not found among the entries (a newline in a name?)")
        m.entries[path] = _with(m.entries[path], link=target)
    missing = [p for p, e in m.entries.items() if (e.kind == "file" and e.sha256 is None)
               or (e.kind == "symlink" and e.link is None)]
    if missing:
        raise PermanentError(f"the manifest is incomplete for {missing[0]!r} (changed while listing? a newline in a "
                             "name?): run again once writers are stopped")
    return m


def _with(e: Entry, **changes: object) -> Entry:
    from dataclasses import replace

    return replace(e, **changes)  # type: ignore[arg-type]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _kind(mode: int) -> str:
    for test, kind in ((st.S_ISREG, "file"), (st.S_ISDIR, "dir"), (st.S_ISLNK, "symlink"), (st.S_ISFIFO, "fifo"),
                       (st.S_ISSOCK, "socket"), (st.S_ISCHR, "char"), (st.S_ISBLK, "block")):
        if test(mode):
            return kind
    return "unknown"


def _xattrs(path: Path) -> dict[str, bytes] | None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}
    except OSError:
        return None


def scan(root: Path, digests: bool = True) -> Manifest:
    """The manifest of a local directory (the copy's target), in the same shape as the script's.
    Leftover partial files of an interrupted copy are not entries."""
    m = Manifest(xattrs_read=True)
    for here, dirs, files in os.walk(root, followlinks=False):
        for name in sorted([*dirs, *files]) + ([""] if Path(here) == root else []):
            p = Path(here) / name if name else root
            if name.endswith(TMP_SUFFIX):
                continue
            s = p.lstat()
            rel = "." if p == root else p.relative_to(root).as_posix()
            kind = _kind(s.st_mode)
            m.entries[rel] = Entry(rel, kind, st.S_IMODE(s.st_mode), s.st_uid, s.st_gid,
                                   s.st_size if kind == "file" else 0,
                                   sha256_of(p) if kind == "file" and digests else None,
                                   os.readlink(p) if kind == "symlink" else None, s.st_ino, s.st_nlink)
            x = _xattrs(p)
            if x is None:
                m.xattrs_read = False
            elif x:
                m.xattrs[rel] = x
    return m


def compare(src: Manifest, dst: Manifest, skip: set[str] | None = None, owners: bool = True) -> list[str]:
    """What differs between the volume (src) and its copy (dst), one line each (empty: identical).
    `skip`: paths left out on purpose (special files the runbook names). Symlinks' own modes are not
    compared (Linux ignores them); owners only when `owners`."""
    skip = skip or set()
    out: list[str] = []
    for path in sorted(set(src.entries) | set(dst.entries)):
        if path in skip:
            continue
        a, b = src.entries.get(path), dst.entries.get(path)
        if a is None:
            out.append(f"{path}: not in the volume ({b.kind if b else '?'} on the target)")
            continue
        if b is None:
            out.append(f"{path}: {a.kind} missing on the target" + (f" (-> {a.link})" if a.link is not None else ""))
            continue
        if a.kind != b.kind:
            out.append(f"{path}: {a.kind} in the volume, {b.kind} on the target")
            continue
        if a.kind == "file" and (a.size, a.sha256) != (b.size, b.sha256):
            out.append(f"{path}: contents differ")
        if a.kind == "symlink" and a.link != b.link:
            out.append(f"{path}: symlink to {a.link!r} in the volume, to {b.link!r} on the target")
        if a.kind != "symlink" and a.mode != b.mode:
            out.append(f"{path}: mode {a.mode:04o} in the volume, {b.mode:04o} on the target")
        if owners and (a.uid, a.gid) != (b.uid, b.gid):
            out.append(f"{path}: owner {a.uid}:{a.gid} in the volume, {b.uid}:{b.gid} on the target")
        xa, xb = src.xattr_digest(path), dst.xattr_digest(path)
        if xa is not None and xb is not None and xa != xb:
            out.append(f"{path}: extended attributes differ")
    groups_a = {tuple(g) for g in src.hardlink_groups() if not set(g) & skip}
    groups_b = {tuple(g) for g in dst.hardlink_groups()}
    for g in sorted(groups_a - groups_b):
        out.append(f"hard links {', '.join(g)}: not one file on the target")
    for g in sorted(groups_b - groups_a):
        out.append(f"hard links {', '.join(g)}: one file on the target, not in the volume")
    return out
