"""Errors a user can fix, and Ctrl-C: entry scripts print either as one line and exit non-zero."""
import contextlib
import os
import signal
import sys
import time

# Exit status of a run stopped by Ctrl-C: 128 + SIGINT, as a shell reports it.
INTERRUPTED = 130
# How long a run whose loader worker died waits for a stop signal on its way before it calls the
# death a failure: a signal to the process group reaches the workers and the run at once, but
# the loader can notice a dead worker before the run's own handler has run.
STOP_GRACE_SECONDS = 1.0


class UserError(Exception):
    """Bad input (missing or corrupt data, wrong format, impossible option): the message
    names the problem and the fix, and no traceback is shown."""


class Progress:
    """Where a run is, for the line Ctrl-C prints: `where` says how far it got and `resume`
    is the command that continues it (None while there is nothing to continue)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.where, self.resume = "before training started", None
        self.stopping = False  # a stop signal came (see _stop)

    def update(self, where=None, resume=None):
        self.where = where or self.where
        self.resume = resume or self.resume
        if self.stopping:  # its KeyboardInterrupt was lost: stop here, the next place a loop reports
            raise KeyboardInterrupt

    def interrupted(self):
        then = f"continue with: {self.resume}" if self.resume else "nothing to resume yet"
        return f"interrupted {self.where}; {then}"


PROGRESS = Progress()


def _stop(signum, frame):
    """SIGTERM and SIGINT: Ctrl-C's KeyboardInterrupt, and a mark that outlives it. A signal that
    comes while C code runs a Python callback (numba compiling the metrics calls back into
    Python) raises there, and ctypes prints the exception and carries on; the mark makes the
    loop's next PROGRESS.update stop the run all the same."""
    PROGRESS.stopping = True
    raise KeyboardInterrupt


def run(main, *args):
    """Call an entry point's main; a UserError becomes one line on stderr and exit status 2,
    Ctrl-C one line saying where the run stopped and how to continue it, exit status 130.
    SIGTERM (a scheduler's time limit, `timeout`, `docker stop`) takes Ctrl-C's path, and so
    does a loader worker that it ended, or whose death a stop signal follows within
    STOP_GRACE_SECONDS; a worker that died otherwise is one line, exit 1."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return main(*args)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        stopped()
    except RuntimeError as e:
        if stopped_loader(e):
            stopped()
        if "DataLoader worker" not in str(e):
            raise
        if stop_on_its_way():
            stopped()
        # a worker killed otherwise (SIGKILL: most often the kernel's out-of-memory killer)
        then = f"; continue with: {PROGRESS.resume}" if PROGRESS.resume else ""
        print(f"error: {one_line(e).rstrip('. ')}, {PROGRESS.where}: the machine may be out of memory; "
              f"use fewer --workers{then}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # the reader of stdout stopped (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def stop_on_its_way():
    """Whether a stop signal came, or comes within STOP_GRACE_SECONDS."""
    if not PROGRESS.stopping:
        with contextlib.suppress(KeyboardInterrupt):  # _stop marks the stop as it raises
            time.sleep(STOP_GRACE_SECONDS)
    return PROGRESS.stopping


def stopped():
    print(f"\n{PROGRESS.interrupted()}", file=sys.stderr)
    sys.exit(INTERRUPTED)


def stopped_loader(error):
    """A DataLoader's error that says the run was being stopped, not that it failed: a signal
    to the whole process group (`timeout`, a scheduler, torchrun ending its processes) ends
    the loader's workers too, and the loader's check of its workers raises while the
    interrupt unwinds (the interrupt is then the error's context) or before it arrives (the
    workers were terminated or interrupted)."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        message = str(error)
        if "DataLoader worker" in message and ("signal: Terminated" in message or "signal: Interrupt" in message):
            return True
        error = error.__context__
    return False


def one_line(error):
    """The message of a UserError, also when a DataLoader worker raised it: the loader
    re-raises it with the worker's traceback in front, the message on its last line."""
    last = str(error).strip().splitlines()[-1]
    prefix = f"{UserError.__module__}.{UserError.__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last
