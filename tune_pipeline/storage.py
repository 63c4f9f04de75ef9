"""Where an experiment lives: a local folder or a URI (s3://bucket/prefix,
gs://..., any filesystem pyarrow knows, the layer Ray itself writes through).

`location(text)` gives a `pathlib.Path` for a local folder and a `RemotePath`
for a URI.  `RemotePath` offers the few `Path` methods the experiment reader
uses (`/`, `name`, `exists`, `is_dir`, `glob`, `read_text`, ...), so the
reader is one piece of code for both.  S3 endpoints and credentials come the
standard way (AWS_* variables, AWS_ENDPOINT_URL for MinIO and other
S3-compatible servers), read by pyarrow as Ray does, not by us.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from tune_pipeline.errors import UserError


def is_uri(text: str | os.PathLike) -> bool:
    return "://" in str(text)


def nearest_existing(path: str | os.PathLike) -> Path:
    """The path itself if it exists, else its nearest existing ancestor (at
    worst the root): where a folder about to be made would go."""
    existing = Path(path)
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    return existing


def check_folder_path(path: str | os.PathLike, option: str, named: str | os.PathLike | None = None) -> Path:
    """Before any work: a folder that exists or can be made (nothing on its
    way is a file), `named` in the message (default: the folder itself).
    Returns the nearest existing folder."""
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise UserError(f"{option} {named or path}: {existing} is a file, not a folder")
    return existing


def location(text: str | os.PathLike) -> "Path | RemotePath":
    """A local path (made absolute) or a RemotePath for a URI."""
    if isinstance(text, RemotePath):
        return text
    if is_uri(text):
        return RemotePath.from_uri(str(text))
    return Path(text).expanduser().resolve()


def _filesystem(uri: str):
    """The filesystem Ray writes through for the same URI (pyarrow's
    `FileSystem.from_uri`), so we read exactly what it wrote."""
    import pyarrow.fs

    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    except (pyarrow.lib.ArrowInvalid, pyarrow.lib.ArrowNotImplementedError, OSError) as exc:
        raise UserError(f"{uri}: cannot open this storage ({str(exc).splitlines()[0]})") from None
    return fs, path.rstrip("/")


class RemotePath:
    """A path inside a pyarrow filesystem, written as its URI."""

    def __init__(self, fs, scheme: str, path: str):
        self.fs, self.scheme, self.path = fs, scheme, path.rstrip("/")

    @classmethod
    def from_uri(cls, uri: str) -> "RemotePath":
        fs, path = _filesystem(uri)
        return cls(fs, uri.split("://", 1)[0], path)

    # -- naming
    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __fspath__(self) -> str:  # only for code that formats paths; pyarrow opens them
        return str(self)

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: "RemotePath") -> bool:
        return str(self) < str(other)

    def __truediv__(self, part: str) -> "RemotePath":
        return RemotePath(self.fs, self.scheme, posixpath.join(self.path, str(part)))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> "RemotePath":
        return RemotePath(self.fs, self.scheme, posixpath.dirname(self.path))

    # -- queries
    def _unreachable(self, exc: OSError) -> UserError:
        # A missing object is an answer (NotFound), not an exception: an error
        # here is the storage itself (endpoint, credentials, bucket).
        return UserError(f"{self}: cannot reach this storage ({str(exc).splitlines()[0]}); check "
                         f"AWS_ENDPOINT_URL and the credentials")

    def _info(self):
        import pyarrow.fs
        try:
            info = self.fs.get_file_info(self.path)
        except OSError as exc:
            raise self._unreachable(exc) from None
        return info, pyarrow.fs.FileType

    def exists(self) -> bool:
        info, kinds = self._info()
        return info.type != kinds.NotFound

    def is_dir(self) -> bool:
        info, kinds = self._info()
        return info.type == kinds.Directory

    def is_file(self) -> bool:
        info, kinds = self._info()
        return info.type == kinds.File

    def stat(self):
        info, _ = self._info()
        mtime = info.mtime.timestamp() if info.mtime else datetime.now().timestamp()
        return SimpleNamespace(st_mtime=mtime, st_size=info.size or 0)

    def iterdir(self):
        import pyarrow.fs
        selector = pyarrow.fs.FileSelector(self.path, allow_not_found=True, recursive=False)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise self._unreachable(exc) from None
        for info in infos:
            yield RemotePath(self.fs, self.scheme, info.path)

    def glob(self, pattern: str):
        """`*`-patterns, one per path component (`trial_*/result.json`)."""
        parts = pattern.split("/")
        current = [self]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            found = []
            for folder in current:
                if not any(ch in part for ch in "*?["):
                    child = folder / part
                    if child.exists() and (last or child.is_dir()):
                        found.append(child)
                    continue
                for child in folder.iterdir():
                    if fnmatch.fnmatchcase(child.name, part):
                        found.append(child)
            current = found
        return iter(sorted(current))

    # -- reading and writing
    def open(self, mode: str = "rb"):
        """A binary stream, read a chunk at a time (Ray's state file)."""
        if mode != "rb":
            raise ValueError(f"RemotePath.open: only 'rb', not {mode!r}")
        return self.fs.open_input_stream(self.path)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def write_bytes(self, data: bytes) -> None:
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        if self.exists() and not exist_ok:
            raise FileExistsError(str(self))
        self.fs.create_dir(self.path, recursive=parents)

    def unlink(self, missing_ok: bool = False) -> None:
        if missing_ok and not self.exists():
            return
        self.fs.delete_file(self.path)


def cache_dir() -> Path:
    """Where our caches live (decoded datasets, the dashboard head we started)."""
    return Path(os.environ.get("TUNE_PIPELINE_CACHE", Path.home() / ".cache" / "tune_pipeline"))


def remove_tree(path) -> None:
    """Delete a folder and everything in it, local or remote; quietly, since it
    is cleaning up after a failure that is reported already."""
    import shutil

    if isinstance(path, RemotePath):
        try:
            path.fs.delete_dir(path.path)
        except OSError:
            pass
    else:
        shutil.rmtree(path, ignore_errors=True)


def local_output(experiment_path, default_name: str) -> Path:
    """Where plots and reports go by default: inside a local experiment, or in
    a folder named after a remote one under the working directory."""
    if isinstance(experiment_path, RemotePath):
        return Path.cwd() / experiment_path.name / default_name
    return Path(experiment_path) / default_name
