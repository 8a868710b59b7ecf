"""Atomic file writes: a run killed mid-write leaves the previous file, never half of one, and
a write that fails (a full disk, a folder that cannot be written) leaves the previous file
and no temporary beside it, and says so in one line."""
import contextlib
import errno
import io
import os
import re
import shutil

from utils.errors import UserError

# `<file>.<pid>.tmp`: the temporary of an atomic write (a SIGKILL can leave one behind)
TEMPORARY = re.compile(r"\.\d+\.tmp$")


def atomic_write(path, write, mode="wb"):
    """Call write(f) on an in-memory file, then move its bytes to `path` through a temporary
    file beside it and a rename. The bytes are made first so that a failed write can say how
    much space it needed."""
    buffer = io.BytesIO() if "b" in mode else io.StringIO()
    write(buffer)
    data = buffer.getvalue()
    data = data.encode("utf-8") if isinstance(data, str) else data
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # a full disk is reported here on file systems that allocate late
        os.replace(tmp, path)
    except BaseException as e:  # Ctrl-C included: the temporary goes either way
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise UserError(write_failure(path, e, len(data))) from None
        raise


def write_failure(path, error, size=None):
    """One line for an OSError raised while writing `path` (`size` bytes, when known)."""
    folder = os.path.dirname(os.path.abspath(path))
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(folder).free if os.path.isdir(folder) else 0
        need = f"needs {megabytes(size)}, {megabytes(free)} free" if size is not None else \
            f"{megabytes(free)} free"
        return (f"no space left in {folder}: writing {os.path.basename(path)} {need}; free some space there or "
                "write the run to another folder (the previous file is unchanged)")
    return (f"cannot write {path} ({error.strerror or type(error).__name__}); choose a folder you can write "
            "(the previous file is unchanged)")


def megabytes(n):
    return f"{n / 2 ** 20:.1f} MB" if n >= 2 ** 20 else f"{n / 2 ** 10:.1f} kB"


def remove_temporaries(folder):
    """Delete the temporaries that killed writes left in `folder` (not below it); returns their names.
    Only for a folder this process holds (utils.runs.RunFolder), where no other write is under way."""
    gone = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if TEMPORARY.search(name) and os.path.isfile(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
            gone.append(name)
    return gone
