"""Atomic file writes: a run killed mid-write leaves the previous file, never half of one."""
import os


def atomic_write(path, write, mode="wb"):
    """Call write(f) on a temporary file beside `path`, then rename it over `path`."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, mode) as f:
        write(f)
    os.replace(tmp, path)
