"""utils.report.plan: the runs docs/claims.md declares and results/ lacks. Counts worked out by
hand from the tables of docs/claims.md, not from the code under test."""
import json
import os

from utils.report import plan

GAMMAS = (5.0, 10.0, 20.0, 40.0)


def mah(method, bits, seed, curve=True, dataset="cifar10"):
    return {"dataset": dataset, "method": method, "bits": bits, "seed": seed, "preset": "cpu-pretrained",
            "backbone": "mobilenet_v2", "device": "cpu", "curve": [{"iteration": 5}] if curve else []}


def mmhh(method, seed, row, opt_test=False, optimizer="adam", rate=0.0, protocol="deephash", val=False):
    main = GAMMAS[(row - 1) % 4]
    return {"dataset": "cifar10", "method": method, "bits": 32, "preset": "cpu-pretrained", "seed": seed,
            "backbone": "MobileNetV2Fc", "device": "cpu",
            "args": {"similar_weight_type": "1" if row <= 4 else "auto", "gamma": main, "sigmoid_param": main / 32,
                     "optimizer": optimizer},
            "protocol": {"eval_on": "val"} if val else {"protocol": protocol, "label_noise": rate},
            "metrics": {"map_within_radius": 0.5, "opt_test": opt_test}}


def tuned(method, best):
    """The 8 CIFAR-10 tuning rows of a loss, row `best` highest."""
    return [{**mmhh(method, 0, row, val=True), "metrics": {"map_within_radius": 0.8 if row == best else 0.5,
                                                           "opt_test": False}} for row in range(1, 9)]


def groups(mah_records=(), finals=(), validation=()):
    return {"mah": list(mah_records), "tuned": list(finals), "released": [], "validation": list(validation)}


def test_nothing_filed_lists_every_declared_mah_and_tuning_run():
    """MAH: CIFAR-10 ADSH 5+3+5+3+5 (4-12 bits) + 3 (48) = 24, MAH-flat and MAH-cascade 21 each;
    MIRFlickr-25K MAH-flat and -cascade 3+1+3+1+3 = 11 each, ADSH 3 x 3 = 9: 97. Tuning: 2 data
    sets x 4 losses x 8 rows = 64. No final run before a grid is complete: 8 groups wait.
    Catches a length, a method or a data set dropped from the plan, seeds miscounted, and final
    runs listed before their loss is chosen."""
    text = plan.plan(groups(), root="/nonexistent")
    assert text.splitlines()[0] == ("# 161 runs declared in docs/claims.md are not in results/; 8 groups of final "
                                    "runs wait for a tuning grid")
    assert text.count("\npython train_mmhh.py") == 64 and "test_mmhh.py" not in text
    assert "\nset -e " in text.split("\n\n")[0]  # a shell script that stops at the first failure
    assert "# MIRFlickr-25K, ADSH, 12 bits, seed 2\npython cascade_FLICKR.py --preset cpu-pretrained --gpu cpu " \
           "--data-root ../shared/data/mirflickr25k-20k.tar --missing-images drop --bits 12 --seed 2 --adsh " \
           "--output-dir runs/claims/flickr-adsh_12_s2\npython -m utils.report.filing runs/claims/flickr-adsh_12_s2" \
           in text
    assert "CIFAR-10, MAH-flat, 48 bits" not in text and "MIRFlickr-25K, ADSH, 6 bits" not in text


def test_a_curved_length_filed_without_its_curve_is_run_again_and_replaced():
    """4 and 12 bits on CIFAR-10 draw the learning curves: a run filed without one is listed with
    --eval-every 5 and filed with --replace; with a curve, or at 8 bits without one, it is done.
    Catches the curve check dropped, or applied to every length or to MIRFlickr-25K."""
    runs = {p.label: p.commands for p in plan.mah_runs([mah("MAH-flat", 4, 0, curve=False), mah("MAH-flat", 12, 0),
                                                        mah("MAH-flat", 8, 0, curve=False),
                                                        mah("MAH-flat", 4, 0, curve=False, dataset="flickr25k")])}
    again = runs["CIFAR-10, MAH-flat, 4 bits, seed 0 (filed without its learning curve: run again)"]
    assert again == ["python flat_CIFAR-10.py --preset cpu-pretrained --gpu cpu --data-root "
                     "../shared/data/cifar10-jpeg.tar.gz --bits 4 --seed 0 --eval-every 5 --output-dir "
                     "runs/claims/flat_4_s0", "python -m utils.report.filing runs/claims/flat_4_s0 --replace"]
    assert not [k for k in runs if k.startswith(("CIFAR-10, MAH-flat, 12 bits, seed 0", "CIFAR-10, MAH-flat, 8 bits, "
                                                 "seed 0", "MIRFlickr-25K, MAH-flat, 4 bits, seed 0"))]
    assert len(runs) == 97 - 3


def test_final_runs_use_the_chosen_row_and_both_conventions():
    """DCH chosen at row 3 (gamma 20, weight 1), HashNet at row 6 (sigmoid 10/32 = 0.3125, auto).
    Each loss on CIFAR-10: 5 clean + 2 x 5 label noise + 5 unseen + 3 released optimiser = 23 runs;
    DCH's clean seed 0 filed in both conventions is done (22), HashNet's with only the default
    convention is listed again with --replace (23). Catches another row's flags, a dropped setting,
    and a run counted done on one convention."""
    finals = [mmhh("DCH", 0, 3), mmhh("DCH", 0, 3, opt_test=True), mmhh("Hamming", 0, 6)]
    runs, waiting = plan.final_runs(finals, tuned("DCH", 3) + tuned("Hamming", 6))
    dch = [p.commands for p in runs if ", DCH, " in p.label]
    hashnet = {p.label: p.commands for p in runs if ", HashNet, " in p.label}
    assert len(dch) == 22 and len(hashnet) == 23 and len(runs) == 45
    assert all("--distance_type DCH --gamma 20 --similar_weight 1" in c[0] for c in dch)
    again = hashnet["CIFAR-10, final run, clean, HashNet, seed 0 (one test convention is filed: run both, file with "
                    "--replace)"]
    assert again[0].endswith("--seed 0 --annotation cifar10-final-Hamming-s0 --distance_type Hamming --sigmoid_param "
                             "0.3125 --similar_weight auto")
    assert again[1] == ("python test_mmhh.py --gpu_id cpu --opt-test --radius 2 --log_dir runs/final/cifar10-final-"
                        "Hamming-s0 --model_path runs/final/cifar10-final-Hamming-s0/snap/cifar10-final-Hamming-s0_"
                        "cifar10_cifar10_iter_02000 --annotation cifar10-final-Hamming-s0-opt --saved_outputs")
    assert again[2].endswith("runs/final/cifar10-final-Hamming-s0/cifar10-final-Hamming-s0-opt --replace")
    assert hashnet["CIFAR-10, final run, label noise 0.4, HashNet, seed 4"][0].endswith("--label_noise 0.4")
    assert hashnet["CIFAR-10, final run, unseen classes, HashNet, seed 1"][0].endswith("--protocol unseen")
    assert hashnet["CIFAR-10, final run, clean, released optimiser, HashNet, seed 2"][0].endswith("--optimizer sgd")
    assert "CIFAR-10, final run, clean, released optimiser, HashNet, seed 3" not in hashnet  # 3 seeds
    assert len(waiting) == 6  # MMHH and MMHH0 on CIFAR-10, all four on MIRFlickr-25K


def test_the_command_prints_the_plan_and_refuses_a_missing_results_folder(tmp_path):
    """python -m utils.report.plan as a process: on an empty results folder the header of the
    whole plan, exit 0; on a folder that is not there one line naming it, exit 2, no traceback.
    Catches the CLI wired to another folder than --results, or a traceback for a wrong path."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "results").mkdir()
    ok = subprocess.run([sys.executable, "-m", "utils.report.plan", "--results", str(tmp_path / "results"),
                         "--runs-from", str(tmp_path)], cwd=repo, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("# 161 runs declared in docs/claims.md are not in results/")
    bad = subprocess.run([sys.executable, "-m", "utils.report.plan", "--results", str(tmp_path / "nowhere")],
                         cwd=repo, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nowhere does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_runs_still_to_make_against_those_declared():
    """Declared: MAH 97, tuning 64, final runs 4 losses x (CIFAR-10 23 + MIRFlickr-25K 5 + 3 = 8)
    = 124: 285. Nothing filed: all 285 to make. With DCH and HashNet tuned on CIFAR-10 (16 rows)
    and 2 of DCH's final records (one run, both conventions) and 1 of HashNet's (one convention):
    97 + 48 + 22 + 23 + MMHH and MMHH0 on CIFAR-10 (2 x 23, waiting) + all four on MIRFlickr-25K
    (4 x 8, waiting) = 268. Catches waiting losses left out of the count, or a run counted done
    on one convention."""
    assert plan.remaining(groups()) == (285, 285)
    finals = [mmhh("DCH", 0, 3), mmhh("DCH", 0, 3, opt_test=True), mmhh("Hamming", 0, 6)]
    assert plan.remaining(groups(finals=finals, validation=tuned("DCH", 3) + tuned("Hamming", 6))) == (268, 285)


def test_started_and_trained_runs_are_resumed_or_filed_from_their_folders(tmp_path):
    """Run folders under --runs-from: a MAH run with a checkpoint and no results is resumed
    (`python flat_CIFAR-10.py --resume FOLDER`, the folder relative, as the script runs there),
    an MMHH one by its command with --resume; an MMHH tuning run with its results is only
    filed; a final run trained and tested is only filed, one trained but untested keeps its
    test and filing; a curved MAH run whose results lack the learning curve is not taken as
    done. Catches a finished step run again (the script would refuse its folder), a stopped
    run started afresh, the --opt-test step dropped with the training, or a run without its
    curve filed as the rerun."""
    def put(path, record=None):
        os.makedirs(os.path.dirname(tmp_path / path), exist_ok=True)
        (tmp_path / path).write_text(json.dumps(record or {}))
    put("runs/claims/flat_4_s2/checkpoint.pt")
    put("runs/claims/flat_12_s0/results/cifar10_MAH-flat_12bits.json", {"curve": []})
    put("runs/tuning/cifar10-tune-DCH-1/cifar10-tune-DCH-1_cifar10_cifar10/results/r.json")
    put("runs/tuning/cifar10-tune-HashNet-2/cifar10-tune-HashNet-2_cifar10_cifar10/checkpoint.pt")
    a = "runs/final/cifar10-final-DCH-s0"
    put(f"{a}/cifar10-final-DCH-s0_cifar10_cifar10/results/r.json")
    put(f"{a}/cifar10-final-DCH-s0-opt/results/r.json")
    put("runs/final/cifar10-final-DCH-s1/cifar10-final-DCH-s1_cifar10_cifar10/results/r.json")
    text = plan.plan(groups(validation=tuned("DCH", 3)[1:]), root=str(tmp_path))
    runs = {block.splitlines()[0]: block.splitlines()[1:] for block in text.split("\n\n")[1:]}
    assert runs["# CIFAR-10, MAH-flat, 4 bits, seed 2 (stopped midway: resumed)"] == [
        "python flat_CIFAR-10.py --resume runs/claims/flat_4_s2", "python -m utils.report.filing runs/claims/flat_4_s2"]
    assert runs["# CIFAR-10, MAH-flat, 12 bits, seed 0"][0].startswith("python flat_CIFAR-10.py --preset")
    assert runs["# CIFAR-10, tuning, DCH row 1 (trained: its results are in its folder)"] == [
        "python -m utils.report.filing runs/tuning/cifar10-tune-DCH-1/cifar10-tune-DCH-1_cifar10_cifar10"]
    resumed = runs["# CIFAR-10, tuning, HashNet row 2 (stopped midway: resumed)"]
    assert resumed[0].startswith("python train_mmhh.py --s_dataset cifar10") and resumed[0].endswith(" --resume")
    assert not [k for k in runs if "DCH, seed" in k]  # row 1 missing: DCH's grid is not complete
    text = plan.plan(groups(validation=tuned("DCH", 3)), root=str(tmp_path))
    runs = {block.splitlines()[0]: block.splitlines()[1:] for block in text.split("\n\n")[1:]}
    assert runs["# CIFAR-10, final run, clean, DCH, seed 0 (trained: its results are in its folder)"] == [
        f"python -m utils.report.filing {a}/cifar10-final-DCH-s0_cifar10_cifar10 {a}/cifar10-final-DCH-s0-opt"]
    s1 = runs["# CIFAR-10, final run, clean, DCH, seed 1 (trained: its results are in its folder)"]
    assert s1[0].startswith("python test_mmhh.py --gpu_id cpu --opt-test") and len(s1) == 2
    assert runs["# CIFAR-10, final run, clean, DCH, seed 2"][0].startswith("python train_mmhh.py")


def test_failed_runs_are_not_made_again_and_count_as_made():
    """Recorded as failed: CIFAR-10 ADSH 4 bits seed 0 (MAH), DCH's CIFAR-10 tuning row 3, and
    DCH's clean final run of seed 1 (DCH tuned at row 2, HashNet at row 6). The plan lists none
    of them and says 3 failed; of the 285 declared, 285 - 1 (MAH) - 16 (both grids filed) - 1
    (DCH's final run) = 267 are still to make. The failed tuning row completes DCH's grid with the
    7 filed. Catches a failed run listed again, or counted as still to make."""
    lost = [{"run": {"kind": "mah", "dataset": "cifar10", "method": "ADSH", "bits": 4, "seed": 0}},
            {"run": {"kind": "tuning", "dataset": "cifar10", "bits": 32, "method": "DCH", "row": 3}},
            {"run": {"kind": "final", "dataset": "cifar10", "optimiser": "adam", "protocol": "standard", "rate": 0.0,
                     "method": "DCH", "seed": 1}}]
    lost = [{**e, "reason": "NaN loss", "folder": "runs/x"} for e in lost]
    validation = [r for r in tuned("DCH", 2) if r["args"]["gamma"] != 20.0 or r["args"]["similar_weight_type"] != "1"]
    records = {**groups(validation=validation + tuned("Hamming", 6)), "failed": lost}
    text = plan.plan(records, root="/nonexistent")
    assert text.splitlines()[0].startswith("# ") and "; 3 failed and are not made again" in text.splitlines()[0]
    for label in ("CIFAR-10, ADSH, 4 bits, seed 0", "CIFAR-10, tuning, DCH row 3",
                  "CIFAR-10, final run, clean, DCH, seed 1"):
        assert f"{label}\n" not in text and f"{label} (" not in text
    assert "# CIFAR-10, final run, clean, DCH, seed 0\n" in text
    assert plan.remaining(records) == (267, 285)


def test_each_planned_run_is_named_as_its_own_command_says():
    """Every run the plan lists with everything still to make (two grids chosen, so that final
    runs are listed too): the folder and the failures.jsonl name it carries are read back from
    its training command's own options, independently of how the plan built them. Catches a
    run named by another loop's seed, bits, loss or row (a failure would be recorded against a
    run that did not fail), and a folder that is not the one the command writes."""
    import shlex

    runs, _ = plan.pending({**groups(validation=tuned("DCH", 3) + tuned("Hamming", 6)), "failed": []})
    kinds = {p.run["kind"] for p in runs}
    assert kinds == {"mah", "tuning", "final"} and len({p.folder for p in runs}) == len(runs)
    for p in runs:
        words = shlex.split(p.commands[0])
        value = dict(zip(words, words[1:]))
        if words[1] == "train_mmhh.py":
            assert p.folder == value["--log_dir"]
            found = {"dataset": value["--s_dataset"], "method": value["--distance_type"]}
            if value.get("--eval_on") == "val":
                found.update(kind="tuning", bits=int(value["--hash_bit"]),
                             row=int(value["--annotation"].rsplit("-", 1)[1]))
            else:
                found.update(kind="final", seed=int(value["--seed"]), optimiser=value.get("--optimizer", "adam"),
                             protocol=value.get("--protocol", "standard"),
                             rate=float(value.get("--label_noise", 0.0)))
        else:
            assert p.folder == value["--output-dir"]
            found = {"kind": "mah", "dataset": "flickr25k" if words[1].endswith("_FLICKR.py") else "cifar10",
                     "method": "ADSH" if "--adsh" in words else "MAH-flat" if words[1].startswith("flat_")
                     else "MAH-cascade", "bits": int(value["--bits"]), "seed": int(value["--seed"])}
        assert p.run == found, p.label
