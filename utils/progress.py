"""Progress of a training loop: tqdm's bar on a terminal; where stderr is a file or a pipe
(nohup, a scheduler, `| tee`), where tqdm shows nothing, a plain line every INTERVAL seconds
saying where the loop is, its last logged loss and the time elapsed. A stderr held in memory
(a program, or a test, that runs the loop and captures its messages) gets neither."""
import sys
import time

from tqdm import tqdm

INTERVAL = 30.0  # seconds between plain lines; the first comes after one interval


class Bar:
    """A bar over `total` steps of `unit` (starting at `initial`), shown by the main process only."""

    def __init__(self, total, initial, desc, unit, main_process=True):
        self.bar = tqdm(total=total, initial=initial, desc=desc, disable=None if main_process else True,
                        file=sys.stderr)
        self.plain = main_process and self.bar.disable and _has_descriptor(sys.stderr)  # and no terminal
        self.done, self.total, self.desc, self.unit = initial, total, desc, unit
        self.loss = None
        self.start = self.last = time.monotonic()

    def update(self, steps=1):
        self.bar.update(steps)
        self.done += steps
        now = time.monotonic()
        if self.plain and now - self.last >= INTERVAL:
            self.last = now
            loss = "" if self.loss is None else f", loss {self.loss:.4f}"
            print(f"{self.desc}: {self.unit} {self.done} of {self.total}{loss}, {clock(now - self.start)} elapsed",
                  file=sys.stderr, flush=True)

    def set_loss(self, loss):
        self.loss = loss
        self.bar.set_postfix(loss=f"{loss:.4f}")

    def close(self):
        self.bar.close()


def _has_descriptor(stream):
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: a stream in memory
        return False
    return True


def clock(seconds):
    """1:02:03, or 2:03 under an hour."""
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"
