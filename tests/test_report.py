"""utils.report: the README's results at a glance, the full tables of docs/results.md, figures,
bad results files, markers, reruns, the command line."""
import json
import os
import re
import subprocess
import sys
from argparse import Namespace

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from utils import records
from utils.report import benches, collect, figures, glance, grid, robustness, tables
from utils.report import main as report_main
from utils.errors import UserError, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAH_MARKERS = ("<!-- results-mah:start -->", "<!-- results-mah:end -->")
MMHH_MARKERS = ("<!-- results-mmhh:start -->", "<!-- results-mmhh:end -->")
GLANCE_MARKERS = ("<!-- results-glance:start -->", "<!-- results-glance:end -->")
DETAILS = (f"# Title\n\nText before.\n\n{MAH_MARKERS[0]}\nold MAH table\n{MAH_MARKERS[1]}\n\nText between.\n\n"
           f"{MMHH_MARKERS[0]}\nold MMHH table\n{MMHH_MARKERS[1]}\n\nText after.\n"
           "<!-- results-protocols:start -->\n<!-- results-protocols:end -->\n"
           "<!-- results-headline:start -->\n<!-- results-headline:end -->\n")
README = f"# Project\n\n{GLANCE_MARKERS[0]}\nold glance\n{GLANCE_MARKERS[1]}\n\nMore.\n"
CASCADE_4 = "python cascade_CIFAR-10.py --preset cpu-small --bits 4 --gpu cpu --data-root D"


# an MMHH record of the headline preset names its backbone as MMHH's network does
PRETRAINED = {"preset": "cpu-pretrained", "backbone": "MobileNetV2Fc"}
BACKBONES = {"cpu-small": "small", "smoke": "small", "paper": "resnet50"}  # a MAH record's, by preset


def mah(dataset, method, bits, map_, p5000, seconds, command=None, preset="cpu-small", ordered=True):
    """A MAH record: tie-aware MAP = map_ - 0.01, mAP@5000 = map_ + 0.02 (distinct, so that a
    swapped column shows); ordered=False is a record from before the seeded database order. The
    backbone is the preset's."""
    record = {"dataset": dataset, "method": method, "bits": bits, "aux_bits": [2 * bits, 4 * bits],
              "preset": preset, "backbone": BACKBONES.get(preset, "mobilenet_v2"), "seed": 0, "seconds": seconds,
              "device": "cpu",
              "metrics": {"map": map_, "map_tie_aware": map_ - 0.01, "map_at_5000": map_ + 0.02,
                          "precision_at_5000": p5000},
              "git_commit": "abc", "args": {}}
    if ordered:
        record["database_order"] = "seeded random"
    if command:
        record["command"] = command
    return record


def mmhh(method, bits, map_radius, map_topk, seconds):
    return {"paper": "MMHH", "dataset": "cifar10", "method": method, "bits": bits, "preset": "cpu-small",
            "backbone": "small", "seed": 0, "seconds": seconds, "device": "cpu", "git_commit": "abc",
            "command": f"python train_mmhh.py --loss {method.lower()} --bits {bits}", "args": {},
            "metrics": {"map_within_radius": map_radius, "precision_within_radius": 0.5,
                        "recall_within_radius": 0.3, "radius": 2, "map_topk": map_topk, "topk": -1,
                        "opt_test": False}}


def write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content if isinstance(content, str) else json.dumps(content))


@pytest.fixture
def tree(tmp_path):
    """A results folder of valid records, a README with the glance markers, a details page
    with both marker pairs, paths of the outputs."""
    res = tmp_path / "results"
    write(res / "a/cifar10_MAH-cascade_4bits.json", mah("cifar10", "MAH-cascade", 4, 0.3333, 0.3, 60.0, "old"))
    # the same cell again, later in sorted path order: this one wins
    write(res / "b/cifar10_MAH-cascade_4bits.json", mah("cifar10", "MAH-cascade", 4, 0.5243, 0.4088, 528.0,
                                                        CASCADE_4))
    write(res / "b/cifar10_MAH-cascade_12bits.json", mah("cifar10", "MAH-cascade", 12, 0.8621, 0.827, 546.0))
    write(res / "b/cifar10_MAH-flat_4bits.json", mah("cifar10", "MAH-flat", 4, 0.19, 0.1, 540.0,
                                                     "python flat_CIFAR-10.py --bits 4,8", ordered=False))
    write(res / "b/cifar10_MAH-flat_8bits.json", mah("cifar10", "MAH-flat", 8, 0.95, 0.9, 570.0,
                                                     "python flat_CIFAR-10.py --bits 4,8"))
    write(res / "c/nuswide21_MAH-flat_8bits.json", mah("nuswide21", "MAH-flat", 8, 0.7, 0.75, 900.0,
                                                       "python flat_NUS_WIDE.py --bits 8"))
    for method, bits, a, b, s in (("MMHH", 16, 0.61, 0.7, 600.0), ("MMHH", 32, 0.65, 0.73, 660.0),
                                  ("Hamming", 16, 0.55, 0.68, 590.0), ("Hamming", 32, 0.6, 0.71, 640.0)):
        write(res / f"mmhh/cifar10_{method}_{bits}bits.json", mmhh(method, bits, a, b, s))
    write(tmp_path / "README.md", README)
    write(tmp_path / "docs" / "results.md", DETAILS)
    return Namespace(claims=None, results=str(res), readme=str(tmp_path / "README.md"),
                     details=str(tmp_path / "docs" / "results.md"), fig=str(tmp_path / "fig"), data=[], own_images=None,
                     bench_index=None, index_page=None, bench_suite=None, testing_page=None, bench_metrics=None,
                     bench_metrics_cuda=None, metrics_page=None, bench_data=None, bench_data_cuda=None, data_page=None,
                     bench_threading=None, bench_distributed=None, distributed_page=None, bench_mutation=None)


def section(text, markers):
    return text.split(markers[0])[1].split(markers[1])[0]


def test_mah_table(tree):
    report_main.main(tree)
    mah_text = section(open(tree.details).read(), MAH_MARKERS)
    head = "| method | quantity | 4 bits | 6 bits | 8 bits | 10 bits | 12 bits |"
    cifar = mah_text.split("**CIFAR-10** (`cifar10`): preset `cpu-small`, backbone `small`, device `cpu`, seed 0")[1]
    cifar = cifar.split("**NUS-WIDE**")[0]
    lines = cifar.splitlines()
    assert head in lines
    # tie-aware MAP leads; the difference is tie-aware - published (0.18 - 0.4759, 0.94 - 0.9339,
    # 0.5143 - 0.7460, 0.8521 - 0.9537); only the pre-order flat 4-bit record is marked
    for row in ("| MAH-flat | tie-aware MAP | 0.1800 | no run | 0.9400 | no run | no run |",
                "| MAH-flat | published MAP | 0.4759 | 0.8197 | 0.9339 | 0.9335 | 0.9503 |",
                "| MAH-flat | difference (tie-aware) | -0.2959 | no run | +0.0061 | no run | no run |",
                "| MAH-flat | MAP, ties by index | 0.1900‡ | no run | 0.9500 | no run | no run |",
                "| MAH-flat | mAP@5000 | 0.2100 | no run | 0.9700 | no run | no run |",
                "| MAH-flat | published mAP@5000 (approx.) | 0.500 | 0.840 | 0.930 | 0.930 | 0.955 |",
                "| MAH-flat | precision@5000 | 0.1000 | no run | 0.9000 | no run | no run |",
                "| MAH-flat | auxiliary bits | 8,16 | no run | 16,32 | no run | no run |",
                "| MAH-flat | minutes | 9.0 | no run | 9.5 | no run | no run |",
                "| MAH-cascade | tie-aware MAP | 0.5143 | no run | no run | no run | 0.8521 |",
                "| MAH-cascade | difference (tie-aware) | -0.2317 | no run | no run | no run | -0.1016 |",
                "| MAH-cascade | MAP, ties by index | 0.5243 | no run | no run | no run | 0.8621 |",
                "| MAH-cascade | minutes | 8.8 | no run | no run | no run | 9.1 |",
                tables.GROUPED_NOTE):
        assert row in lines
    assert lines[lines.index(head) + 2].startswith("| MAH-flat | tie-aware MAP |")
    # flat before cascade, each method's rows together; a command that filled two cells is listed once;
    # the 12-bit record has no command and the losing 4-bit record's command is gone
    assert lines.index("| MAH-flat | minutes | 9.0 | no run | 9.5 | no run | no run |") < \
        lines.index("| MAH-cascade | tie-aware MAP | 0.5143 | no run | no run | no run | 0.8521 |")
    assert [line for line in lines if line.startswith("    ")] == ["    python flat_CIFAR-10.py --bits 4,8",
                                                                    "    " + CASCADE_4]
    assert "0.3333" not in mah_text and "old" not in mah_text
    nus = mah_text.split("**NUS-WIDE** (`nuswide21`): preset `cpu-small`, backbone `small`, device `cpu`, seed 0")[1]
    assert "| MAH-flat | tie-aware MAP | no run | no run | 0.6900 | no run | no run |" in nus
    assert "| MAH-flat | published MAP | n/a | n/a | n/a | n/a | n/a |" in nus
    assert "| MAH-flat | difference (tie-aware) | n/a | n/a | n/a | n/a | n/a |" in nus
    assert "| MAH-cascade | published mAP@5000 (approx.) | 0.845 | 0.850 | 0.870 | 0.900 | 0.910 |" in nus
    assert tables.GROUPED_NOTE not in nus  # no class-grouped record in this table
    assert "    python flat_NUS_WIDE.py --bits 8" in nus.splitlines()


def test_mmhh_table(tree):
    report_main.main(tree)
    lines = section(open(tree.details).read(), MMHH_MARKERS).splitlines()
    assert ("**CIFAR-10** (`cifar10`): preset `cpu-small`, backbone `small`, device `cpu`, seed 0; "
            "MAP@H<=2 = MAP within Hamming radius 2, MAP@TopK over the full ranking; "
            "test codes: DeepHash/HashNet default") in lines
    i = lines.index("| loss | quantity | 16 bits | 32 bits |")
    assert lines[i + 2:i + 6] == ["| MMHH | MAP@H<=2 / MAP@TopK | 0.6100 / 0.7000 | 0.6500 / 0.7300 |",
                                  "| MMHH | minutes | 10.0 | 11.0 |",
                                  "| Hamming | MAP@H<=2 / MAP@TopK | 0.5500 / 0.6800 | 0.6000 / 0.7100 |",
                                  "| Hamming | minutes | 9.8 | 10.7 |"]
    assert [line for line in lines if line.startswith("    ")] == [
        "    python train_mmhh.py --loss mmhh --bits 16", "    python train_mmhh.py --loss mmhh --bits 32",
        "    python train_mmhh.py --loss hamming --bits 16", "    python train_mmhh.py --loss hamming --bits 32"]


def test_mmhh_mixed_settings_named_per_cell(tree):
    other = mmhh("MMHH", 64, 0.7, 0.8, 700.0)
    other["metrics"].update(radius=3, topk=5000)
    write(os.path.join(tree.results, "mmhh/cifar10_MMHH_64bits.json"), other)
    report_main.main(tree)
    text = section(open(tree.details).read(), MMHH_MARKERS)
    assert "| MMHH | MAP@H<=r / MAP@TopK | 0.6100 / 0.7000 (H<=2, the full ranking, DeepHash/HashNet default) |" \
           " 0.6500 / 0.7300 (H<=2, the full ranking, DeepHash/HashNet default) |" \
           " 0.7000 / 0.8000 (H<=3, the top 5000, DeepHash/HashNet default) |" in text
    assert "| Hamming | minutes | 9.8 | 10.7 | no run |" in text


def test_mmhh_loss_commands_from_before_the_hamming_default_are_given_the_loss(tree):
    """A run of the MMHH loss recorded when MMHH was the default has no --distance_type in its
    command; printed as it is, it would now train the Hamming loss. results/backfill/commands.py
    adds the flag once, keeps the command as run, and the report prints the record's command.
    Catches the flag not added, or added to a Hamming run, to a test_mmhh.py command, or twice."""
    old = mmhh("MMHH", 64, 0.7, 0.8, 700.0)
    old.update(command="python train_mmhh.py --hash_bit 64", args={"distance_type": "MMHH"})
    named = mmhh("MMHH", 48, 0.7, 0.8, 700.0)
    named.update(command="python train_mmhh.py --hash_bit 48 --distance_type MMHH", args={"distance_type": "MMHH"})
    hamming = mmhh("Hamming", 64, 0.7, 0.8, 700.0)
    hamming.update(command="python train_mmhh.py --hash_bit 64 --h", args={"distance_type": "Hamming"})
    tested = mmhh("MMHH", 32, 0.7, 0.8, 700.0)
    tested.update(command="python test_mmhh.py --model_path m", args={"distance_type": "MMHH"})
    paths = []
    for record in (old, named, hamming, tested):
        paths.append(os.path.join(tree.results, f"mmhh/x_{record['method']}_{record['bits']}.json"))
        write(paths[-1], record)
    backfill = [sys.executable, os.path.join(REPO, "results", "backfill", "commands.py"), *paths]
    for _ in range(2):  # a second pass changes nothing
        assert subprocess.run(backfill, capture_output=True, text=True, timeout=120).returncode == 0
    assert json.load(open(paths[0]))["command_as_run"] == "python train_mmhh.py --hash_bit 64"
    report_main.main(tree)
    lines = section(open(tree.details).read(), MMHH_MARKERS).splitlines()
    assert "    python train_mmhh.py --hash_bit 64 --distance_type MMHH" in lines
    assert "    python train_mmhh.py --hash_bit 48 --distance_type MMHH" in lines
    assert "    python train_mmhh.py --hash_bit 64 --h" in lines
    assert "    python test_mmhh.py --model_path m" in lines


def test_absolute_test_outputs_are_given_the_path_their_run_named(tmp_path):
    """results/backfill/test_outputs.py: an absolute test_output becomes the run's relative
    --test_output_dir joined with the output's name, or the name alone where that folder was
    absolute; a relative one is left. Catches the machine's path kept, the folder dropped from a
    relative one, or a relative path rewritten."""
    cases = [("/work/wt/runs/a/test_output/a_iter_02000", "runs/a/test_output", "runs/a/test_output/a_iter_02000"),
             ("/tmp/t/test_output/b_iter_02000", "/tmp/t/test_output", "b_iter_02000"),
             ("runs/c/test_output/c_iter_02000", "runs/c/test_output", "runs/c/test_output/c_iter_02000")]
    paths = []
    for n, (output, folder, _) in enumerate(cases):
        paths.append(str(tmp_path / f"r{n}.json"))
        write(paths[-1], {"test_output": output, "args": {"test_output_dir": folder}})
    backfill = [sys.executable, os.path.join(REPO, "results", "backfill", "test_outputs.py"), *paths]
    assert subprocess.run(backfill, capture_output=True, text=True, timeout=120).returncode == 0
    assert [json.load(open(p))["test_output"] for p in paths] == [want for _, _, want in cases]


def test_resumed_mmhh_commands_are_given_the_command_that_started_the_run(tmp_path):
    """results/backfill/resumed.py on a committed record as it was before the backfill (its
    command the resume, ending in --resume): the command becomes the one that starts the run,
    the resume goes to resumed_by. A resume that left out an option of the run (--gamma here)
    would, without --resume, start another run: left as it is, and so is a file already done.
    Catches --resume kept, resumed_by dropped, and a command stripped without comparing the
    arguments it gives with the record's."""
    real = json.load(open(os.path.join(REPO, "results", "cifar10-mmhh-cpu-pretrained", "standard", "seed0",
                                       "DCH-sw1-gamma5.0", "cifar10_DCH_32bits.json")))
    start = ("python train_mmhh.py --s_dataset cifar10 --data_root ../shared/data/cifar10-jpeg.tar.gz --preset "
             "cpu-pretrained --gpu_id cpu --radius 2 --test_sample_ratio 1 --loss_lambda 0.001 --log_dir "
             "runs/final/cifar10-final-DCH-s0 --snap_path runs/final/cifar10-final-DCH-s0/snap --test_output_dir "
             "runs/final/cifar10-final-DCH-s0/test_output --hash_bit 32 --seed 0 --annotation cifar10-final-DCH-s0 "
             "--distance_type DCH --gamma 5 --similar_weight 1")
    before = {k: v for k, v in real.items() if k != "resumed_by"}
    cases = [{**before, "command": start + " --resume"},
             {**before, "command": start.replace(" --gamma 5", "") + " --resume"},
             {**before, "command": start, "resumed_by": start + " --resume"}]
    paths = [str(tmp_path / f"r{n}.json") for n in range(len(cases))]
    for path, record in zip(paths, cases):
        write(path, record)
    backfill = [sys.executable, os.path.join(REPO, "results", "backfill", "resumed.py"), *paths]
    out = subprocess.run(backfill, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    after = [json.load(open(p)) for p in paths]
    assert after[0]["command"] == start and after[0]["resumed_by"] == start + " --resume"
    assert after[1] == cases[1] and after[2] == cases[2]


def test_text_outside_markers_kept(tree):
    report_main.main(tree)
    text = open(tree.details).read()
    outside = [text.split(MAH_MARKERS[0])[0], text.split(MAH_MARKERS[1])[1].split(MMHH_MARKERS[0])[0],
               text.split(MMHH_MARKERS[1])[1]]
    assert outside[:2] == ["# Title\n\nText before.\n\n", "\n\nText between.\n\n"]
    assert outside[2].startswith("\n\nText after.\n<!-- results-protocols:start -->\n")
    assert "old MAH table" not in text and "old MMHH table" not in text
    readme = open(tree.readme).read()
    assert readme.startswith(f"# Project\n\n{GLANCE_MARKERS[0]}\n")
    assert readme.endswith(f"{GLANCE_MARKERS[1]}\n\nMore.\n")
    assert "old glance" not in readme


def test_figures(tree):
    written = report_main.main(tree)
    figs = [os.path.join(tree.fig, f) for f in ("CIFAR.png", "NUSWIDE.png")]
    assert written == [tree.readme, tree.details] + figs  # no run recorded a PR curve: no _pr.png
    for path in figs:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == (1000, 450)
    assert not os.path.exists(os.path.join(tree.fig, "FLICKR.png"))
    assert sorted(os.listdir(tree.fig)) == ["CIFAR.png", "NUSWIDE.png"]  # no temporary files left


def figures_made(monkeypatch):
    """A list that collects every matplotlib Figure the report makes from now on."""
    made = []

    class Recorded(figures.Figure):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(figures, "Figure", Recorded)
    return made


def test_figure_compares_map_at_5000_with_the_published_curves(tree, monkeypatch):
    """The published "Precision@5K" values are mAP@5000: the left panel must plot our mAP@5000
    beside them, true precision@5000 only on the right. Catches plotting precision@5000
    against the published curves (the old mismatch) or swapped panels."""
    made = figures_made(monkeypatch)
    report_main.main(tree)
    left, right = made[0].axes  # CIFAR-10 first
    ours = {c.get_label(): list(c.lines[0].get_ydata()) for c in left.containers}  # the error-bar plots
    assert ours["MAH-flat (ours)"] == pytest.approx([0.21, 0.97])  # mAP@5000 of the 4- and 8-bit records
    assert ours["MAH-cascade (ours)"] == pytest.approx([0.5443, 0.8821])
    published = {line.get_label(): list(line.get_ydata()) for line in left.lines if "published" in line.get_label()}
    assert published["MAH-flat published (approx.)"] == [0.50, 0.84, 0.93, 0.93, 0.955]
    assert {c.get_label(): list(c.lines[0].get_ydata()) for c in right.containers} == {
        "MAH-flat (ours)": pytest.approx([0.1, 0.9]), "MAH-cascade (ours)": pytest.approx([0.4088, 0.827])}


def test_rerun_byte_identical(tree):
    paths = [tree.readme, tree.details] + [os.path.join(tree.fig, f) for f in ("CIFAR.png", "NUSWIDE.png")]
    report_main.main(tree)
    first = [open(p, "rb").read() for p in paths]
    report_main.main(tree)
    assert [open(p, "rb").read() for p in paths] == first


def test_bad_files_stop_the_report_before_it_writes(tree):
    """A file that is not JSON and one without metrics: a UserError naming the first in sorted
    order and counting the other, and neither page nor any figure written. Catches bad files
    skipped (a seed then drops out of a mean without a word)."""
    write(os.path.join(tree.results, "corrupt.json"), '{"dataset": "cifar10", ')
    no_metrics = mah("cifar10", "MAH-flat", 6, 0.8, 0.8, 1.0)
    del no_metrics["metrics"]
    write(os.path.join(tree.results, "d/no_metrics.json"), no_metrics)
    corrupt = os.path.join(tree.results, "corrupt.json")
    with pytest.raises(UserError, match=rf"results file {corrupt} is no valid results record: not valid JSON "
                                        r"\(.*\(1 more files are invalid too\); nothing was written"):
        report_main.main(tree)
    assert open(tree.readme).read() == README and open(tree.details).read() == DETAILS
    assert not os.path.exists(tree.fig)


@pytest.mark.parametrize("record, reason", [
    ([1, 2], "not a JSON object"),
    ({**mah("cifar10", "MAH-flat", 4, 0.5, 0.5, 1.0), "bits": "4"}, "'bits' is not an integer"),
    ({**mah("cifar10", "MAH-flat", 4, 0.5, 0.5, 1.0), "method": "DSH"}, "neither a MAH record"),
    ({**mmhh("MMHH", 16, 0.5, 0.5, 1.0), "metrics": {"map_topk": 0.5}}, "no key 'map_within_radius' in 'metrics'"),
    ({**mmhh("MMHH", 16, 0.5, 0.5, 1.0), "seed": True}, "'seed' is not an integer"),
    (mah("cifar10", "MAH-flat", 4, 17.9, 0.5, 1.0), "metrics 'map' is 17.9, outside"),
    ({**mmhh("MMHH", 16, 0.5, 0.5, 1.0), "bits": 0}, "'bits' is 0, not a code length"),
])
def test_check_reasons(record, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        records.check(record)


def test_missing_marker(tree):
    """A marker missing from either file: a UserError naming file and marker, and neither file
    nor any figure written. Catches the README written before the details page was checked."""
    write(tree.details, DETAILS.replace(MMHH_MARKERS[1], ""))
    with pytest.raises(UserError, match=f"{tree.details} has no marker {MMHH_MARKERS[1]} after {MMHH_MARKERS[0]}: "
                                        "add the pair"):
        report_main.main(tree)
    assert open(tree.details).read() == DETAILS.replace(MMHH_MARKERS[1], "")  # nothing written
    assert open(tree.readme).read() == README and not os.path.exists(tree.fig)
    write(tree.details, DETAILS.replace(MAH_MARKERS[0], ""))
    with pytest.raises(UserError, match=f"has no marker {MAH_MARKERS[0]}: add the pair"):
        report_main.main(tree)
    write(tree.details, DETAILS)
    write(tree.readme, README.replace(GLANCE_MARKERS[0], ""))
    with pytest.raises(UserError, match=f"{tree.readme} has no marker {GLANCE_MARKERS[0]}: add the pair"):
        report_main.main(tree)


def test_no_results(tmp_path):
    os.makedirs(tmp_path / "results")
    write(tmp_path / "README.md", README)
    write(tmp_path / "results.md", DETAILS)
    args = Namespace(claims=None, results=str(tmp_path / "results"), readme=str(tmp_path / "README.md"),
                     details=str(tmp_path / "results.md"), fig=str(tmp_path / "fig"), data=[], own_images=None,
                     bench_index=None, index_page=None, bench_suite=None, testing_page=None, bench_metrics=None,
                     bench_metrics_cuda=None, metrics_page=None, bench_data=None, bench_data_cuda=None, data_page=None,
                     bench_threading=None, bench_distributed=None, distributed_page=None, bench_mutation=None)
    assert report_main.main(args) == [args.readme, args.details]
    text = open(args.details).read()
    assert section(text, MAH_MARKERS) == f"\n{tables.NO_RESULTS['mah']}\n"
    assert section(text, MMHH_MARKERS) == f"\n{tables.NO_RESULTS['mmhh']}\n"
    assert section(open(args.readme).read(), GLANCE_MARKERS) == f"\n{tables.NO_RESULTS['mah']}\n"
    assert tables.NO_RESULTS["mah"].startswith("No results yet: run ")
    assert not os.path.exists(args.fig)
    with pytest.raises(UserError, match="results folder .*nowhere does not exist"):
        report_main.main(Namespace(**{**vars(args), "results": str(tmp_path / "nowhere")}))


def test_headline_is_cpu_pretrained_else_the_series_with_most_runs():
    """The headline series of a data set: preset cpu-pretrained whatever the others hold, on the CPU
    where it ran there too (the declared regime), though a GPU series of it has more runs; without
    the preset, the series with most runs over all seeds, ties to the first in sorted order.
    Catches the headline chosen by run count alone (a single-seed series with more lengths would
    win), or the device not asked."""
    runs = [mah("cifar10", "MAH-flat", b, 0.5, 0.5, 1.0, preset="paper") for b in (4, 8, 12)]
    runs += [dict(mah("cifar10", "MAH-flat", 4, 0.5, 0.5, 1.0, preset="cpu-small"), seed=s) for s in (0, 1)]
    series = collect.series_of(runs + [mah("nuswide21", "MAH-flat", 4, 0.5, 0.5, 1.0, preset="smoke")])
    assert glance.headline(series, "cifar10") == ("cifar10", "paper", "resnet50", "cpu")
    gpu = [dict(mah("cifar10", "MAH-flat", b, 0.5, 0.5, 1.0, preset="cpu-pretrained"), device="NVIDIA H100")
           for b in (4, 8)]
    series = collect.series_of(runs + gpu)
    assert glance.headline(series, "cifar10") == ("cifar10", "cpu-pretrained", "mobilenet_v2", "NVIDIA H100")
    series = collect.series_of(runs + gpu + [mah("cifar10", "MAH-flat", 4, 0.5, 0.5, 1.0, preset="cpu-pretrained")])
    assert glance.headline(series, "cifar10") == ("cifar10", "cpu-pretrained", "mobilenet_v2", "cpu")
    tie = collect.series_of([mah("cifar10", "MAH-flat", 4, 0.5, 0.5, 1.0, preset=p) for p in ("smoke", "cpu-small")])
    assert glance.headline(tie, "cifar10") == ("cifar10", "cpu-small", "small", "cpu")
    assert glance.headline(tie, "flickr25k") is None


def test_command_line(tree, tmp_path, capsys):
    claims = str(tmp_path / "claims.md")
    write(claims, "# Claims\n\n<!-- results-claims:start -->\n<!-- results-claims:end -->\n"
                  "<!-- results-tuning:start -->\n<!-- results-tuning:end -->\n"
                  "<!-- results-finals:start -->\n<!-- results-finals:end -->\n")
    cmd = [sys.executable, "-m", "utils.report", "--results", tree.results, "--readme", tree.readme, "--details",
           tree.details, "--claims", claims, "--fig", tree.fig]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "| B1 | cascade beats flat, CIFAR-10, 4 bits | +0.2701 |" in open(claims).read()
    assert out.stdout.splitlines() == [f"wrote {tree.readme}", f"wrote {tree.details}", f"wrote {claims}",
                                       f"wrote {os.path.join(tree.fig, 'CIFAR.png')}",
                                       f"wrote {os.path.join(tree.fig, 'NUSWIDE.png')}"]
    assert "| MAH-cascade | tie-aware MAP | 0.5143 |" in open(tree.details).read()
    write(tree.readme, "no markers here\n")  # the error path in this process, through the same run()
    with pytest.raises(SystemExit) as stop:
        run(report_main.main, report_main.get_args_parser().parse_args(cmd[3:]))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tree.readme} has no marker {GLANCE_MARKERS[0]}") and err.count("\n") == 1, err


def test_retrieval_picture_shows_the_kept_examples(tree, tmp_path, monkeypatch):
    """--data draws each query row: the query image, then its top items in the kept order,
    framed green when relevant and red when not. Catches swapped colours, images read for
    the wrong names, or the picture drawn from a record other than the longest cascade of the
    largest group that kept examples."""
    root = tmp_path / "flickr"
    colours = {f"im{i}.jpg": (40 * i, 255 - 40 * i, 7 * i) for i in range(1, 5)}
    os.makedirs(root / "mirflickr")
    for file, rgb in colours.items():
        Image.new("RGB", (8, 8), rgb).save(root / "mirflickr" / file, quality=100)
    for bits, top in ((8, ["mirflickr/im2.jpg", "mirflickr/im3.jpg"]), (4, ["mirflickr/im4.jpg"] * 2)):
        record = mah("flickr25k", "MAH-cascade", bits, 0.8, 0.8, 1.0)
        record["retrieval"] = [{"query": "mirflickr/im1.jpg", "top": top, "distance": [0, 1],
                                "relevant": [True, False], "tied": 7}]
        write(os.path.join(tree.results, f"f/flickr25k_MAH-cascade_{bits}bits.json"), record)
    for bits in (4, 6, 8):  # a group with more runs but no examples: the picture comes from the other
        write(os.path.join(tree.results, f"g/flickr25k_MAH-flat_{bits}bits.json"),
              mah("flickr25k", "MAH-flat", bits, 0.8, 0.8, 1.0, preset="paper"))
    made = figures_made(monkeypatch)
    tree.data = [f"flickr25k={root}"]
    written = report_main.main(tree)
    assert written[-1] == os.path.join(tree.fig, "FLICKR_retrieval.png")
    axes = made[-1].axes
    assert len(axes) == 3
    drawn = [ax.images[0].get_array()[0, 0].tolist() for ax in axes]
    expected = [colours[f] for f in ("im1.jpg", "im2.jpg", "im3.jpg")]
    for got, want in zip(drawn, expected):  # JPEG is lossy: a few levels off at most
        assert max(abs(a - b) for a, b in zip(got, want)) <= 3
    frames = [ax.spines["left"].get_edgecolor() for ax in axes[1:]]
    assert frames == [to_rgba("tab:green"), to_rgba("tab:red")]
    assert [ax.get_title() for ax in axes] == ["query", "d=0", "d=1"]


def test_retrieval_picture_bad_inputs(tree, tmp_path):
    tree.data = ["cifar10"]
    with pytest.raises(UserError, match="expected DATASET=ROOT"):
        report_main.main(tree)
    record = mah("flickr25k", "MAH-cascade", 8, 0.8, 0.8, 1.0)
    record["retrieval"] = [{"query": "mirflickr/absent.jpg", "top": [], "distance": [], "relevant": [], "tied": 0}]
    write(os.path.join(tree.results, "f/flickr25k_MAH-cascade_8bits.json"), record)
    os.makedirs(tmp_path / "empty")
    tree.data = [f"flickr25k={tmp_path / 'empty'}"]
    with pytest.raises(UserError, match="absent.jpg: cannot read this image"):
        report_main.main(tree)


def test_seed_table_mean_and_spread_by_hand():
    """Three seeds of one cell: mean (0.5 + 0.6 + 0.7) / 3 = 0.6 and spread 0.7 - 0.5 = 0.2 of the
    tie-aware MAP (map_ - 0.01 in these records); cells with one seed and other presets stay
    out. Catches the index-tie MAP averaged instead, or seeds of different presets pooled."""
    records = [mah("cifar10", "MAH-cascade", 4, m, 0.5, 1.0, preset="cpu-pretrained") for m in (0.51, 0.61, 0.71)]
    for seed, r in enumerate(records):
        r["seed"] = seed
    records += [mah("cifar10", "MAH-cascade", 12, 0.9, 0.5, 1.0, preset="cpu-pretrained"),
                dict(mah("cifar10", "MAH-cascade", 4, 0.99, 0.5, 1.0, preset="cpu-small"), seed=5)]
    (only,) = tables.seed_tables(records)
    assert "preset `cpu-pretrained`" in only
    assert only.splitlines()[-1] == "| MAH-cascade | 4 | 0, 1, 2 | 0.6000 | 0.2000 | 0.5000, 0.6000, 0.7000 |"
    assert len(only.splitlines()) == 5  # heading, blank, header, rule, one row


def test_mmhh_conventions_of_one_snapshot_get_a_table_each(tree):
    """A snapshot tested with and without --opt-test gives two records of one (loss, bits) cell;
    both must be shown, each under its convention. Catches the later file silently replacing
    the other, or a test's time shown as a training run's."""
    optimised = mmhh("MMHH", 16, 0.71, 0.8, 1.0)
    optimised["metrics"]["opt_test"] = True
    optimised["snapshot"] = "/runs/snap/mmhh16.pt"  # a test_mmhh.py record: its seconds are the test's
    write(os.path.join(tree.results, "mmhh/opt/cifar10_MMHH_16bits.json"), optimised)
    report_main.main(tree)
    text = section(open(tree.details).read(), MMHH_MARKERS)
    assert "test codes: DeepHash/HashNet default" in text and "test codes: optimised (--opt-test)" in text
    assert "| MMHH | minutes (test only) | 0.0 |" in text and "| MMHH | minutes | 10.0 | 11.0 |" in text
    assert "| MMHH | MAP@H<=2 / MAP@TopK | 0.6100 / 0.7000 | 0.6500 / 0.7300 |" in text
    assert "| MMHH | MAP@H<=2 / MAP@TopK | 0.7100 / 0.8000 |" in text


# ------------------------------------------------------------------ results at a glance

def seeded(record, seed, **args):
    return {**record, "seed": seed, "args": args}


def test_the_sentence_on_runs_still_to_make_says_when_none_are_left(monkeypatch):
    """6 of 285 left: the count and where the plan lists them; none left: all 285 made, and the
    failed ones (2 here) named as such. Catches "0 of the 285" printed as runs still to make, or
    failed runs passed off as made with results."""
    monkeypatch.setattr(glance, "remaining", lambda records: (6, 285))
    assert glance.still_to_make({}).startswith("Runs still to make: 6 of the 285 that docs/claims.md declares")
    monkeypatch.setattr(glance, "remaining", lambda records: (0, 285))
    assert glance.still_to_make({"failed": []}) == "All 285 runs that docs/claims.md declares are made."
    assert glance.still_to_make({"failed": [{}, {}]}) == ("All 285 runs that docs/claims.md declares are made; 2 of "
                                                           "them failed, recorded in results/failures.jsonl.")


def test_glance_tables_over_seeds_by_hand(tmp_path):
    """The README's headline tables, worked out by hand. CIFAR-10 (tie-aware MAP = map_ - 0.01):
    flat 4 bits over seeds 0, 1, 2 is 0.39, 0.29, 0.34 -> mean 0.3400, half-range 0.0500;
    cascade 0.60, 0.50, 0.30 -> 0.4667 ± 0.1500; paired cascade - flat 0.21, 0.21, -0.04 ->
    mean +0.1267, sample sd 0.1443, t(0.975, 2) = 4.3027: interval [-0.2319, +0.4852], which
    straddles 0: inconclusive, on 3 of the 5 seeds declared at 4 bits; ADSH has its row, without a
    published one (the paper's table has none). FLICKR compares mAP@5000 (map_ +
    0.02) with the figure's values. A cpu-small series with more runs stays out. MMHH: the loss
    difference per test convention, MMHH ahead in 1 of 2 seeds. Catches the spread taken as
    the full range, differences of means of unpaired seeds, the wrong metric per data set, the
    headline chosen by run count, or the README given back the FLICKR and MMHH tables."""
    res = tmp_path / "results"
    pre = dict(preset="cpu-pretrained")
    recipe = dict(pretrained=True, crop=64, max_iter=41, epochs=1, optimizer="adam", lr=1e-4)
    for seed, (flat, cascade) in enumerate(((0.40, 0.61), (0.30, 0.51), (0.35, 0.31))):
        write(res / f"s{seed}/f.json", seeded(mah("cifar10", "MAH-flat", 4, flat, 0.5, 60.0, **pre), seed, **recipe))
        write(res / f"s{seed}/c.json", seeded(mah("cifar10", "MAH-cascade", 4, cascade, 0.5, 60.0, **pre), seed,
                                              **recipe))
    write(res / "s3/c12.json", seeded(mah("cifar10", "MAH-cascade", 12, 0.91, 0.5, 60.0, **pre), 3, **recipe))
    for b in (4, 6, 8, 10, 12):
        write(res / f"small/{b}.json", mah("cifar10", "MAH-flat", b, 0.97, 0.5, 60.0))
    write(res / "fl/f.json", mah("flickr25k", "MAH-flat", 8, 0.80, 0.5, 60.0, **pre))
    for seed, (a, h) in enumerate(((0.50, 0.40), (0.30, 0.45))):
        for method, value in (("MMHH", a), ("Hamming", h)):
            r = {**mmhh(method, 32, value, value + 0.1, 60.0), "dataset": "flickr25k", **PRETRAINED}
            write(res / f"m{seed}/{method}.json", seeded(r, seed))
            write(res / f"m{seed}/opt-{method}.json", seeded({**r, "metrics": {**r["metrics"], "opt_test": True,
                                                                                "map_within_radius": value / 2}},
                                                              seed))
    records = collect.load_records(str(res))
    readme = glance.glance_section(records)
    text = readme + "\n" + glance.headline_section(records)
    lines = text.splitlines()
    assert ("**MAH, CIFAR-10**: tie-aware MAP (published: the paper's table (ResNet-50 at 224 px)). Ours: ImageNet "
            "mobilenet_v2 at 64 px, preset `cpu-pretrained` (41 outer iterations x 1 epoch, adam at lr 0.0001), device "
            "`cpu`; mean ± half-range (seeds).") in lines
    for row in ("| MAH-flat, published | 0.4759 | 0.8197 | 0.9339 | 0.9335 | 0.9503 |",
                "| MAH-flat, ours | 0.3400 ± 0.0500 (3) | no run | no run | no run | no run |",
                "| MAH-cascade, ours | 0.4667 ± 0.1500 (3) | no run | no run | no run | 0.9000 (1) |",
                "| ADSH, ours | no run | no run | no run | no run | no run |",
                "| B1 | cascade beats flat, CIFAR-10, 4 bits | +0.2701 | +0.1267 [-0.2319, +0.4852], 3 of 5 seeds | "
                "inconclusive |",
                "| MAH-flat, ours | no run | no run | 0.8200 (1) | no run | no run |",  # FLICKR: mAP@5000
                "| MAH-flat, published | 0.8800 | 0.8980 | 0.9100 | 0.9160 | 0.9310 |",
                "| MAP@H<=2, MMHH loss | 0.4000 ± 0.1000 (2) |",
                "| MAP@H<=2, HashNet loss | 0.4250 ± 0.0250 (2) |",
                "| MAP@H<=2, MMHH - HashNet | -0.0250, MMHH ahead in 1 of 2 |"):
        assert row in lines, row
    assert not [line for line in lines if "TopK, MMHH" in line or "0.2000" in line]  # MAP@TopK, --opt-test: docs only
    assert not [line for line in lines if line.startswith("| ADSH, published") or "cascade - flat" in line]
    assert "0.9600" not in text  # the cpu-small series
    # the README keeps the claims and CIFAR-10's table; the FLICKR and MMHH tables are in docs only
    assert "| B1 |" in readme and "**MAH, CIFAR-10**" in readme
    assert "**MAH, MIRFlickr-25K**" not in readme and "MMHH loss" not in readme
    assert "docs/results.md#headline-tables" in readme
    # a data set with runs of other presets only has no headline table
    write(res / "nus/f.json", mah("nuswide21", "MAH-flat", 8, 0.70, 0.5, 60.0))
    assert "NUS-WIDE" not in glance.headline_section(collect.load_records(str(res)))


def test_figure_bars_span_the_seeds_and_pr_curves_average_them(tree, monkeypatch):
    """Three seeds of the cascade at 4 bits (mAP@5000 0.50, 0.70, 0.60): the point is their mean
    0.60 and the bar spans 0.50 to 0.70. Two of them recorded a PR curve: fig/CIFAR_pr.png
    plots the mean of the two, recall on x. Catches bars of another width, a seed left out,
    the PR axes swapped or a seed without a curve counted as zeros."""
    for seed, value in enumerate((0.48, 0.68, 0.58)):
        record = seeded(mah("cifar10", "MAH-cascade", 4, value, 0.5, 60.0, preset="cpu-pretrained"), seed)
        if seed:
            record["metrics"]["pr_by_radius"] = {"precision": [0.9, 0.5 + 0.1 * seed, 0.1],
                                                 "recall": [0.1, 0.2 * seed, 1.0]}
        write(os.path.join(tree.results, f"pre/{seed}.json"), record)
    made = figures_made(monkeypatch)
    written = report_main.main(tree)
    assert os.path.join(tree.fig, "CIFAR_pr.png") in written
    left = made[0].axes[0]
    (bars,) = [c for c in left.containers if c.get_label() == "MAH-cascade (ours)"]
    assert list(bars.lines[0].get_ydata()) == pytest.approx([0.60])
    (segment,) = bars.lines[2][0].get_segments()
    assert [y for _, y in segment] == pytest.approx([0.50, 0.70])
    cascade = made[1].axes[1]
    (curve,) = cascade.lines
    assert list(curve.get_xdata()) == pytest.approx([0.1, 0.3, 1.0])
    assert list(curve.get_ydata()) == pytest.approx([0.9, 0.65, 0.1])
    assert curve.get_label() == "4 bits (2 seeds)" and cascade.get_xlabel() == "recall"


OWN_MARKERS = ("<!-- results-own:start -->", "<!-- results-own:end -->")
OWN_README = README + f"\n{OWN_MARKERS[0]}\nthe typed sentence\n{OWN_MARKERS[1]}\n\nAfter.\n"


def test_own_images_sentence_from_the_bench_summary(tree):
    """The summary of bench/own_images.py beside the README becomes the sentence between the
    own-images markers: 2,500 images, 8 cores, training 3.14 s (a tenth below 10 s: 3.1) and
    12.6 s (whole seconds above: 13), indexing 54.0 s (54). Catches the MAH and MMHH seconds
    swapped, the command's seconds shown for training, the markers' content kept, or a summary
    without a number written into the README."""
    write(tree.readme, OWN_README)
    summary = {"images": 2500, "cores": 8, "torch": "2.0", "seconds": {
        "mah_training": 3.14, "mmhh_training": 12.6, "index_command": 54.0, "mah_command": 20.0,
        "mmhh_command": 30.0}}
    write(os.path.join(os.path.dirname(tree.readme), "bench", "out", "own_images.json"), summary)
    report_main.main(tree)
    text = open(tree.readme).read()
    assert section(text, OWN_MARKERS) == ("\n2,500 CIFAR-10 JPEGs, 8-core CPU: training 3.1 s and 13 s, indexing "
                                          "54 s with start-up (`bench/own_images.py`).\n")
    assert text.endswith(f"{OWN_MARKERS[1]}\n\nAfter.\n") and "old glance" not in text
    del summary["seconds"]["mmhh_training"]
    write(tree.readme, OWN_README)
    tree.own_images = os.path.join(os.path.dirname(tree.readme), "elsewhere.json")  # --own-images: read from there
    write(tree.own_images, summary)
    with pytest.raises(UserError, match=re.escape(f"own-images summary {tree.own_images} has no number "
                                                  "seconds.mmhh_training; write it again with python "
                                                  "bench/own_images.py")):
        report_main.main(tree)
    assert open(tree.readme).read() == OWN_README  # nothing written


def test_without_the_bench_summary_the_own_images_text_stays(tree):
    """No bench/out/own_images.json beside the README: the text between the own-images markers
    is left byte for byte while the glance is rewritten; a summary named with --own-images
    that is not there is an error. Catches the typed sentence dropped or replaced by an empty
    one before the bench has run, or a missing named summary passed over in silence."""
    write(tree.readme, OWN_README)
    report_main.main(tree)
    text = open(tree.readme).read()
    assert section(text, OWN_MARKERS) == "\nthe typed sentence\n" and "old glance" not in text
    tree.own_images = os.path.join(os.path.dirname(tree.readme), "elsewhere.json")
    with pytest.raises(UserError, match=re.escape(f"own-images summary {tree.own_images} is missing or unreadable")):
        report_main.main(tree)


INDEX_MARKERS = ("<!-- results-index:start -->", "<!-- results-index:end -->")
BENCH_MARKERS = ("<!-- results-index-bench:start -->", "<!-- results-index-bench:end -->")
INDEX_README = README + f"\n{INDEX_MARKERS[0]}\nthe typed speed-ups\n{INDEX_MARKERS[1]}\n\nAfter.\n"
INDEX_PAGE = f"# Search\n\n## Benchmark\n\n{BENCH_MARKERS[0]}\nNot measured yet.\n{BENCH_MARKERS[1]}\n\nAfter.\n"


def search_case(kind, n, bits, search, searched_by, items, padded, faiss):
    return {"kind": kind, "n": n, "bits": bits, "search": search, "searched_by": searched_by,
            "items_per_query": items, "identical": True, "ratios": {"padded": padded, "faiss": faiss}}


def search_summary():
    """Six cases: the README's two (10^7 codes, 48 bits, radius 2) among decoys of another N,
    K or search, which the sentence must not take."""
    return {"commit": "0123456789abcdef", "cores": 2, "faiss": "1.15.1", "queries": 1000, "rounds": 3, "cases": [
        search_case("clustered", 10 ** 6, 48, "radius 2", "IndexBinaryMultiHash", 6.8, 1.31, 7.72),
        search_case("random", 10 ** 7, 48, "radius 2", "IndexBinaryMultiHash", 0.0, 106.24, 355.84),
        search_case("random", 10 ** 7, 48, "top 100", "radius scan", 100.0, 1.41, 2.5),
        search_case("clustered", 10 ** 7, 12, "radius 2", "block scan", 54222.3, 1.02, 1.5),
        search_case("clustered", 10 ** 7, 48, "radius 2", "block scan", 76.44, 1.66, 3.66),
        search_case("random", 250_000, 12, "radius 2", "IndexBinaryHash", 19.0, 2.0, 9.0)]}


def index_tree(tree):
    """The tree's README with the search markers, docs/index.md beside docs/results.md."""
    write(tree.readme, INDEX_README)
    page = os.path.join(os.path.dirname(tree.details), "index.md")
    write(page, INDEX_PAGE)
    return page, os.path.join(os.path.dirname(tree.readme), "bench", "out", "bench_index.json")


def test_search_sentence_and_table_from_the_bench_summary(tree):
    """bench/out/bench_index.json beside the README: the README's sentence takes random and
    clustered codes at 10^7, 48 bits, radius 2, each against IndexBinaryFlat then the padded
    scan to a tenth (355.84 -> 355.8, 106.24 -> 106.2; 3.66 -> 3.7, 1.66 -> 1.7), with how
    search ran, and the top-100 case (random only here) against the padded scan to a
    hundredth; docs/index.md gets every case, in the summary's order, to a hundredth.
    Catches the two ratios swapped, a decoy case (10^6 codes, 12 bits) shown, the kinds
    swapped, the top-100 ratio against IndexBinaryFlat (2.50x) shown instead of the padded
    scan's, a case left out of the table, or text outside the markers changed."""
    page, summary = index_tree(tree)
    write(summary, search_summary())
    written = report_main.main(tree)
    assert page in written
    text = open(tree.readme).read()
    assert section(text, INDEX_MARKERS) == (
        "\nRadius 2 over 10^7 48-bit codes, speed-up over FAISS's flat scan and a padded scan: random 355.8x and "
        "106.2x (multi-index hashing), clustered 3.7x and 1.7x (the padded codes scanned a block at a time); top 100 "
        "with ties by item id, against FAISS's heap scan of the padded codes (ties in its own order): random 1.41x "
        "(`python bench/bench_index.py`, "
        "[docs](docs/index.md#benchmark)).\n")
    assert text.endswith(f"{INDEX_MARKERS[1]}\n\nAfter.\n") and "old glance" not in text
    assert open(page).read() == f"# Search\n\n## Benchmark\n\n{BENCH_MARKERS[0]}\n" + "\n".join([
        "Commit `0123456`, 2 cores, faiss 1.15.1, 1,000 queries, medians of 3 timed calls a side; a ratio is the other "
        "side's median over search's (above 1x, search is faster). Lowest against the padded scan: 1.02x (clustered "
        "12-bit codes, N = 10^7, radius 2, block scan).",
        "",
        "| codes | N | K | search | searched by | items a query | vs padded scan | vs IndexBinaryFlat | same answers |",
        "|---|---|---|---|---|---|---|---|---|",
        "| clustered | 10^6 | 48 | radius 2 | IndexBinaryMultiHash | 6.8 | 1.31x | 7.72x | yes |",
        "| random | 10^7 | 48 | radius 2 | IndexBinaryMultiHash | 0.0 | 106.24x | 355.84x | yes |",
        "| random | 10^7 | 48 | top 100 | radius scan | 100.0 | 1.41x | 2.50x | yes |",
        "| clustered | 10^7 | 12 | radius 2 | block scan | 54222.3 | 1.02x | 1.50x | yes |",
        "| clustered | 10^7 | 48 | radius 2 | block scan | 76.4 | 1.66x | 3.66x | yes |",
        "| random | 250,000 | 12 | radius 2 | IndexBinaryHash | 19.0 | 2.00x | 9.00x | yes |",
    ]) + f"\n{BENCH_MARKERS[1]}\n\nAfter.\n"


def test_a_case_below_the_padded_scan_is_named_as_slower(tree):
    """The case with the lowest ratio against the padded scan is named above the table, and one
    below 1x is said to be the slower: here the 10^6 clustered case at 0.97x, not the 10^7 one at
    1.02x. Catches the highest ratio named, the IndexBinaryFlat ratio taken, or a case below 1x
    presented without saying that search lost there."""
    page, summary = index_tree(tree)
    cases = search_summary()
    cases["cases"][0]["ratios"]["padded"] = 0.97
    write(summary, cases)
    report_main.main(tree)
    assert (" Lowest against the padded scan: 0.97x (clustered 48-bit codes, N = 10^6, radius 2, "
            "IndexBinaryMultiHash): search was the slower there.") in open(page).read()


def test_the_encoding_figure_is_the_ratio_of_build_to_forward_alone(tree):
    """A summary with the bench's --encode figures says, above the table, build's images/s over
    the forward pass's (910 / 1000 -> 0.91 times), with both speeds; one without them says
    nothing of encoding; a damaged one is one error naming the bench. Catches the ratio
    inverted (1.10), the figure shown from a summary without it, or a damaged one read."""
    from utils.errors import UserError
    page, summary = index_tree(tree)
    encode = {"model": "MAH-cascade (mobilenet_v2, 12 bits of cifar10)", "images": 2000, "workers": 1,
              "build_images_per_second": 910.0, "forward_images_per_second": 1000.0,
              "decode_images_per_second": 1500.0}
    write(summary, {**search_summary(), "encode": encode})
    report_main.main(tree)
    assert (" `build` encoded 2,000 images with MAH-cascade (mobilenet_v2, 12 bits of cifar10) at 0.91 times the "
            "speed of the model's forward pass alone on the same batches (910 against 1000 images/s; decoding "
            "workers: 1; decoding alone, in one process, 1500 images/s).") \
        in open(page).read()
    write(summary, {**search_summary(), "encode": None})
    report_main.main(tree)
    assert "`build` encoded" not in open(page).read()
    write(summary, {**search_summary(), "encode": {"model": "m"}})
    with pytest.raises(UserError, match="no number encode.images"):
        report_main.main(tree)


def test_a_stopped_bench_says_its_table_is_partial(tree):
    """A summary the bench wrote before its last set of codes ("complete": false) says so above
    the table; a finished one does not. Catches a partial bench presented as the whole one."""
    page, summary = index_tree(tree)
    write(summary, {**search_summary(), "complete": False})
    report_main.main(tree)
    partial = "The bench stopped before its last set of codes: only these cases were measured."
    assert partial in open(page).read()
    write(summary, {**search_summary(), "complete": True})
    report_main.main(tree)
    assert partial not in open(page).read()


def test_without_the_search_summary_its_text_stays(tree):
    """No bench/out/bench_index.json beside the README: the README's sentence and the table of
    docs/index.md stay byte for byte (and docs/index.md is not written) while the glance is
    rewritten. Catches the typed figures dropped or blanked before the bench has run."""
    page, _ = index_tree(tree)
    assert page not in report_main.main(tree)
    text = open(tree.readme).read()
    assert section(text, INDEX_MARKERS) == "\nthe typed speed-ups\n" and "old glance" not in text
    assert open(page).read() == INDEX_PAGE


@pytest.mark.parametrize("content, problem", [
    ("{\"commit\": \"abc\", \"cases\": [", "is missing or unreadable (JSONDecodeError); check the path"),
    ({**search_summary(), "cases": search_summary()["cases"][:1]},
     "has no case of random codes, N = 10^7, 48 bits, radius 2; write it again with python bench/bench_index.py "
     "(its default sizes)"),
    ({**search_summary(), "cases": [{**c, "ratios": {"faiss": 2.0}} for c in search_summary()["cases"]]},
     "has no number cases[0].ratios.padded; write it again with python bench/bench_index.py"),
])
def test_a_bad_search_summary_is_one_line_and_nothing_is_written(tree, content, problem):
    """A summary cut short, one without the README's case, or one without a ratio: a one-line
    error naming the file and the problem, and neither the README nor docs/index.md written.
    Catches a traceback, a sentence or table of the cases that are there, or the README written
    before the summary was found bad."""
    page, summary = index_tree(tree)
    write(summary, content)
    with pytest.raises(UserError) as error:
        report_main.main(tree)
    assert str(error.value) == f"search summary {summary} {problem}"
    assert open(tree.readme).read() == INDEX_README and open(page).read() == INDEX_PAGE


def test_the_readme_is_a_front_page():
    """README.md stays a page read in five minutes: 15,000 characters at most besides the rows
    of the claims table (as many as docs/claims.md declared before the runs, one line each), the
    results at a glance within its first 80 lines, and every docs/ page it links to present.
    Catches the reference drifting back into the README, or a link to a page that was renamed."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    claim_rows = [line for line in text.splitlines() if re.match(r"\| [A-Z]\d+r? \| ", line)]
    assert claim_rows and len(text) - sum(len(line) + 1 for line in claim_rows) <= 15000
    assert GLANCE_MARKERS[0] in text.splitlines()[:80]
    for page in set(re.findall(r"\]\((docs/[^)#]+)\)", text)):
        assert os.path.isfile(os.path.join(REPO, page)), page


def test_the_readmes_mmhh_command_is_the_setting_chosen_for_mirflickr():
    """The README's MMHH command for MIRFlickr-25K gives the MMHH loss the setting that the
    committed tuning runs chose: row r of the grid is weight WEIGHTS[(r - 1) // 4] and gamma
    MAIN[(r - 1) % 4] (docs/claims.md). Catches a grid tuned again, or a failed tuning run
    filed, that moves the choice while the README's command keeps the old setting."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    [line] = [w for w in text.splitlines() if "train_mmhh.py --s_dataset flickr25k" in w]
    words = line.split()
    flag = {k: words[words.index(k) + 1] for k in ("--distance_type", "--gamma", "--similar_weight")}
    found = collect.load_records(os.path.join(REPO, "results"))
    row = grid.chosen_rows(found["validation"], found["failed"]).get(("flickr25k", 32, "MMHH"))
    if row is None:
        pytest.skip("the MIRFlickr-25K grid of the MMHH loss is not complete in results/")
    assert flag == {"--distance_type": "MMHH", "--gamma": str(grid.MAIN[(row - 1) % 4]),
                    "--similar_weight": grid.WEIGHTS[(row - 1) // 4]}


def test_noise_and_unseen_tables_and_the_noise_claim_by_hand(tmp_path, monkeypatch):
    """MAP@H<=2 of the MMHH loss 0.60/0.50 (seeds 0, 1) at rate 0 and 0.45/0.35 at 0.4; HashNet's
    0.80/0.70 and 0.40/0.30: relative to rate 0, MMHH keeps 0.40 / 0.55 = 0.727 and HashNet 0.35 /
    0.75 = 0.467, so the MMHH loss degrades less, as the paper claims. A memory-bank run is its
    own row; unseen-class runs get their own table; none of these reach the standard tables.
    Catches noise runs pooled with clean ones, the ratio inverted, or the verdict flipped."""
    res = tmp_path / "results"
    values = {("MMHH", 0.0): (0.60, 0.50), ("MMHH", 0.4): (0.45, 0.35), ("Hamming", 0.0): (0.80, 0.70),
              ("Hamming", 0.4): (0.40, 0.30)}
    for (method, rate), pair in values.items():
        for seed, v in enumerate(pair):
            r = {**mmhh(method, 32, v, v, 60.0), "seed": seed, **PRETRAINED,
                 "protocol": {"protocol": "deephash", "label_noise": rate}}
            write(res / f"{method}_{rate}_{seed}.json", r)
    memory = {**mmhh("MMHH", 32, 0.55, 0.55, 60.0), **PRETRAINED, "args": {"batch_type": "BatchInitMem"},
              "protocol": {"protocol": "deephash", "label_noise": 0.4}}
    write(res / "memory.json", memory)
    unseen = {**mmhh("Hamming", 32, 0.33, 0.33, 60.0), **PRETRAINED,
              "protocol": {"protocol": "unseen", "label_noise": 0.0, "seen_fraction": 0.75}}
    write(res / "unseen.json", unseen)
    records = collect.load_records(str(res))
    assert len(records["protocols"]) == 6 and len(records["mmhh"]) == 4  # rate-0 runs are the standard ones
    assert {r["method"] for r in records["protocols"]} == {"MMHH", "MMHH + memory", "Hamming"}
    text = robustness.protocols_section(records["mmhh"] + records["protocols"])
    lines = text.splitlines()
    for row in ("| MAP@H<=2, MMHH loss | 0.5500 ± 0.0500 (2) | 0.4000 ± 0.0500 (2) |",
                "| MAP@H<=2, MMHH loss, relative to rate 0 | 1.000 | 0.727 |",
                "| MAP@H<=2, HashNet loss, relative to rate 0 | 1.000 | 0.467 |",
                "| MAP@H<=2, MMHH loss, memory bank | no run | 0.5500 (1) |",
                "| MAP@H<=2, HashNet loss | 0.3300 (1) |"):
        assert row in lines, row
    assert any(line.startswith("**Unseen classes, CIFAR-10**, 32 bits") for line in lines)
    (claim,) = robustness.noise_claims(records["mmhh"] + records["protocols"])
    assert claim == ("Label noise (CIFAR-10, 32 bits): the share of its MAP@H<=2 at rate 0 that each loss keeps at "
                     "rate 0.4 is MMHH loss 0.73; HashNet loss 0.47 under the default test, so the MMHH loss degrades "
                     "less than HashNet's, as the paper claims. Its MAP@H<=2 minus HashNet's (default test): +0.0500 "
                     "at rate 0.4, ahead in 2 of 2 seeds; higher at every noisy rate, as the paper claims.")
    assert "0.3300" not in tables.mmhh_section(records["mmhh"])
    made = figures_made(monkeypatch)
    assert figures.draw_noise(str(tmp_path / "noise.png"), "cifar10", records["mmhh"] + records["protocols"], "S")
    curves = {c.get_label(): list(c.lines[0].get_ydata()) for c in made[0].axes[0].containers}
    assert curves["MMHH loss"] == pytest.approx([0.55, 0.40]) and curves["HashNet loss"] == pytest.approx([0.75, 0.35])


def test_the_noise_figure_draws_opt_test_beside_the_default_test(monkeypatch):
    """HashNet's snapshots at rates 0 and 0.2, seeds 0 and 1: default test 0.80, 0.70 then 0.40,
    0.50; --opt-test 0.82, 0.78 then 0.76, 0.80. The left panel draws the default means 0.75 and
    0.45, the right one the --opt-test means 0.80 and 0.78, each labelled with its convention;
    runs tested only by default give one panel. Catches the conventions pooled (means 0.775 and
    0.615), the panels swapped, or the --opt-test panel drawn from the default records."""
    def run(rate, seed, value, opt_test):
        r = {**mmhh("Hamming", 32, value, value, 60.0), **PRETRAINED, "seed": seed,
             "protocol": {"protocol": "deephash", "label_noise": rate}}
        r["metrics"] = {**r["metrics"], "opt_test": opt_test}
        return r
    default = [run(0.0, 0, 0.80, False), run(0.0, 1, 0.70, False), run(0.2, 0, 0.40, False), run(0.2, 1, 0.50, False)]
    opt = [run(0.0, 0, 0.82, True), run(0.0, 1, 0.78, True), run(0.2, 0, 0.76, True), run(0.2, 1, 0.80, True)]
    made = figures_made(monkeypatch)
    assert figures.draw_noise(os.devnull, "cifar10", default + opt, "S")
    left, right = made[0].axes
    assert [ax.get_ylabel() for ax in (left, right)] == ["MAP@H<=2 (default test)", "MAP@H<=2 (--opt-test)"]
    assert list(left.containers[0].lines[0].get_ydata()) == pytest.approx([0.75, 0.45])
    assert list(right.containers[0].lines[0].get_ydata()) == pytest.approx([0.80, 0.78])
    assert figures.draw_noise(os.devnull, "cifar10", default, "S") and len(made[1].axes) == 1


def test_untuned_and_tuned_noise_runs_are_drawn_apart(tree, monkeypatch):
    """The tuning chose MMHH's row 1 (γ 5, weight 1). Its runs score 0.6 (rate 0) and 0.5 (rate
    0.2); runs of γ 10, never chosen, 0.3 and 0.2. fig/CIFAR_noise.png draws the γ 10 runs and
    says their settings were fixed before any tuning, fig/CIFAR_noise_tuned.png the chosen ones
    and says so. Catches the two sets pooled in one figure (means 0.45, 0.35), a figure titled
    for the other set, or the final runs left out of every figure."""
    def run(gamma, rate, value, **extra):
        return {**mmhh("MMHH", 32, value, value, 60.0), **PRETRAINED,
                "args": {"similar_weight_type": "1", "gamma": gamma, **extra.pop("args", {})},
                "protocol": {"protocol": "deephash", "label_noise": rate, **extra.pop("protocol", {})}, **extra}
    res = tree.results
    for row, gamma in enumerate((5.0, 10.0, 20.0, 40.0, 5.0, 10.0, 20.0, 40.0), 1):
        grid_run = run(gamma, 0.0, 0.9 if row == 1 else 0.5, protocol={"eval_on": "val"})
        grid_run["args"]["similar_weight_type"] = "1" if row <= 4 else "auto"
        write(os.path.join(res, f"val/{row}.json"), grid_run)
    for gamma, values in ((5.0, (0.6, 0.5)), (10.0, (0.3, 0.2))):
        for rate, value in zip((0.0, 0.2), values):
            write(os.path.join(res, f"runs/{gamma}_{rate}.json"), run(gamma, rate, value))
    made = figures_made(monkeypatch)
    written = report_main.main(tree)
    noise = [os.path.basename(p) for p in written if "noise" in os.path.basename(p)]
    assert noise == ["CIFAR_noise.png", "CIFAR_noise_tuned.png"]
    shown = [(f.get_suptitle(), {c.get_label(): list(c.lines[0].get_ydata()) for c in f.axes[0].containers})
             for f in made if "label-noise" in f.axes[0].get_xlabel()]
    (untuned_title, untuned), (tuned_title, tuned) = shown
    assert "settings fixed before any tuning" in untuned_title and untuned["MMHH loss"] == pytest.approx([0.3, 0.2])
    assert "settings chosen on the validation split" in tuned_title and tuned["MMHH loss"] == pytest.approx([0.6, 0.5])


@pytest.mark.parametrize("values, second", [
    # MMHH keeps 0.40 / 0.50 = 0.80 of its MAP, HashNet 0.60 / 0.90 = 0.67, yet MMHH is 0.20 lower
    ({("MMHH", 0.0): 0.50, ("MMHH", 0.4): 0.40, ("Hamming", 0.0): 0.90, ("Hamming", 0.4): 0.60},
     "-0.2000 at rate 0.4, ahead in 0 of 1 seeds; lower at every noisy rate, against the paper's claim."),
    # 0.2: 0.55 - 0.50 = +0.05; 0.4: 0.40 - 0.60 = -0.20
    ({("MMHH", 0.0): 0.50, ("MMHH", 0.2): 0.55, ("MMHH", 0.4): 0.40, ("Hamming", 0.0): 0.90,
      ("Hamming", 0.2): 0.50, ("Hamming", 0.4): 0.60},
     "+0.0500 at rate 0.2, ahead in 1 of 1 seeds; -0.2000 at rate 0.4, ahead in 0 of 1 seeds; higher at some noisy "
     "rates only."),
])
def test_the_two_noise_claims_are_judged_apart(tmp_path, values, second):
    """Degrading less (relative to a loss's own rate-0 MAP) and being higher under noise (the
    absolute MAP, paired by seed) are separate claims with separate verdicts. Catches the second
    verdict read off the relative shares, or the difference taken HashNet minus MMHH."""
    res = tmp_path / "results"
    for (method, rate), v in values.items():
        write(res / f"{method}_{rate}.json", {**mmhh(method, 32, v, v, 60.0), **PRETRAINED,
                                              "protocol": {"protocol": "deephash", "label_noise": rate}})
    records = collect.load_records(str(res))
    (claim,) = robustness.noise_claims(records["mmhh"] + records["protocols"])
    assert "MMHH loss 0.80; HashNet loss 0.67 under the default test, so the MMHH loss degrades less than HashNet's, " \
        "as the paper claims." in claim
    assert claim.endswith("Its MAP@H<=2 minus HashNet's (default test): " + second)


def test_the_unseen_sentence_pairs_seeds(tmp_path):
    """Under unseen classes the MMHH loss has 0.50 (seed 0) and 0.30 (seed 1), HashNet's 0.40 and
    0.35, seed 2 MMHH only: differences +0.10 and -0.05, mean +0.0250, ahead in 1 of 2; a noise
    run of seed 2 does not pair. Catches unpaired seeds averaged in, or another protocol's runs."""
    res = tmp_path / "results"
    runs = [("MMHH", 0, 0.50, "unseen"), ("MMHH", 1, 0.30, "unseen"), ("MMHH", 2, 0.90, "unseen"),
            ("Hamming", 0, 0.40, "unseen"), ("Hamming", 1, 0.35, "unseen"), ("Hamming", 2, 0.10, "deephash")]
    for method, seed, v, protocol in runs:
        write(res / f"{method}_{seed}.json", {**mmhh(method, 32, v, v, 60.0), "seed": seed, **PRETRAINED,
                                              "protocol": {"protocol": protocol, "label_noise": 0.0 if protocol ==
                                                           "unseen" else 0.2}})
    records = collect.load_records(str(res))
    assert robustness.unseen_claims(records["protocols"]) == [
        "Unseen classes (CIFAR-10, 32 bits): MAP@H<=2 minus HashNet's loss's: MMHH loss +0.0250, "
        "ahead in 1 of 2 seeds."]


def test_balls_adds_the_statistics_from_the_saved_outputs(tmp_path):
    """results/backfill/balls.py: query outputs (0.5, 0.0), (-0.1, -2.0) and database outputs (0.2, 0.3),
    (0.1, -0.4), (0.0, 0.0) are the codes (+1, +1), (-1, -1) and (+1, +1), (+1, -1), (+1, +1)
    (0 -> +1, as the test signs them); at radius 0 the balls hold 2 and 0 items: empty share
    0.5, median 1, a third of the database per ball. A file of another test (5 queries) is
    refused in one line before anything is written. Catches 0 -> -1 (the balls would hold 1
    and 1), or files written before all are checked."""
    out = tmp_path / "test_output"
    out.mkdir()
    np.save(out / "test_code.npy", np.array([[0.5, 0.0], [-0.1, -2.0]], np.float32))
    np.save(out / "database_code.npy", np.array([[0.2, 0.3], [0.1, -0.4], [0.0, 0.0]], np.float32))
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    write(good, {"metrics": {"queries": 2, "database": 3, "radius": 0, "map_within_radius": 0.5}})
    write(bad, {"metrics": {"queries": 5, "database": 3, "radius": 0}})
    cli = [sys.executable, os.path.join(REPO, "results", "backfill", "balls.py"), "--test-output", str(out)]
    done = subprocess.run(cli + [str(good), str(bad)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert "tested 5 queries and 3 database items" in done.stderr
    assert "balls" not in json.load(open(good))["metrics"]
    done = subprocess.run(cli + [str(good)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    balls = json.load(open(good))["metrics"]["balls"]
    assert balls == {"radius": 0, "empty_ball_share": 0.5, "ball_items_median": 1.0,
                     "ball_database_share": pytest.approx(1 / 3)}
    assert json.load(open(good))["metrics"]["map_within_radius"] == 0.5  # the rest as it was


def test_the_protocol_tables_show_what_the_balls_hold(tmp_path):
    """Two seeds of HashNet's loss at rate 0.4 with 0.40 and 0.50 of their queries' balls empty
    give 0.450 ± 0.050 (2); the --opt-test file of one snapshot (0.99) stays out; a loss without
    the statistics gets no row. Catches the opt-test records pooled in, or the rows dropped."""
    res = tmp_path / "results"
    for seed, (rate, empty, items) in enumerate([(0.0, 0.0, 900.0), (0.4, 0.40, 2.0), (0.4, 0.50, 4.0)]):
        r = {**mmhh("Hamming", 32, 0.5, 0.5, 60.0), "seed": seed % 2, **PRETRAINED,
             "protocol": {"protocol": "deephash", "label_noise": rate}}
        r["metrics"]["balls"] = {"radius": 2, "empty_ball_share": empty, "ball_items_median": items,
                                 "ball_database_share": 0.1}
        write(res / f"h{seed}.json", r)
        write(res / f"opt{seed}.json", {**r, "metrics": {**r["metrics"], "opt_test": True,
                                                        "balls": {**r["metrics"]["balls"], "empty_ball_share": 0.99}}})
    for rate in (0.0, 0.4):
        write(res / f"m{rate}.json", {**mmhh("MMHH", 32, 0.5, 0.5, 60.0), **PRETRAINED,
                                      "protocol": {"protocol": "deephash", "label_noise": rate}})
    records = collect.load_records(str(res))
    lines = robustness.protocols_section(records["mmhh"] + records["protocols"]).splitlines()
    assert "| share of queries with an empty ball, HashNet loss | 0.000 (1) | 0.450 ± 0.050 (2) |" in lines
    assert "| items per ball, median, HashNet loss | 900 (1) | 3 ± 1 (2) |" in lines
    assert not [line for line in lines if "ball, MMHH loss" in line or "0.99" in line]


def test_the_noise_claim_under_each_test_convention(tmp_path):
    """Default test: the MMHH loss keeps 0.40 / 0.50 = 0.80, HashNet's 0.45 / 0.90 = 0.50; under
    --opt-test (empty balls left out) 0.48 / 0.60 = 0.80 against 0.855 / 0.90 = 0.95: the first
    claim holds under one convention only, and both verdicts are given. At rate 0.4, 5% and
    45% of the queries have an empty ball. Catches the opt-test records pooled with the
    default ones, one convention's verdict reported for both, or the empty shares swapped."""
    res = tmp_path / "results"
    values = {("MMHH", 0.0): (0.50, 0.60, 0.01), ("MMHH", 0.4): (0.40, 0.48, 0.05),
              ("Hamming", 0.0): (0.90, 0.90, 0.02), ("Hamming", 0.4): (0.45, 0.855, 0.45)}
    for (method, rate), (default, opt, empty) in values.items():
        r = {**mmhh(method, 32, default, default, 60.0), **PRETRAINED,
             "protocol": {"protocol": "deephash", "label_noise": rate}}
        r["metrics"]["balls"] = {"radius": 2, "empty_ball_share": empty, "ball_items_median": 10.0,
                                 "ball_database_share": 0.1}
        write(res / f"{method}_{rate}.json", r)
        write(res / f"opt_{method}_{rate}.json", {**r, "metrics": {**r["metrics"], "opt_test": True,
                                                                  "map_within_radius": opt}})
    records = collect.load_records(str(res))
    (claim,) = robustness.noise_claims(records["mmhh"] + records["protocols"])
    assert ("keeps at rate 0.4 is MMHH loss 0.80; HashNet loss 0.50 under the default test, so the MMHH loss "
            "degrades less than HashNet's, as the paper claims. Under --opt-test, which leaves queries with an empty "
            "ball out, it is 0.80, 0.95, so it does not degrade less, against the claim.") in claim
    assert "-0.0500 at rate 0.4, ahead in 0 of 1 seeds; lower at every noisy rate" in claim
    assert claim.endswith("Queries whose radius-2 ball is empty at rate 0.4: MMHH loss 5%; HashNet loss 45%.")


def test_the_glance_and_the_unseen_sentence_say_how_crowded_the_balls_are(tmp_path):
    """Standard runs at 32 bits: the MMHH loss's radius-2 balls hold 0.50 and 0.60 of the
    database (seeds 0, 1; mean 55%), HashNet's 0.02 and 0.04 (3%); their --opt-test files
    (0.99) stay out, and the memory bank, with no statistics, is left out of the sentence.
    Under unseen classes the MMHH loss holds 0.30 (30%), HashNet's 0.10 (10%). Catches the
    opt-test records pooled in (the MMHH loss would read 77%), the shares of one loss given to
    another, or the sentence dropped."""
    res = tmp_path / "results"
    runs = [("MMHH", 0, 0.50, "deephash"), ("MMHH", 1, 0.60, "deephash"), ("Hamming", 0, 0.02, "deephash"),
            ("Hamming", 1, 0.04, "deephash"), ("MMHH", 0, 0.30, "unseen"), ("Hamming", 0, 0.10, "unseen")]
    for method, seed, share, protocol in runs:
        r = {**mmhh(method, 32, 0.5, 0.5, 60.0), "seed": seed, **PRETRAINED,
             "protocol": {"protocol": protocol, "label_noise": 0.0}}
        r["metrics"]["balls"] = {"radius": 2, "empty_ball_share": 0.0, "ball_items_median": 10.0,
                                 "ball_database_share": share}
        write(res / protocol / f"{method}_{seed}.json", r)
        write(res / protocol / "opt" / f"{method}_{seed}.json",
              {**r, "metrics": {**r["metrics"], "opt_test": True,
                                "balls": {**r["metrics"]["balls"], "ball_database_share": 0.99}}})
    write(res / "memory.json", {**mmhh("MMHH", 32, 0.5, 0.5, 60.0), **PRETRAINED,
                                "args": {"batch_type": "BatchInitMem"}})
    records = collect.load_records(str(res))
    lines = glance.headline_section(records).splitlines()
    assert "Radius-2 ball, mean share of the database, 32 bits: MMHH loss 55%; HashNet loss 3%." in lines
    (sentence,) = robustness.unseen_claims(records["protocols"])
    assert sentence == ("Unseen classes (CIFAR-10, 32 bits): MAP@H<=2 minus HashNet's loss's: MMHH loss +0.0000, "
                        "ahead in 0 of 1 seeds. Radius-2 ball, mean share of the database: MMHH loss 30%; "
                        "HashNet loss 10%.")


def test_retrieval_examples_come_from_the_longest_cascade_else_by_name():
    """The picture's run: MAH-cascade at its longest length when it kept examples; without it, the
    longest length, and of two methods at one length the last by name (MAH-flat after ADSH).
    Catches the records themselves compared on a tie of length (a TypeError once ADSH and
    MAH-flat both kept examples at 4 bits) and the cascade's preference dropped."""
    kept = {"retrieval": {"queries": []}}
    runs = {("ADSH", 4): dict(kept, n=1), ("MAH-flat", 4): dict(kept, n=2), ("ADSH", 8): {"n": 3}}
    assert figures.shown_record(runs)["n"] == 2
    runs[("MAH-cascade", 2)] = dict(kept, n=4)
    assert figures.shown_record(runs)["n"] == 4
    assert figures.shown_record({("ADSH", 8): {"n": 3}}) is None


SUITE_MARKERS = ("<!-- results-suite:start -->", "<!-- results-suite:end -->")
TESTING = f"# Tests\n\nBefore.\n\n{SUITE_MARKERS[0]}\nNot measured yet.\n{SUITE_MARKERS[1]}\n\nAfter.\n"


def test_the_suite_time_from_the_bench_summary(tree):
    """bench/out/bench_suite.json beside the README becomes docs/testing.md's sentence: 693.4 s
    is 693 s, about 12 minutes (11.56 rounded), 2,313 passed, 273 skipped, the commit cut to 7
    characters. A summary of part of the suite, or of a failing one, is refused and nothing is
    written; without a summary the sentence stays. Catches the counts swapped, minutes computed
    from another unit, or a partial run's time shown as the suite's."""
    testing = os.path.join(os.path.dirname(tree.details), "testing.md")
    write(testing, TESTING)
    report_main.main(tree)
    assert open(testing).read() == TESTING  # no summary yet
    summary = {"commit": "e529b6d0123456789", "cores": 2, "seconds": 693.4, "tests": 2586, "passed": 2313,
               "skipped": 273, "failed": 0, "selection": []}
    out = os.path.join(os.path.dirname(tree.readme), "bench", "out", "bench_suite.json")
    write(out, summary)
    report_main.main(tree)
    assert section(open(testing).read(), SUITE_MARKERS) == (
        "\nIts time, install aside: 693 s (about 12 minutes) on a 2-core CPU with nothing else running, at "
        "`e529b6d`: 2,313 passed, 273 skipped (`python bench/bench_suite.py`).\n")
    for bad in ({"selection": ["tests/test_plan.py"]}, {"failed": 1}):
        write(testing, TESTING)
        write(out, {**summary, **bad})
        with pytest.raises(UserError, match="is of part of the suite or of a failing one"):
            report_main.main(tree)
        assert open(testing).read() == TESTING


METRICS_MARKERS = ("<!-- results-metrics-bench:start -->", "<!-- results-metrics-bench:end -->")
METRICS_PAGE = f"# Metrics\n\nBefore.\n\n{METRICS_MARKERS[0]}\nNot measured yet.\n{METRICS_MARKERS[1]}\n\nAfter.\n"


def metrics_summary(**over):
    """Three cases, each side's calls unsorted: in the first the median (2.0 s against 0.04 s, 50x)
    and the best (1.0 against 0.01, 100x) give different ratios; the second has four calls, whose
    median is the mean of the middle two (2.5); the baseline's median 0.1 and best 0.08 against
    the library's 0.04 and 0.01 are 2.50x and 8.00x."""
    def case(what, bits, ties, classic, library, baseline, maps, **extra):
        return {"case": what, "bits": bits, "ties": ties, "queries": 1000, "database": 59000, "other_load": 0.01,
                "seconds": {"classic": classic, "library": library, "baseline": baseline},
                "map": {"classic": maps[0], "library": maps[1], "baseline": maps[1]}, **extra}
    return {"commit": "ffb197c0123456789", "command": "python bench/bench_metrics.py --baseline old.py",
            "device": "cpu", "device_name": None, "cores": 2, "repeat": 3, "torch": "2.14.1", "numpy": "2.4.6",
            "numba": "0.68.1", "seconds": 378.0, "baseline": "old.py", "complete": True, "cases": [
                case("full ranking", 4, "index", [3.0, 1.0, 2.0], [0.05, 0.01, 0.04], [0.2, 0.08, 0.1], (0.5, 0.5003)),
                case("full ranking", 4, "expected", [4.0, 1.0, 2.0, 3.0], [0.5, 0.25, 0.5, 1.0],
                     [0.5, 0.5, 0.5, 0.5], (0.7, 0.7)),
                {**case("mAP@5000", 12, None, [9.0, 8.0, 10.0], [0.4, 0.5, 0.2], [3.0, 3.5, 4.0], (0.6, 0.6012)),
                 "queries": 2100, "database": 193734, "peak_mb": {"classic": 4.2, "library": None}}], **over}


def test_metrics_bench_tables_from_the_summaries(tree):
    """bench/out/bench_metrics.json beside the README becomes docs/metrics.md's tables: medians and
    bests from the unsorted calls, ratios classic over library (above 1x the library is faster),
    the baseline's beside them, a peak not measured as '-', and the largest MAP gap of each kind
    of ties (0.0012 of the mAP@5000 case over 0.0003 of the full ranking's). A CUDA summary comes
    after the CPU's, named with its device. Catches medians and bests swapped, the middle call
    taken as the median of an even count, a ratio inverted, the baseline's ratio taken against
    the classic loop, the gaps of both kinds of ties mixed, or the blocks in the other order."""
    page = os.path.join(os.path.dirname(tree.details), "metrics.md")
    write(page, METRICS_PAGE)
    report_main.main(tree)
    assert open(page).read() == METRICS_PAGE  # no summary yet: the text stays
    out = os.path.join(os.path.dirname(tree.readme), "bench", "out")
    write(os.path.join(out, "bench_metrics.json"), metrics_summary())
    assert page in report_main.main(tree)
    cpu = "\n".join([
        "CPU: `python bench/bench_metrics.py --baseline old.py` at commit `ffb197c`, 2 cores (torch 2.14.1, numpy "
        "2.4.6, numba 0.68.1); 3 timed calls a side, 6.3 minutes in all; the baseline is old.py.",
        "",
        "| full ranking, 1,000 x 59,000 | classic median s | library median s | ratio of medians | ratio of bests "
        "| baseline median s | vs baseline (medians / bests) | other load |",
        "|---|---|---|---|---|---|---|---|",
        '| 4 bits, ties="index" | 2 | 0.04 | 50.0x | 100.0x | 0.1 | 2.50x / 8.00x | 0.01 |',
        '| 4 bits, ties="expected" | 2.5 | 0.5 | 5.0x | 4.0x | 0.5 | 1.00x / 2.00x | 0.01 |',
        "",
        "| mAP@5000, 2,100 x 193,734 | classic median s | library median s | ratio of medians | ratio of bests "
        "| baseline median s | vs baseline (medians / bests) | peak MB classic / library | other load |",
        "|---|---|---|---|---|---|---|---|---|",
        "| 12 bits | 9 | 0.4 | 22.5x | 40.0x | 3.5 | 8.75x / 15.00x | 4 / - | 0.01 |",
        "",
        "Largest difference between the classic loop's MAP and the library's: 0.0000 with tie-aware MAP, 0.0012 "
        "with ties in index order."])
    assert open(page).read() == f"# Metrics\n\nBefore.\n\n{METRICS_MARKERS[0]}\n{cpu}\n{METRICS_MARKERS[1]}\n\nAfter.\n"
    write(os.path.join(out, "bench_metrics_cuda.json"),
          metrics_summary(device="cuda", device_name="NVIDIA H200",
                          command="python bench/bench_metrics.py --device cuda"))
    report_main.main(tree)
    gpu = section(open(page).read(), METRICS_MARKERS).split("\n\nGPU (NVIDIA H200), the classic loop on the CPU: "
                                                             "`python bench/bench_metrics.py --device cuda` at ")
    assert gpu[0] == "\n" + cpu and len(gpu) == 2


def test_a_bad_metrics_summary_is_refused_before_anything_is_written(tree):
    """A metrics summary whose library side has no timed call, or whose case lacks its MAP, is a
    UserError naming the field and the command that writes the summary again, and no page is
    written; a stopped bench's summary says that only its cases were measured. Catches an empty
    list of calls passed to the median (a crash with a traceback), or a partial bench's tables
    presented as complete."""
    page = os.path.join(os.path.dirname(tree.details), "metrics.md")
    write(page, METRICS_PAGE)
    out = os.path.join(os.path.dirname(tree.readme), "bench", "out", "bench_metrics.json")
    bad = metrics_summary()
    bad["cases"][1]["seconds"]["library"] = []
    write(out, bad)
    with pytest.raises(UserError, match=re.escape("has no cases[1].seconds.library; write it again with python "
                                                  "bench/bench_metrics.py")):
        report_main.main(tree)
    bad = metrics_summary()
    del bad["cases"][2]["map"]["library"]
    write(out, bad)
    with pytest.raises(UserError, match=re.escape("has no number cases[2].map.library")):
        report_main.main(tree)
    assert open(page).read() == METRICS_PAGE
    write(out, metrics_summary(complete=False))
    report_main.main(tree)
    assert "6.3 minutes in all; the baseline is old.py. The bench stopped before its last case: only these were " \
           "measured.\n" in open(page).read()


def commit_outside_git(path, summary):
    """A bench run from a tree outside git (a copy) records no commit, which the report refuses:
    such a summary gets a made-up one, so that the rest of it is what is tested."""
    if summary["commit"] is None:
        path.write_text(json.dumps({**summary, "commit": "0" * 40}))


def test_the_metrics_bench_writes_the_summary_the_report_reads(tree, tmp_path):
    """bench/bench_metrics.py at a hundredth of its sizes, one timed call a side, with a copy of
    utils/metrics.py as its baseline: its summary holds the 8 full-ranking cases (4 code
    lengths, both kinds of ties) and the 2 mAP@5000 ones, is marked complete and a quick look,
    and the report turns it into tables of those rows with the baseline's columns.
    Catches the bench and the report drifting apart (a key renamed on one side), a case not
    written, the baseline's side dropped, or a scaled-down run presented as figures; a
    baseline that is neither a file nor a revision is one line, exit 1, nothing written."""
    out, old = tmp_path / "bm.json", tmp_path / "old.py"
    old.write_bytes(open(os.path.join(REPO, "utils", "metrics.py"), "rb").read())
    bench = [sys.executable, os.path.join(REPO, "bench", "bench_metrics.py"), "--scale", "100", "--repeat", "1"]
    subprocess.run(bench + ["--baseline", str(old), "--out", str(out)], check=True, capture_output=True, cwd=REPO)
    summary = json.loads(out.read_text())
    assert summary["complete"] and summary["small"] and summary["scale"] == 100
    assert [(c["case"], c["bits"], c["ties"]) for c in summary["cases"]] == [
        ("full ranking", b, t) for b in (4, 8, 12, 32) for t in ("index", "expected")] + [
        ("mAP@5000", 12, None), ("mAP@5000", 48, None)]
    assert all(len(c["seconds"]["classic"]) == len(c["seconds"]["library"]) == 1 for c in summary["cases"])
    commit_outside_git(out, summary)
    text = benches.metrics_tables(str(out))
    assert "Sizes divided by 100 (`--small`, `--scale`): a quick look, not figures." in text
    assert "| full ranking, 10 x 590 |" in text and "| mAP@5000, 21 x 1,937 |" in text
    assert len([line for line in text.splitlines() if line.startswith("| ") and " bits" in line]) == 10
    assert "| baseline median s | vs baseline (medians / bests) |" in text
    bad = subprocess.run(bench + ["--baseline", "no-such-revision", "--out", str(tmp_path / "x.json")],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    assert "--baseline no-such-revision is neither a file nor a git revision" in bad.stderr
    assert not (tmp_path / "x.json").exists()


DATA_MARKERS = ("<!-- results-data-bench:start -->", "<!-- results-data-bench:end -->")
DATA_PAGE = f"# Data\n\nBefore.\n\n{DATA_MARKERS[0]}\nNot measured yet.\n{DATA_MARKERS[1]}\n\nAfter.\n"


def data_summary(**over):
    """Three pipelines beside two models, each with unsorted rates: the medians are 900 (fast 32),
    3,000 (fast 224; two rounds, so the mean of 2,000 and 4,000), 40 (files), 300 (ResNet-18) and
    2 (ResNet-50), so the ratios are 3.0x, 1500.0x and 20.0x and the closest row the first."""
    return {"commit": "abcdef0123", "command": "python bench/bench_data.py", "device": "cpu", "device_name": None,
            "cores": 2, "torch": "2.14.1", "batch": 64, "rounds": 3, "seconds": 5.0, "complete": True,
            "pairs": [{"pipeline": "fast_32", "model": "resnet18_32"},
                      {"pipeline": "fast_224", "model": "resnet50_224"},
                      {"pipeline": "files_224", "model": "resnet50_224"}],
            "labels": {"fast_32": "fast 32", "fast_224": "fast 224", "files_224": "files, 2 workers",
                       "resnet18_32": "ResNet-18 at 32", "resnet50_224": "ResNet-50 at 224"},
            "rates": {"fast_32": [1000.0, 900.0, 100.0], "fast_224": [4000.0, 2000.0], "files_224": [40.0, 50.0, 30.0],
                      "resnet18_32": [310.0, 300.0, 200.0], "resnet50_224": [2.0, 1.0, 2.5]}, **over}


def test_input_pipeline_table_from_the_bench_summary(tree):
    """bench/out/bench_data.json beside the README becomes docs/data.md's table: medians of the
    unsorted rounds, each pipeline over the model it feeds, a model below 10 images/s to a
    tenth, and the closest pipeline named; a pipeline slower than its model is named as the
    bottleneck instead. Catches the ratio inverted, the mean or the last round taken for the
    median, a pipeline paired with the other model, or a slower pipeline passed over."""
    page = os.path.join(os.path.dirname(tree.details), "data.md")
    write(page, DATA_PAGE)
    report_main.main(tree)
    assert open(page).read() == DATA_PAGE  # no summary yet: the text stays
    out = os.path.join(os.path.dirname(tree.readme), "bench", "out", "bench_data.json")
    write(out, data_summary())
    assert page in report_main.main(tree)
    assert section(open(page).read(), DATA_MARKERS) == "\n" + "\n".join([
        "CPU: `python bench/bench_data.py` at commit `abcdef0`, 2 cores, torch 2.14.1, batch 64; images/s, medians "
        "of 3 rounds, each measurement about 5 s, interleaved.",
        "",
        "| pipeline | images/s | fed model (fwd+bwd) | images/s | pipeline / model |",
        "|---|---|---|---|---|",
        "| fast 32 | 900 | ResNet-18 at 32 | 300 | 3.0x |",
        "| fast 224 | 3,000 | ResNet-50 at 224 | 2.0 | 1500.0x |",
        "| files, 2 workers | 40 | ResNet-50 at 224 | 2.0 | 20.0x |",
        "",
        "The input pipeline outruns the model it feeds in every row (3.0x to 1500.0x); the closest: fast 32."]) + "\n"
    slow = data_summary()
    slow["rates"]["files_224"] = [1.0, 1.5, 0.5]
    write(out, slow)
    report_main.main(tree)
    assert section(open(page).read(), DATA_MARKERS).endswith(
        "\n\nSlower than the model it feeds, so the bottleneck of training: files, 2 workers.\n")
    bad = data_summary()
    bad["pairs"][2]["model"] = "resnet101"
    bad["labels"]["resnet101"] = "ResNet-101"
    write(out, bad)
    with pytest.raises(UserError, match=re.escape("has no rates.resnet101; write it again with python "
                                                  "bench/bench_data.py")):
        report_main.main(tree)


def test_the_input_pipeline_bench_writes_the_summary_the_report_reads(tree, tmp_path):
    """bench/bench_data.py at toy size (digits, batch 2, one round, no workers): its summary holds a rate
    for each of the five measurements and the three pairs, and the report makes a three-row
    table of it. Catches the bench and the report drifting apart, or a measurement not taken."""
    out = tmp_path / "bd.json"
    subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench_data.py"), "--batch-size", "2", "--rounds", "1",
                    "--seconds", "0", "--files", "4", "--workers", "0", "--digits", "--out", str(out)],
                   check=True, capture_output=True, cwd=REPO)
    summary = json.loads(out.read_text())
    assert summary["complete"] and sorted(summary["rates"]) == ["fast_224", "fast_32", "files_224", "resnet18_32",
                                                                "resnet50_224"]
    assert all(len(r) == 1 and r[0] > 0 for r in summary["rates"].values())
    commit_outside_git(out, summary)
    text = benches.data_tables(str(out))
    assert "| DataLoader, JPEG files -> 224, 0 workers |" in text
    assert len([line for line in text.splitlines() if line.startswith("| ") and " at " in line]) == 3


def test_threading_and_distributed_sentences_from_the_bench_summaries(tree):
    """bench/out/bench_threading.json becomes the threading sentence of docs/metrics.md, beside
    the metrics tables of the same page: workqueue's median 0.06 s (calls 0.05, 0.06, 0.09)
    over OpenMP's 0.05 s (0.04, 0.05, 0.05) is 1.20; bench/out/bench_distributed.json becomes
    docs/distributed.md's: two processes' median 1,000 (of 900, 1,000, 1,100) over one's 1,250
    (of 1,200, 1,300, 1,250) is 0.80x. Catches either ratio inverted, the mean taken for the
    median, or one section of a page lost when another on it is rewritten."""
    docs = os.path.dirname(tree.details)
    metrics_page, distributed_page = os.path.join(docs, "metrics.md"), os.path.join(docs, "distributed.md")
    threading_markers = ("<!-- results-threading:start -->", "<!-- results-threading:end -->")
    distributed_markers = ("<!-- results-distributed-bench:start -->", "<!-- results-distributed-bench:end -->")
    write(metrics_page, METRICS_PAGE + f"\n{threading_markers[0]}\nold\n{threading_markers[1]}\n")
    write(distributed_page, f"# Distributed\n\n{distributed_markers[0]}\nold\n{distributed_markers[1]}\n")
    out = os.path.join(os.path.dirname(tree.readme), "bench", "out")
    write(os.path.join(out, "bench_metrics.json"), metrics_summary())
    write(os.path.join(out, "bench_threading.json"), {
        "commit": "1b799a4000", "command": "python bench/bench_threading.py --rounds 3", "cores": 2, "rounds": 3,
        "repeats": 1, "queries": 1000, "database": 50000, "bits": 12, "complete": True,
        "times": {"workqueue": [0.09, 0.05, 0.06], "omp": [0.05, 0.04, 0.05]}})
    write(os.path.join(out, "bench_distributed.json"), {
        "commit": "abc1234ff", "command": "python bench/bench_distributed.py --repeat 3", "device": "cpu",
        "backend": "gloo", "cores": 2, "processes": 2, "repeat": 3, "complete": True,
        "rates": {"one": [1200.0, 1300.0, 1250.0], "many": [900.0, 1000.0, 1100.0]}})
    written = report_main.main(tree)
    assert metrics_page in written and distributed_page in written
    text = open(metrics_page).read()
    assert section(text, METRICS_MARKERS).startswith("\nCPU: `python bench/bench_metrics.py --baseline old.py`")
    assert section(text, threading_markers) == (
        "\n`python bench/bench_threading.py --rounds 3` (commit `1b799a4`, 2 cores; one process per layer in turns, "
        "3 x 1 timed pairs of calls each, tie-aware MAP and MAP@5000 of 1,000 x 50,000 clustered 12-bit codes) puts "
        "numba's own pool at 1.20 times the OpenMP layer's median time (60 against 50 ms).\n")
    assert section(open(distributed_page).read(), distributed_markers) == (
        "\nOn a 2-core CPU, 2 gloo processes against one process: 1,000 against 1,250 images/s, 0.80x (medians of 3 "
        "runs each; `python bench/bench_distributed.py --repeat 3` at commit `abc1234`).\n")
    write(os.path.join(out, "bench_distributed.json"), {
        "commit": "abc1234ff", "command": "c", "device": "cpu", "backend": "gloo", "cores": 2, "processes": 2,
        "repeat": 3, "rates": {"one": [1200.0], "many": []}})
    with pytest.raises(UserError, match=re.escape("has no rates.many; write it again with python "
                                                  "bench/bench_distributed.py")):
        report_main.main(tree)


def test_the_suite_bench_counts_from_junit_xml(tmp_path):
    """bench/bench_suite.py's counts from a JUnit XML of pytest's form: 10 tests, 1 failure and
    1 error (2 failed), 3 skipped, so 5 passed; two testsuite elements are summed. Catches errors
    left out of the failed count, or skipped tests counted as passed."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_suite", os.path.join(REPO, "bench", "bench_suite.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    xml = tmp_path / "s.xml"
    xml.write_text('<testsuites><testsuite tests="6" failures="1" errors="0" skipped="2"/>'
                   '<testsuite tests="4" failures="0" errors="1" skipped="1"/></testsuites>')
    assert bench.counts(str(xml)) == {"tests": 10, "failed": 2, "skipped": 3, "passed": 5}


MUTATION_MARKERS = ("<!-- results-mutation-check:start -->", "<!-- results-mutation-check:end -->")


def test_the_mutation_check_outcome_from_its_summary(tree):
    """bench/out/mutation_check.json becomes docs/testing.md's sentence and table: of 5 mutations,
    one stale (not run), one survived, so 3 killed of the 4 run; groups in the order run, each with
    its count. A stopped and partial check says both; a mutation with a status the check never
    writes is refused and nothing is written. Catches a survivor or a stale mutation counted as
    killed, a stale one counted as run, a stopped check shown as the whole."""
    testing = os.path.join(os.path.dirname(tree.details), "testing.md")
    page = f"# Tests\n\n{MUTATION_MARKERS[0]}\nNot run yet.\n{MUTATION_MARKERS[1]}\n"
    write(testing, page)
    report_main.main(tree)
    assert open(testing).read() == page  # no summary yet
    mutations = [{"id": "M01", "group": "MAH", "status": "killed"}, {"id": "M02", "group": "MAH", "status": "SURVIVED"},
                 {"id": "X01", "group": "metrics", "status": "killed"},
                 {"id": "X02", "group": "metrics", "status": "stale"},
                 {"id": "D01", "group": "torchrun", "status": "killed"}]
    summary = {"commit": "e529b6d0123456789", "command": "python bench/mutation_check.py", "cores": 2, "chosen": 5,
               "of": 5, "complete": True, "mutations": mutations}
    out = os.path.join(os.path.dirname(tree.readme), "bench", "out", "mutation_check.json")
    write(out, summary)
    report_main.main(tree)
    assert section(open(testing).read(), MUTATION_MARKERS) == (
        "\n`python bench/mutation_check.py` at commit `e529b6d` (2 cores): the tests killed 3 of the 4 mutations "
        "run; survived: M02; stale: X02.\n\n"
        "| what the mutations touch | mutations | killed | survived | stale |\n|---|---|---|---|---|\n"
        "| MAH | 2 | 1 | M02 | none |\n| metrics | 2 | 1 | none | X02 |\n| torchrun | 1 | 1 | none | none |\n")
    write(out, {**summary, "chosen": 3, "of": 5, "complete": False, "mutations": mutations[:2]})
    report_main.main(tree)
    assert section(open(testing).read(), MUTATION_MARKERS).startswith(
        "\n`python bench/mutation_check.py` at commit `e529b6d` (2 cores): the tests killed 1 of the 2 mutations "
        "run; survived: M02; stale: none. The check stopped after 2 of its 3 mutations. A partial run: 3 of the 5 "
        "mutations were chosen.\n\n")
    write(testing, page)
    write(out, {**summary, "mutations": [{**mutations[0], "status": "dead"}]})
    with pytest.raises(UserError, match="a mutation without an id, a group or a status"):
        report_main.main(tree)
    assert open(testing).read() == page
