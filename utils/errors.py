"""Errors a user can fix: entry scripts print them as one line and exit non-zero."""
import sys


class UserError(Exception):
    """Bad input (missing or corrupt data, wrong format, impossible option): the message
    names the problem and the fix, and no traceback is shown."""


def run(main, *args):
    """Call an entry point's main; a UserError becomes one line on stderr and exit status 2."""
    try:
        return main(*args)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)


def one_line(error):
    """The message of a UserError, also when a DataLoader worker raised it: the loader
    re-raises it with the worker's traceback in front, the message on its last line."""
    last = str(error).strip().splitlines()[-1]
    prefix = f"{UserError.__module__}.{UserError.__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last
