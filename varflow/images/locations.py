"""Where a run's images live: a local folder, or a prefix of a bucket (an fsspec URL: ``s3://``).

The pipeline names every source and output by a string: a local path as before, or a URL. What
differs between the two is here, behind one small interface (``Folder``): list, say why an entry
must not be read, identify content, fetch a copy to work on, store a finished file, probe.
``LocalFolder`` is the local file system's (its rules are varflow/images/inputs.py's);
``ObjectFolder`` a bucket's, through fsspec (``s3fs`` for S3: the ``[s3]`` extra), imported only
when a bucket is used, so ``import varflow`` stays light.

Credentials and the endpoint come only from the provider's standard configuration (for S3: the
AWS variables and profiles, ``AWS_ENDPOINT_URL``), read by the process that touches the bucket:
a URL holding one (``s3://key:secret@bucket``) or a query is refused, and a folder travels to a
Dask worker without its file-system object (the worker builds its own from its environment).

Keys are hostile input like file names: a key with an empty, ``.`` or ``..`` segment or a
control character (a newline) is listed (recorded as an error), never read and never used to
name an output.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

from varflow.errors import ConfigurationError
from varflow.images.imageio import sha256_file
from varflow.images.inputs import input_problem

# The schemes a run may name, tested against a real S3 API (moto's server); the package each needs.
SCHEMES = {"s3": "s3fs"}
EXTRA = {"s3": "s3"}  # pyproject.toml's extra that installs it
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_HASH_CHUNK = 1 << 20


def is_url(text: object) -> bool:
    """Whether ``text`` names a folder by URL (``s3://bucket/prefix``, ``file:///...``)."""
    return isinstance(text, str) and bool(_URL.match(text))


def url_problem(field_name: str, value: str) -> str | None:
    """Why ``value`` cannot name a folder, in one line that never repeats it (it may hold a
    secret); None for a local path or a usable URL."""
    if not is_url(value):
        return None
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in value:
        return (f"{field_name}: the {scheme}:// URL carries a user, password or query, and a run's parameters are "
                "recorded; give scheme://bucket/prefix only and keep credentials in the provider's standard "
                "configuration (for S3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile, AWS_ENDPOINT_URL)")
    if scheme == "file":
        return None
    if scheme not in SCHEMES:
        return (f"{field_name}: {scheme}:// folders are not supported; use a local folder, file:// or "
                f"{', '.join(s + '://' for s in SCHEMES)}")
    if not parts.netloc:
        return f"{field_name}: the {scheme}:// URL names no bucket; give {scheme}://bucket/prefix"
    prefix = parts.path.strip("/")
    if prefix and key_problem(prefix):
        return f"{field_name}: the prefix of the {scheme}:// URL {key_problem(prefix)}"
    return None


def key_problem(key: str) -> str | None:
    """Why an object key cannot be read or name an output (module docstring), or None."""
    if _CONTROL.search(key):
        return "holds a control character (a newline, say)"
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        return "has an empty, '.' or '..' segment"
    return None


def shown(text: str) -> str:
    """A key as one line (a newline shown as \\n), for messages and records."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def bucket_root(url: str) -> str:
    """``scheme://bucket`` of a URL (what an allowlist names)."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc}"


def address(text: str | Path) -> str | Path:
    """A folder as the run names it: a normalized URL (``s3://bucket/prefix``), or a resolved
    local path (``file://`` URLs are local paths). Raises ConfigurationError for a URL that
    cannot be used (``url_problem``)."""
    if not is_url(text):
        return Path(text).expanduser().resolve()
    problem = url_problem("folder", str(text))
    if problem:
        raise ConfigurationError(problem)
    parts = urlsplit(str(text).strip())
    if parts.scheme.lower() == "file":
        return Path(parts.path).expanduser().resolve()
    prefix = parts.path.strip("/")
    return f"{parts.scheme.lower()}://{parts.netloc}" + (f"/{prefix}" if prefix else "")


def join(folder: str | Path, rel: str) -> str:
    """The address of ``rel`` (a POSIX relative path) below ``folder``."""
    if is_url(folder):
        return f"{str(folder).rstrip('/')}/{rel}"
    return str(Path(folder) / rel)


def relative(path: str | Path, folder: str | Path) -> PurePosixPath:
    """``path`` relative to ``folder`` (a single file named as the input: its name)."""
    if is_url(folder):
        base = str(folder).rstrip("/") + "/"
        text = str(path)
        return PurePosixPath(text[len(base):] if text.startswith(base) else text.rsplit("/", 1)[-1])
    path, folder = Path(path), Path(folder)
    return PurePosixPath((path.relative_to(folder) if path != folder else Path(path.name)).as_posix())


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (URLs by prefix)."""
    path, folder = str(path).rstrip("/"), str(folder).rstrip("/")
    return path == folder or path.startswith(folder + "/")


class Folder(Protocol):
    """What the scan and the pipeline need of an input or output folder."""

    remote: bool

    def problem(self, path, *, follow_links: bool = False) -> str | None:
        """Why ``path`` (listed below this folder) must not be read, as its recorded line; None if readable."""

    def content_id(self, path) -> str:
        """SHA-256 of ``path``'s bytes (raises OSError when it cannot be read)."""

    def fetch(self, path, dest: Path) -> Path:
        """A local file with ``path``'s bytes (the path itself for a local folder)."""

    def put(self, src: Path, path: str) -> str:
        """Move the local file ``src`` to ``path`` (a whole object or file at once); its address."""


class LocalFolder:
    """A folder of the local file system (or a shared mount): the rules of varflow/images/inputs.py."""

    remote = False

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def problem(self, path, *, follow_links: bool = False) -> str | None:
        return input_problem(path, self.root, follow_links=follow_links)

    def content_id(self, path) -> str:
        return sha256_file(path)

    def fetch(self, path, dest: Path) -> Path:
        return Path(path)

    def put(self, src: Path, path: str) -> str:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dest)
        return str(dest)


@dataclass
class ObjectFolder:
    """A bucket prefix through fsspec (``url``: ``scheme://bucket/prefix``, normalized by ``address``).

    ``ids_dir``: where the SHA-256 of each object is kept by (URL, ETag, size), so an unchanged
    object is identified on the next run from its listing alone (the flow's data directory)."""

    url: str
    ids_dir: Path | None = None
    remote = True
    _fs: object = field(default=None, repr=False, compare=False)
    _info: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self):  # to a worker: no file-system object (it opens its own, from its environment)
        return {"url": self.url, "ids_dir": self.ids_dir, "_fs": None, "_info": {}}

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def fs(self):
        if self._fs is None:
            self._fs = filesystem(self.scheme)
        return self._fs

    def _key(self, url: str) -> str:
        return url.split("://", 1)[1]

    def list_images(self, extensions, exclude=()) -> list[str]:
        """Objects below the prefix with one of ``extensions``, in the order a local walk lists a
        folder (a folder's files, then its sub-folders, each sorted); hidden names (a leading dot)
        and ``exclude`` prefixes left out, keys with a problem kept (the scan records them)."""
        try:
            found = self.fs.find(self._key(self.url), detail=True)
        except OSError as exc:
            raise FileNotFoundError(f"input folder {self.url} cannot be listed ({type(exc).__name__}: "
                                    f"{exc}); check the bucket's name and this machine's credentials") from None
        out = []
        for name, info in found.items():
            if info.get("type") == "directory":
                continue
            url = f"{self.scheme}://{name}"
            rel = relative(url, self.url).as_posix()
            hidden = any(s.startswith(".") and s not in (".", "..") for s in rel.split("/"))
            if hidden or any(inside(url, x) for x in exclude):
                continue
            if os.path.splitext(rel)[1].lower() not in extensions:
                continue
            self._info[url] = (info.get("size"), info.get("ETag") or info.get("etag"))
            out.append(url)
        return sorted(out, key=lambda u: _walk_order(relative(u, self.url).as_posix()))

    def problem(self, path, *, follow_links: bool = False) -> str | None:
        problem = key_problem(relative(path, self.url).as_posix())
        return f"{shown(str(path))}: its key {problem}; not read: rename the object" if problem else None

    def content_id(self, path) -> str:
        size, etag = self._info.get(str(path), (None, None))
        kept = self.ids_dir / _id_name(str(path), etag, size) if self.ids_dir is not None and etag else None
        if kept is not None and kept.is_file():
            text = kept.read_text().strip()
            if re.fullmatch(r"[0-9a-f]{64}", text):
                return text
        h = hashlib.sha256()
        with self.fs.open(self._key(str(path)), "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        if kept is not None:
            try:
                kept.parent.mkdir(parents=True, exist_ok=True)
                tmp = kept.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(digest)
                os.replace(tmp, kept)
            except OSError:
                pass  # a full disk costs the saving, not the run
        return digest

    def fetch(self, path, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get_file(self._key(str(path)), str(dest))
        return dest

    def put(self, src: Path, path: str) -> str:
        self.fs.put_file(str(src), self._key(path))  # one PUT: readers never see half an object
        Path(src).unlink(missing_ok=True)
        return path

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._key(path)))

    def probe(self) -> None:
        """Write and remove a probe object below the prefix (raises OSError when it cannot)."""
        probe = self._key(join(self.url, f".varflow-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"))
        self.fs.pipe_file(probe, b"varflow")
        self.fs.rm_file(probe)


def _walk_order(rel: str) -> list[tuple[int, str]]:
    """os.walk's order: a folder's files (0) before its sub-folders (1), each sorted."""
    *dirs, name = rel.split("/")
    return [(1, d) for d in dirs] + [(0, name)]


def _id_name(url: str, etag: str, size) -> str:
    key = hashlib.sha256(f"{url}\0{etag}\0{size}".encode()).hexdigest()
    return f"{key[:2]}/{key}"


def filesystem(scheme: str):
    """The fsspec file system of ``scheme``, configured from the provider's standard settings only."""
    package = SCHEMES.get(scheme)
    try:
        import fsspec

        return fsspec.filesystem(scheme)
    except ImportError:
        raise ConfigurationError(f"{scheme}:// folders need the {package} package: "
                                 f"pip install 'varflow[{EXTRA.get(scheme, scheme)}]'") from None


def folder_at(where: str | Path, ids_dir: Path | None = None) -> LocalFolder | ObjectFolder:
    """The ``Folder`` for an address (``address``'s result)."""
    return ObjectFolder(str(where), ids_dir) if is_url(where) else LocalFolder(where)


def exists(path: str | Path | None) -> bool:
    """Whether a file or object is at ``path`` (False for one that cannot be asked about)."""
    if not path:
        return False
    if not is_url(path):
        return Path(path).is_file()
    try:
        return ObjectFolder(bucket_root(str(path))).exists(str(path))
    except (OSError, ConfigurationError):
        return False


@contextmanager
def local_copy(path: str | Path) -> Iterator[Path]:
    """A local file with ``path``'s bytes while the block runs (an object is fetched to a
    temporary file named by its suffix only: a key never names a local file)."""
    if not is_url(path):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="varflow-object-") as tmp:
        suffix = PurePosixPath(str(path)).suffix
        suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,6}", suffix) else ""
        yield ObjectFolder(bucket_root(str(path))).fetch(str(path), Path(tmp) / f"object{suffix}")
