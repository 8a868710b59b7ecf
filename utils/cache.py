"""The cache of derived files (decoded arrays, converted weights, unpacked archives): where it
is, and keys that change whenever the source does."""
import hashlib
import os
import shutil
import sys
import tarfile
import zipfile

from utils.errors import UserError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def default_cache_dir():
    """$HASHING_CACHE, else cache/ at the repository root (git-ignored)."""
    return os.environ.get("HASHING_CACHE") or os.path.join(os.path.dirname(os.path.dirname(__file__)), "cache")


def fingerprint(path):
    """Changes whenever the source changes: sizes and mtimes of every file under it. The same
    source named two ways (relative, absolute, through ..) has one fingerprint."""
    path = os.path.abspath(path)
    h = hashlib.sha1(path.encode())
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(top, f) for top, _, names in os.walk(path) for f in names)
    for f in files:
        st = os.stat(f)
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def unpacked(path, cache_dir=None):
    """`path` itself when it is a folder; a .tar(.gz) or .zip unpacked once into the cache (a
    killed unpacking leaves no folder behind: it is renamed into place when complete)."""
    if os.path.isdir(path):
        return path
    if not os.path.isfile(path) or not path.endswith(ARCHIVE_SUFFIXES):
        raise UserError(f"{path} is not a folder or a .tar/.tar.gz/.zip archive; check the path")
    name = os.path.basename(path)
    for suffix in ARCHIVE_SUFFIXES:
        name = name.removesuffix(suffix)
    folder = os.path.join(cache_dir or default_cache_dir(), f"{name}-{fingerprint(path)}")
    if os.path.isdir(folder):
        return folder
    tmp = f"{folder}.{os.getpid()}.tmp"
    print(f"unpacking {path} into {folder} (once)", file=sys.stderr)
    try:
        if path.endswith(".zip"):  # zipfile drops absolute and '..' parts of member names
            with zipfile.ZipFile(path) as z:
                z.extractall(tmp)
        else:
            with tarfile.open(path, "r:*") as tar:
                tar.extractall(tmp, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{path}: not a readable archive ({e}); copy it again or unpack it yourself")
    try:
        os.replace(tmp, folder)
    except OSError:
        if not os.path.isdir(folder):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process unpacked it first: the same files
    return folder
