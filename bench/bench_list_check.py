"""What reading the header of every listed image costs when a list-file data set loads:
load_data of the real MIRFlickr-25K archive in ../shared/data (20,000 images, the published
split) with the header check and with it skipped, in turns, the same number of times; prints
the medians' ratio.

    python bench/bench_list_check.py --rounds 5
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.data import listfiles  # noqa: E402
from utils.data import loader as data  # noqa: E402

ARCHIVE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared",
                       "data", "mirflickr25k-20k.tar")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="loads per side (default: 5)")
    p.add_argument("--archive", default=ARCHIVE, help="the MIRFlickr-25K archive (default: ../shared/data's)")
    args = p.parse_args()
    checked = listfiles._readable

    def load(check):
        listfiles._readable = checked if check else (lambda listed: listed)
        tic = time.perf_counter()
        loaded = data.load_data("flickr25k", data_root=args.archive, missing="drop")
        return time.perf_counter() - tic, len(loaded.database.list.paths) + len(loaded.query.list.paths)

    _, images = load(True)  # unpacked into the cache, files in the page cache
    times = {True: [], False: []}
    for r in range(args.rounds):
        for check in ((True, False) if r % 2 == 0 else (False, True)):
            times[check].append(load(check)[0])
    a, b = statistics.median(times[True]), statistics.median(times[False])
    print(f"{images} images listed, {args.rounds} loads each: with the header check / without = {a / b:.2f} "
          f"(medians {a:.2f} s and {b:.2f} s)")


if __name__ == "__main__":
    main()
