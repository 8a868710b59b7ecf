"""The README's sentence on training with your own images, from the JSON summary that
`python bench/own_images.py` writes, so that its figures are measured, never typed. Without
the summary the README's text between the markers stays as it is."""
import numbers
import os

from utils.errors import UserError
from utils.runs import read_json

SUMMARY = os.path.join("bench", "out", "own_images.json")  # relative to the README's folder
SECONDS = ("mah_training", "mmhh_training", "index_command")  # the ones the sentence shows


def summary_path(readme):
    return os.path.join(os.path.dirname(readme), SUMMARY)


def short(seconds):
    """Seconds as the sentence prints them: a tenth below 10 s, whole seconds above."""
    return f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"


def own_images_sentence(path):
    """One sentence from the summary at `path`: the images, the cores, the training seconds of
    the MAH script and train_mmhh.py from their results records, and the whole index command."""
    summary = read_json(path, "own-images summary", keys=("images", "cores", "seconds"))
    seconds = summary["seconds"] if isinstance(summary["seconds"], dict) else {}
    wanted = {"images": (summary["images"], int), "cores": (summary["cores"], int),
              **{f"seconds.{k}": (seconds.get(k), numbers.Real) for k in SECONDS}}
    for name, (value, kind) in wanted.items():
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"own-images summary {path} has no number {name}; write it again with python "
                            "bench/own_images.py")
    return (f"{summary['images']:,} CIFAR-10 JPEGs, {summary['cores']}-core CPU: training "
            f"{short(seconds['mah_training'])} s and {short(seconds['mmhh_training'])} s, indexing "
            f"{short(seconds['index_command'])} s with start-up (`bench/own_images.py`).")
