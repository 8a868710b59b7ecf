"""Your own images as a user first meets them: N CIFAR-10 JPEGs in 10 class folders, then the
three commands of the README's "Your own images", each its own process at --preset smoke:
the MAH script with --dataset folder, train_mmhh.py with --s_dataset folder, and
`python -m utils.index build` on the MAH run. Times each command whole (start-up included) and
reads each training's seconds from its results record; writes the JSON summary that
`make report` turns into the README's sentence, and prints the figures.

The commands run from the repository root as typed there, with photos/, runs/photos and
photos.index in a temporary folder, and so are train_mmhh.py's output folders (log/,
snapshot/, test_output/ of the repository by default) and the cache (HASHING_CACHE), which
starts empty as on a first run.

    python bench/own_images.py                                # bench/out/own_images.json, then make report
    python bench/own_images.py --images 100 --out /tmp/o.json  # a check that it runs; its times mean nothing
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from utils import runs  # noqa: E402

ARCHIVE = os.path.join(os.pardir, "shared", "data", "cifar10-jpeg.tar.gz")  # relative to the repository
CLASSES = 10
PER_CLASS = 6000  # test/ then train/ of the archive


def image_tree(archive, root, per_class):
    """`per_class` JPEGs of each class as root/<class>/<split>_<name>.jpg, the archive's first
    in its order (test/ before train/, class by class); stops reading once every class is full."""
    taken = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) != 3 or parts[0] not in ("test", "train") or not member.isfile():
                continue
            if taken.get(parts[1], 0) < per_class:
                os.makedirs(os.path.join(root, parts[1]), exist_ok=True)
                with open(os.path.join(root, parts[1], f"{parts[0]}_{parts[2]}"), "wb") as f:
                    f.write(tar.extractfile(member).read())
                taken[parts[1]] = taken.get(parts[1], 0) + 1
            if len(taken) == CLASSES and all(n == per_class for n in taken.values()):
                break
    if len(taken) != CLASSES or any(n != per_class for n in taken.values()):
        sys.exit(f"error: {archive} holds {taken} images per class, not {per_class} in each of {CLASSES} classes; "
                 "give --archive the CIFAR-10 JPEG archive")


def timed(argv, tmp, env):
    """Seconds `python argv` takes from the repository root; the command as typed (paths in `tmp`
    shown relative to it, as in the README)."""
    typed = " ".join(["python", *argv]).replace(tmp + os.sep, "")
    print(f"$ {typed}", flush=True)
    tic = time.perf_counter()
    out = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if out.returncode:
        sys.stderr.write(out.stderr[-3000:])
        sys.exit(f"error: {typed} failed (exit {out.returncode}); its stderr ends above")
    return typed, seconds


def training_seconds(pattern):
    """The seconds of the one results record `pattern` matches (the run's own count, start-up,
    data loading before training and the final test left out)."""
    found = glob.glob(pattern)
    if len(found) != 1:
        sys.exit(f"error: {len(found)} results records match {pattern}, not one")
    with open(found[0]) as f:
        return json.load(f)["seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000,
                   help=f"images, the same number in each of the {CLASSES} classes (default: 1000)")
    p.add_argument("--archive", default=os.path.join(REPO, ARCHIVE),
                   help=f"the CIFAR-10 JPEG archive (default: {ARCHIVE} beside the repository)")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "out", "own_images.json"),
                   help="the JSON summary (default: bench/out/own_images.json)")
    args = p.parse_args()
    if args.images % CLASSES or not 0 < args.images <= CLASSES * PER_CLASS:
        p.error(f"--images {args.images}: give a multiple of {CLASSES} from {CLASSES} to {CLASSES * PER_CLASS}")
    if not os.path.isfile(args.archive):
        sys.exit(f"error: {args.archive} is missing; give --archive the CIFAR-10 JPEG archive (cifar10-jpeg.tar.gz)")
    with tempfile.TemporaryDirectory(prefix="own-images-") as tmp:
        photos, run, log = (os.path.join(tmp, name) for name in ("photos", os.path.join("runs", "photos"), "log"))
        try:
            image_tree(args.archive, photos, args.images // CLASSES)
        except (tarfile.TarError, EOFError, OSError) as e:
            sys.exit(f"error: {args.archive} cannot be read as the CIFAR-10 JPEG archive ({type(e).__name__}); give "
                     "--archive cifar10-jpeg.tar.gz")
        env = dict(os.environ, HASHING_CACHE=os.path.join(tmp, "cache"))
        commands, seconds = {}, {}
        for name, argv in (
                ("mah", ["cascade_CIFAR-10.py", "--dataset", "folder", "--data-root", photos + os.sep, "--preset",
                         "smoke", "--gpu", "cpu", "--output-dir", run]),
                ("mmhh", ["train_mmhh.py", "--s_dataset", "folder", "--data_root", photos + os.sep, "--preset",
                          "smoke", "--gpu_id", "cpu", "--log_dir", log, "--snap_path", os.path.join(tmp, "snapshot"),
                          "--test_output_dir", os.path.join(tmp, "test_output")]),
                ("index", ["-m", "utils.index", "build", "--model", run, "--images", photos + os.sep, "--out",
                           os.path.join(tmp, "photos.index")])):
            commands[name], wall = timed(argv, tmp, env)
            seconds[f"{name}_command"] = round(wall, 1)
        seconds["mah_training"] = training_seconds(os.path.join(run, "results", "*.json"))
        seconds["mmhh_training"] = training_seconds(os.path.join(log, "*", "results", "*.json"))
    summary = {**runs.provenance(),
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "images": args.images, "classes": CLASSES,
               "preset": "smoke", "commands": commands, "seconds": seconds}
    runs.write_json(args.out, summary)
    print(f"{args.images} CIFAR-10 JPEGs in {CLASSES} folders, {summary['cores']} cores, torch {summary['torch']}")
    print(f"  MAH script:    {seconds['mah_command']:7.1f} s the command, {seconds['mah_training']:7.1f} s training")
    print(f"  train_mmhh.py: {seconds['mmhh_command']:7.1f} s the command, {seconds['mmhh_training']:7.1f} s training")
    print(f"  index build:   {seconds['index_command']:7.1f} s the command")
    print(f"summary: {args.out}")


if __name__ == "__main__":
    main()
