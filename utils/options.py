"""Command-line parsing shared by the entry scripts: one-line errors, range-checked option
types, and which options a command line actually gave (so that --resume can tell an option
the user typed from a default)."""
import argparse
import math
import sys

from utils.errors import UserError

# Seeds go to numpy's and torch's generators, both of which take 0 .. 2^32 - 1 from every API.
MAX_SEED = 2 ** 32 - 1


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error instead of the usage block, and `given` set on the parsed
    namespace: the destinations of the options that the command line named."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

    def parse_known_args(self, args=None, namespace=None):
        parsed, extra = super().parse_known_args(args, namespace)
        if namespace is None:  # a second pass over a namespace of markers: what is still a marker was not given
            dests = {a.dest for a in self._actions if a.dest != "help"}
            markers = argparse.Namespace(**{dest: _NOT_GIVEN for dest in dests})
            with _quiet_required(self):
                seen, _ = super().parse_known_args(args, markers)
            parsed.given = sorted(dest for dest in dests if getattr(seen, dest) is not _NOT_GIVEN)
        return parsed, extra


_NOT_GIVEN = object()


class _quiet_required:
    """Required options are checked by the first pass; the second may see them absent."""

    def __init__(self, parser):
        self.actions = [a for a in parser._actions if a.required]

    def __enter__(self):
        for a in self.actions:
            a.required = False

    def __exit__(self, *exc):
        for a in self.actions:
            a.required = True


def given(args):
    """The options a parsed command line named (Parser sets them; none for a bare Namespace)."""
    return getattr(args, "given", [])


def public(args):
    """vars(args) without the parser's bookkeeping, as run records store the arguments."""
    return {k: v for k, v in vars(args).items() if k != "given"}


def _number(kind, test, wording):
    """An argparse type: `kind` (int or float) that passes `test`, else an error quoting `wording`."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if (kind is float and not math.isfinite(value)) or not test(value):
            raise argparse.ArgumentTypeError(f"must be {wording}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_float = _number(float, lambda v: v > 0, "> 0")
nonnegative_float = _number(float, lambda v: v >= 0, ">= 0")
momentum = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")
unit_interval = _number(float, lambda v: 0 <= v <= 1, "in [0, 1]")
fraction = _number(float, lambda v: 0 < v <= 1, "in (0, 1]")
open_fraction = _number(float, lambda v: 0 < v < 1, "in (0, 1)")
rate = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")
nonnegative_int = _number(int, lambda v: v >= 0, ">= 0")
positive_int = _number(int, lambda v: v >= 1, ">= 1")
seed = _number(int, lambda v: 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}")


def numbers(text, what, kind=float, count=None, unique=False, minimum=None):
    """'4,2,1' -> [4.0, 2.0, 1.0]: comma-separated numbers, checked; a UserError naming `what`."""
    try:
        values = [kind(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        raise UserError(f"{what} must be comma-separated {noun}, got {text!r}")
    if not values:
        raise UserError(f"{what} is empty")
    if count is not None and len(values) != count:
        raise UserError(f"{what} needs {count} values, got {len(values)} in {text!r}")
    if kind is float and not all(math.isfinite(v) for v in values):
        raise UserError(f"{what} must be finite numbers, got {text!r}")
    if minimum is not None and min(values) < minimum:
        raise UserError(f"{what} must be at least {minimum:g}, got {text!r}")
    if unique and len(set(values)) != len(values):
        raise UserError(f"{what} names a value twice in {text!r}; give each once")
    return values


def same_value(typed, saved):
    """Whether an option's value as typed (argparse's) is the value a run saved (resolved:
    '4,8' was saved as [4, 8], '1e-3' as 0.001)."""
    if isinstance(saved, (list, tuple)):
        try:
            return [float(t) for t in str(typed).split(",") if t.strip()] == [float(v) for v in saved]
        except (TypeError, ValueError):
            return False
    if isinstance(saved, (int, float)) and not isinstance(saved, bool) and isinstance(typed, (int, float, str)):
        try:
            return float(typed) == float(saved)
        except ValueError:
            return False
    return typed == saved


def check_resumed(args, saved, allowed, flag):
    """Options given with --resume must be the run's own: one line naming those that differ.
    allowed: options that may change on a resume (device, workers); flag: destination ->
    the option as typed, for the message."""
    differ = [k for k in given(args) if k not in allowed and k in saved and not same_value(getattr(args, k), saved[k])]
    unknown = [k for k in given(args) if k not in allowed and k not in saved]
    if differ or unknown:
        shown = ", ".join([f"{flag(k)} {getattr(args, k)} (the run's: {saved[k]})" for k in differ] +
                          [f"{flag(k)} (not a setting of that run)" for k in unknown])
        raise UserError(f"--resume continues a run with its own arguments, but this command gives {shown}; "
                        "drop them, or start a new run with them")
