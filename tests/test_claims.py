"""The claims rule of docs/claims.md (utils.report.claims) against values worked out by hand:
the 95% Student-t interval of the paired differences and the verdict read from it. The t
quantiles are written out here (t(0.975, 1) = 12.7062, t(0.975, 2) = 4.3027, t(0.975, 4) =
2.7764), not taken from the code under test."""
import json
import math

import pytest

from utils.report import claims, finals

T1, T2, T4 = 12.706204736174698, 4.302652729911275, 2.7764451051977987


def test_two_seeds_use_the_wide_quantile_of_one_degree_of_freedom():
    """0.30 and 0.32: mean 0.31, sd 0.014142, half-width 12.7062 x 0.014142 / sqrt(2) = 0.12706.
    Catches the normal quantile (1.96) or the population sd (ddof 0) in place of Student's t."""
    mean, low, high, n = claims.interval([0.30, 0.32])
    half = T1 * math.sqrt(0.0002) / math.sqrt(2)
    assert n == 2 and mean == pytest.approx(0.31)
    assert (low, high) == (pytest.approx(0.31 - half), pytest.approx(0.31 + half))
    assert claims.verdict(low, high, "sign", side=1) == "holds"
    assert claims.verdict(low, high, "sign", side=-1) == "fails"  # the paper on the other side of 0


def test_an_interval_that_straddles_zero_is_inconclusive():
    """0.1, 0.2, 0.3: mean 0.2, sd 0.1, half-width 4.3027 x 0.1 / sqrt(3) = 0.24841: [-0.0484, 0.4484].
    Catches a verdict read from the mean's sign alone."""
    mean, low, high, n = claims.interval([0.1, 0.2, 0.3])
    assert (low, high) == (pytest.approx(0.2 - T2 * 0.1 / math.sqrt(3)), pytest.approx(0.2 + T2 * 0.1 / math.sqrt(3)))
    assert low < 0 < high
    assert claims.verdict(low, high, "sign", side=1) == "inconclusive"
    assert claims.verdict(low, high, "sign", side=-1) == "inconclusive"


def test_five_seeds():
    """1, 2, 3, 4, 5 (x 0.01): mean 0.03, sd 0.015811, half-width 2.7764 x 0.015811 / sqrt(5)."""
    mean, low, high, n = claims.interval([0.01, 0.02, 0.03, 0.04, 0.05])
    half = T4 * math.sqrt(0.00025) / math.sqrt(5)
    assert n == 5 and (low, high) == (pytest.approx(0.03 - half), pytest.approx(0.03 + half))


def test_one_seed_has_no_interval_and_none_no_mean():
    """Catches a verdict from a single seed."""
    assert claims.interval([0.2]) == (0.2, None, None, 1)
    assert claims.interval([]) == (None, None, None, 0)
    assert claims.verdict(None, None, "sign") == "inconclusive"


@pytest.mark.parametrize("low, high, expected", [
    (-0.004, 0.006, "holds"),  # the whole interval within ±0.01
    (0.012, 0.03, "fails"),  # wholly above +0.01
    (-0.03, -0.011, "fails"),  # wholly below -0.01
    (-0.005, 0.02, "inconclusive"),  # crosses +0.01
])
def test_a_level_claim_is_judged_against_its_tolerance(low, high, expected):
    """Catches "level" judged as a sign, or the tolerance dropped."""
    assert claims.verdict(low, high, "level", tolerance=0.01) == expected


@pytest.mark.parametrize("low, high, expected", [(-0.008, 0.02, "holds"), (-0.05, -0.02, "fails"),
                                                 (-0.02, 0.01, "inconclusive")])
def test_not_below_allows_the_tolerance(low, high, expected):
    assert claims.verdict(low, high, "not below", tolerance=0.01) == expected


def test_rows_pair_by_seed_and_skip_unpaired_seeds():
    """cascade - flat at 4 bits from seeds 0 and 1 only (seed 2 has no flat run): 0.2 and 0.1.
    Catches differences of means over unpaired seeds."""
    def record(method, seed, value):
        return {"dataset": "cifar10", "method": method, "bits": 4, "preset": "cpu-pretrained",
                "backbone": "mobilenet_v2", "device": "cpu", "seed": seed,
                "metrics": {"map_tie_aware": value, "map_at_5000": value}}
    records = [record("MAH-flat", 0, 0.5), record("MAH-cascade", 0, 0.7), record("MAH-flat", 1, 0.6),
               record("MAH-cascade", 1, 0.7), record("MAH-cascade", 2, 0.1)]
    b1 = next(r for r in claims.mah_rows(records) if r["id"] == "B1")
    assert b1["n"] == 2 and b1["mean"] == pytest.approx(0.15)
    assert claims.ranges(["A1", "A2", "A3", "D1", "E1", "E3"]) == "A1-A3, D1, E1, E3"


def test_only_runs_of_the_declared_regime_are_paired():
    """B1 (cascade - flat, 4 bits) from the CPU runs of seeds 0 and 1: 0.2 and 0.1, mean 0.15. A
    pair run on a GPU (seed 3: 0.7) and one with another backbone under the same preset (seed 2:
    0.5) are other series; M1 likewise from MMHH - DCH on the CPU, seeds 0 and 1: 0.1 and 0.3.
    Catches the claims pairing every run of the headline preset, whatever its device or network."""
    def record(method, seed, value, **other):
        return {"dataset": "cifar10", "method": method, "bits": 4, "preset": "cpu-pretrained",
                "backbone": "mobilenet_v2", "device": "cpu", "seed": seed,
                "metrics": {"map_tie_aware": value, "map_at_5000": value}, **other}
    gpu, resnet = {"device": "NVIDIA H100 80GB HBM3"}, {"backbone": "resnet18"}
    records = [record("MAH-flat", 0, 0.5), record("MAH-cascade", 0, 0.7), record("MAH-flat", 1, 0.6),
               record("MAH-cascade", 1, 0.7), record("MAH-flat", 3, 0.2, **gpu), record("MAH-cascade", 3, 0.9, **gpu),
               record("MAH-flat", 2, 0.1, **resnet), record("MAH-cascade", 2, 0.6, **resnet)]
    b1 = next(r for r in claims.mah_rows(records) if r["id"] == "B1")
    assert b1["n"] == 2 and b1["mean"] == pytest.approx(0.15)
    runs = [mmhh("MMHH", 0, 0.6), mmhh("DCH", 0, 0.5, weight="auto"), mmhh("MMHH", 1, 0.8),
            mmhh("DCH", 1, 0.5, weight="auto"), {**mmhh("MMHH", 2, 0.9), **gpu},
            {**mmhh("DCH", 2, 0.1, weight="auto"), **gpu}]
    m1 = {r["id"]: r for r in claims.mmhh_rows(runs, grid({"MMHH": 1, "DCH": 5}))}["M1"]
    assert m1["n"] == 2 and m1["mean"] == pytest.approx(0.2)


def test_a_cell_whose_seeds_ran_at_different_commits_is_marked():
    """Catches the marker dropped, or a run from uncommitted changes on the same commit counted as
    another commit."""
    from utils.report import glance

    assert not glance.mixed({0: {"git_commit": "abc"}, 1: {"git_commit": "abc-dirty"}})
    assert glance.mixed({0: {"git_commit": "abc"}, 1: {"git_commit": "def"}})


def test_learning_curves_average_the_seeds_at_the_iterations_all_evaluated(tmp_path, monkeypatch):
    """Two ADSH seeds at 4 bits, curves {5: 0.2, 10: 0.4} and {5: 0.3, 10: 0.5, 15: 0.6}: the mean
    line is at 5 and 10 only (0.25, 0.45), and each seed's own curve is drawn whole beside it.
    Catches a mean over curves of unequal length, iterations one seed lacks drawn from the other
    alone, or a seed's curve dropped or cut to the common iterations."""
    from test_report import figures_made
    from utils.report import collect, figures

    made = figures_made(monkeypatch)

    def record(seed, curve):
        return {"dataset": "cifar10", "method": "ADSH", "bits": 4, "preset": "cpu-pretrained",
                "backbone": "mobilenet_v2", "device": "cpu", "seed": seed, "metrics": {},
                "curve": [{"iteration": t, "map_tie_aware": v} for t, v in curve.items()]}
    series = collect.series_of([record(0, {5: 0.2, 10: 0.4}), record(1, {5: 0.3, 10: 0.5, 15: 0.6})])
    assert figures.draw_curves(str(tmp_path / "c.png"), "cifar10", series)
    (line,) = [x for x in made[0].axes[0].lines if not x.get_label().startswith("_")]
    assert line.get_label() == "ADSH, mean of 2 seeds"
    assert list(line.get_xdata()) == [5, 10] and list(line.get_ydata()) == pytest.approx([0.25, 0.45])
    seeds = sorted((list(x.get_xdata()), list(x.get_ydata())) for x in made[0].axes[0].lines if x is not line)
    assert seeds == [([5, 10], pytest.approx([0.2, 0.4])), ([5, 10, 15], pytest.approx([0.3, 0.5, 0.6]))]
    assert not made[0].axes[1].lines  # no 12-bit run
    assert not figures.draw_curves(str(tmp_path / "none.png"), "cifar10",
                                   collect.series_of([{**record(0, {}), "curve": []}]))


def mmhh(method, seed, value, gamma=5.0, weight="1", optimizer="adam", rate=0.0, protocol="deephash", opt_test=False,
         dataset="cifar10"):
    """A 32-bit cpu-pretrained MMHH-family record (HashNet's sigmoid_param is gamma / 32)."""
    return {"dataset": dataset, "method": method, "bits": 32, "preset": "cpu-pretrained", "seed": seed,
            "backbone": "MobileNetV2Fc", "device": "cpu",
            "args": {"similar_weight_type": weight, "gamma": gamma, "sigmoid_param": gamma / 32,
                     "optimizer": optimizer},
            "protocol": {"protocol": protocol, "label_noise": rate},
            "metrics": {"map_within_radius": value, "opt_test": opt_test}}


def grid(best):
    """The eight tuning rows of each loss on CIFAR-10, row `best[loss]` scoring highest (0.8,
    the others 0.5): the rows the claims must use."""
    rows = []
    for loss, chosen in best.items():
        for row in range(1, 9):
            r = mmhh(loss, 0, 0.8 if row == chosen else 0.5, gamma=(5.0, 10.0, 20.0, 40.0)[(row - 1) % 4],
                     weight="1" if row <= 4 else "auto")
            rows.append({**r, "protocol": {"eval_on": "val"}})
    return rows


def test_mmhh_claims_use_the_chosen_configurations_only_and_pair_by_seed():
    """MMHH chosen at row 1 (gamma 5, weight 1), DCH at row 5 (gamma 5, auto), HashNet at row 6
    (sigmoid 10/32, auto). M1 = MMHH - DCH over seeds 0-2: 0.1, 0.2, 0.3 -> mean 0.2, half-width
    4.3027 x 0.1 / sqrt(3) = 0.2484 (inconclusive); an untuned MMHH run (gamma 10), an --opt-test
    record and a DCH run at weight 1 are ignored, and seed 3 (no DCH run) is unpaired. M3 (against
    HashNet) has no runs, MMHH without margin is not chosen (M5 none). Under the released
    optimiser M1r: 0.05, 0.052 -> mean 0.051, half-width 12.7062 x 0.0014142 / sqrt(2) =
    0.0127: holds. Catches runs of other settings mixed into a claim (the
    ignored values would move the mean), pairing by position, and the optimisers mixed."""
    val = grid({"MMHH": 1, "DCH": 5, "Hamming": 6})
    runs = [mmhh("MMHH", s, v) for s, v in enumerate((0.6, 0.7, 0.8, 0.9))]
    runs += [mmhh("DCH", s, v, weight="auto") for s, v in enumerate((0.5, 0.5, 0.5))]
    runs += [mmhh("MMHH", 0, 0.0, gamma=10.0), mmhh("MMHH", 1, 0.0, opt_test=True), mmhh("DCH", 2, 0.9)]
    runs += [mmhh("MMHH", s, 0.6 + d, optimizer="sgd") for s, d in ((0, 0.05), (1, 0.052))]
    runs += [mmhh("DCH", s, 0.6, weight="auto", optimizer="sgd") for s in (0, 1)]
    rows = {r["id"]: r for r in claims.mmhh_rows(runs, val)}
    m1 = rows["M1"]
    assert (m1["n"], m1["mean"], m1["verdict"]) == (3, pytest.approx(0.2), "inconclusive")
    assert m1["low"] == pytest.approx(0.2 - T2 * 0.1 / math.sqrt(3))
    assert rows["M3"]["verdict"] == rows["M5"]["verdict"] == "no runs yet" and rows["M2"]["n"] == 0
    m1r = rows["M1r"]
    assert m1r["n"] == 2 and m1r["mean"] == pytest.approx(0.051) and m1r["verdict"] == "holds"
    assert m1r["low"] == pytest.approx(0.051 - T1 * math.sqrt(2e-6) / math.sqrt(2))
    assert "note" not in m1r  # holds beside inconclusive: not a dependence on the optimiser
    assert list(rows)[:6] == ["M1", "M2", "M3", "M4", "M5", "M6"] and list(rows)[6] == "M1r"


def test_a_verdict_that_flips_with_the_optimiser_is_marked():
    """Adam: MMHH - DCH = 0.1, 0.11 (holds); SGD: -0.1, -0.11 (fails): M1r says the verdict
    depends on the optimiser, in the table too. Catches the mark dropped, or set on a decided
    verdict beside an inconclusive one."""
    val = grid({"MMHH": 1, "DCH": 1})
    runs = [mmhh("MMHH", s, 0.5 + d) for s, d in ((0, 0.1), (1, 0.11))] + [mmhh("DCH", s, 0.5) for s in (0, 1)]
    runs += [mmhh("MMHH", s, 0.5 - d, optimizer="sgd") for s, d in ((0, 0.1), (1, 0.11))]
    runs += [mmhh("DCH", s, 0.5, optimizer="sgd") for s in (0, 1)]
    rows = {r["id"]: r for r in claims.mmhh_rows(runs, val)}
    assert (rows["M1"]["verdict"], rows["M1r"]["verdict"]) == ("holds", "fails")
    assert rows["M1r"]["note"] == "depends on the optimiser"
    assert any(line.endswith("| fails (depends on the optimiser) |") for line in claims.claims_table([rows["M1r"]]))


def test_the_retained_share_is_taken_within_each_seed():
    """Label noise 0.2. MMHH: clean 0.8, 0.6, noisy 0.4, 0.3 -> keeps 0.5, 0.5; DCH: clean 0.8,
    0.5, noisy 0.6, 0.25 -> keeps 0.75, 0.5. N5 (MMHH degrades less than DCH at 0.2) = -0.25,
    0.0: mean -0.125. N1 (MMHH - DCH at 0.2) = -0.2, 0.05. Catches the share taken of the mean
    clean MAP over seeds (0.4/0.7, 0.3/0.7: another N5) or the rows' rates swapped."""
    val = grid({"MMHH": 1, "DCH": 1})
    runs = [mmhh("MMHH", 0, 0.8), mmhh("MMHH", 1, 0.6), mmhh("MMHH", 0, 0.4, rate=0.2), mmhh("MMHH", 1, 0.3, rate=0.2)]
    runs += [mmhh("DCH", 0, 0.8), mmhh("DCH", 1, 0.5), mmhh("DCH", 0, 0.6, rate=0.2), mmhh("DCH", 1, 0.25, rate=0.2)]
    rows = {r["id"]: r for r in claims.mmhh_rows(runs, val)}
    assert rows["N5"]["mean"] == pytest.approx(-0.125) and rows["N5"]["n"] == 2
    assert rows["N1"]["mean"] == pytest.approx(-0.075) and rows["N2"]["n"] == rows["N6"]["n"] == 0
    assert "0.2" in rows["N1"]["claim"] and "0.4" in rows["N2"]["claim"]


def test_rows_whose_sign_flips_under_opt_test_are_named_with_their_opt_test_figures():
    """Default convention: MMHH 0.70, 0.72 against DCH 0.60, 0.61: M1 = +0.105 (holds). Under
    --opt-test: MMHH 0.70, 0.71 against DCH 0.74, 0.76: -0.04, -0.05, mean -0.045, half-width
    12.7062 x 0.0070711 / sqrt(2) = 0.0635: [-0.1085, +0.0185], 2 of the 5 declared seeds. The
    note names M1 with those figures; with --opt-test's DCH at 0.60, 0.61 it says every row keeps
    its sign; with no MMHH row judged it says nothing. Catches --opt-test records pooled into the
    declared rows (M1 would move), the note comparing a convention with itself (no flip ever),
    and the sign test inverted (rows that keep their sign named); and the README's note giving
    figures in place of the link to them."""
    val = grid({"MMHH": 1, "DCH": 1})
    runs = [mmhh("MMHH", 0, 0.70), mmhh("MMHH", 1, 0.72), mmhh("DCH", 0, 0.60), mmhh("DCH", 1, 0.61),
            mmhh("MMHH", 0, 0.70, opt_test=True), mmhh("MMHH", 1, 0.71, opt_test=True)]
    flipped = runs + [mmhh("DCH", 0, 0.74, opt_test=True), mmhh("DCH", 1, 0.76, opt_test=True)]
    kept = runs + [mmhh("DCH", 0, 0.60, opt_test=True), mmhh("DCH", 1, 0.61, opt_test=True)]
    m1 = next(r for r in claims.mmhh_rows(flipped, val) if r["id"] == "M1")
    assert (m1["mean"], m1["verdict"]) == (pytest.approx(0.105), "holds")
    [note] = claims.convention_note(claims.mmhh_rows(flipped, val), {"tuned": flipped, "validation": val},
                                    "metrics.md")
    assert note.endswith("which decides nothing, these rows' mean differences take the other sign: M1 -0.0450 "
                         "[-0.1085, +0.0185], 2 of 5 seeds.")
    assert "[metrics](metrics.md)" in note
    [note] = claims.convention_note(claims.mmhh_rows(kept, val), {"tuned": kept, "validation": val}, "metrics.md")
    assert note.endswith("every judged MMHH row's mean difference keeps its sign.")
    assert claims.convention_note(claims.mmhh_rows([], val), {"tuned": [], "validation": val}, "metrics.md") == []
    glance = claims.claims_glance({"tuned": flipped, "validation": val, "mah": [], "failed": []})
    # the README names the row and links to its figures
    assert "take the other sign: M1 ([figures](docs/claims.md#results))." in glance and "-0.0450" not in glance


def test_ranges_keep_suffixed_ids_apart():
    """Catches M1r joined into a run of M ids (or the suffix lost)."""
    assert claims.ranges(["M1", "M2", "M1r", "M2r", "M3r", "N1"]) == "M1-M2, M1r-M3r, N1"


def full(record, backbone="MobileNetV2Fc"):
    """A record as results files hold it (what collect.load_records validates)."""
    m = {"radius": 2, "map_topk": record["metrics"]["map_within_radius"], "topk": -1, **record["metrics"]}
    return {**record, "paper": "MMHH", "backbone": backbone, "device": "cpu", "seconds": 60.0, "metrics": m}


def test_final_runs_are_tabled_apart_from_other_settings_of_the_loss(tmp_path):
    """MMHH chosen at row 1 (gamma 5, weight 1). Seeds 0 and 1 at row 1 score 0.6 and 0.7: mean
    0.65, half-width 12.7062 x 0.070711 / sqrt(2) = 0.6353, so [0.0147, 1.2853], cut at 1 (a MAP
    cannot exceed it): '0.6500 [0.0147, 1.0000] (2)';
    the --opt-test record of seed 0 (0.66) and an SGD run (0.5) fill their own row and column;
    an untuned run (gamma 10, 0.1234) stays in the ordinary MMHH tables and out of this one.
    Catches the untuned run pooled with the tuned ones (another mean), the conventions or the
    optimisers mixed, a normal quantile in place of Student's t, and the interval left uncut."""
    from utils.report import collect

    folder = tmp_path / "results"
    folder.mkdir()
    runs = grid({"MMHH": 1}) + [mmhh("MMHH", 0, 0.6), mmhh("MMHH", 1, 0.7), mmhh("MMHH", 0, 0.66, opt_test=True),
                                mmhh("MMHH", 0, 0.5, optimizer="sgd"), mmhh("MMHH", 0, 0.1234, gamma=10.0)]
    for i, r in enumerate(runs):
        (folder / f"{i:02d}.json").write_text(json.dumps(full(r)))
    records = collect.load_records(str(folder))
    assert sorted(r["metrics"]["map_within_radius"] for r in records["tuned"]) == [0.6, 0.66, 0.7]
    assert [r["metrics"]["map_within_radius"] for r in records["released"]] == [0.5]
    assert [r["metrics"]["map_within_radius"] for r in records["mmhh"]] == [0.1234]
    text = finals.finals_section(records)
    assert "| MAP@H<=2, MMHH | 0.6500 [0.0147, 1.0000] (2) | 0.5000 (1) |" in text
    assert "| MAP@H<=2, --opt-test, MMHH | 0.6600 (1) | no run |" in text
    assert "| | clean | clean, released optimiser |" in text.replace("|  |", "| |") and "0.1234" not in text
    assert finals.finals_section({"tuned": [], "released": []}).endswith("No final run is filed yet.")


def test_the_readme_shows_the_clean_final_runs_one_row_per_loss():
    """MMHH seeds 0 and 1 at 0.6 and 0.7 on clean data: '0.6500 [0.0147, 1.0000] (2)' (as in
    the final-runs table); a noisy run (0.1) and one with the released optimiser (0.2) stay out;
    DCH's one run fills its row, the losses without runs get none. Catches the noisy or SGD
    runs pooled into the clean means, or the quantities' columns out of their header's order."""
    val = grid({"MMHH": 1, "DCH": 1})
    runs = [mmhh("MMHH", 0, 0.6), mmhh("MMHH", 1, 0.7), mmhh("MMHH", 0, 0.1, rate=0.2),
            mmhh("MMHH", 0, 0.2, optimizer="sgd"), mmhh("DCH", 0, 0.55), mmhh("DCH", 0, 0.45, opt_test=True)]
    runs = [full(r) for r in runs]
    for r in runs:
        r["metrics"]["map_topk"] = r["metrics"]["map_within_radius"] / 2
    records = {"tuned": [r for r in runs if r["args"]["optimizer"] == "adam"], "validation": val}
    (text,) = finals.finals_glance(records)
    lines = text.splitlines()
    assert lines[2] == ("| loss | MAP@H<=2 | MAP@H<=2, --opt-test | MAP@TopK | radius-2 ball, share of the database | "
                        "share of queries with an empty ball |")
    assert "| MMHH | 0.6500 [0.0147, 1.0000] (2) | no run | 0.3250 [0.0073, 0.6427] (2) | no run | no run |" in lines
    assert "| DCH | 0.5500 (1) | 0.4500 (1) | 0.2750 (1) | no run | no run |" in lines
    assert len(lines) == 6 and finals.finals_glance({"tuned": []}) == []


def test_final_runs_list_their_commands_under_the_table():
    """Each final run's command once, by loss (the declared order, not the alphabet), column,
    seed, the --opt-test command after its training. Catches the list in file order or sorted
    by name (DCH first), or a command repeated for two records that share it."""
    val = grid({"MMHH": 1, "DCH": 1})
    runs = [{**full(mmhh(loss, seed, 0.5, optimizer=opt, opt_test=opt_test)),
             "command": f"{loss} {opt} {seed} {opt_test}"}
            for loss in ("DCH", "MMHH") for opt in ("sgd", "adam") for seed in (1, 0) for opt_test in (True, False)]
    runs += [{**full(mmhh("DCH", 2, 0.5)), "command": "DCH adam 1 False"}]  # a command two records share
    records = {"tuned": [r for r in runs if r["args"]["optimizer"] == "adam"],
               "released": [r for r in runs if r["args"]["optimizer"] == "sgd"], "validation": val}
    text = finals.finals_section(records)
    listed = [line.strip() for line in text.split("<details>")[1].splitlines() if line.startswith("    ")]
    assert listed == [f"{loss} {opt} {seed} {opt_test}" for loss in ("MMHH", "DCH") for opt in ("adam", "sgd")
                      for seed in (0, 1) for opt_test in (False, True)]
    assert "<summary>The 16 commands behind this table</summary>" in text


def test_an_estimate_of_a_share_stays_within_0_and_1():
    """Empty-ball shares 0, 0 and 0.015 over three seeds: mean 0.005, standard deviation
    sqrt((2 x 0.005^2 + 0.01^2) / 2) = 0.0086603, half-width 4.3027 x 0.0086603 / sqrt(3) =
    0.0215, so [-0.0165, 0.0265], cut at 0: '0.005 [0.000, 0.027] (3)'. Catches the cut dropped
    (a negative share printed) or applied to the mean instead of the interval."""
    assert finals.estimate([0.0, 0.0, 0.015], 3) == "0.005 [0.000, 0.027] (3)"
    assert finals.estimate([0.4], 3) == "0.400 (1)"


def cascade_flat_records(dropped=None):
    """MAH-flat and MAH-cascade on CIFAR-10 at 4 and 6 bits, seeds 0-2 (flat 0.5, 0.6, 0.4; cascade
    0.1 x (seed + 1) above), less the (bits, seed) `dropped`; and seed 0 of both at 6 bits on
    MIRFlickr-25K (0.80, 0.81)."""
    records = [mah("cifar10", m, b, s, v + (0.1 * (s + 1) if m == "MAH-cascade" else 0))
               for m in ("MAH-flat", "MAH-cascade") for b in (4, 6) for s, v in enumerate((0.5, 0.6, 0.4))
               if (b, s) != dropped]
    return records + [mah("flickr25k", "MAH-flat", 6, 0, 0.8), mah("flickr25k", "MAH-cascade", 6, 0, 0.81)]


def test_a_verdict_on_fewer_seeds_than_declared_says_it_is_interim():
    """docs/claims.md declares seeds 0-4 at 4 bits, 0-2 at 6 bits (CIFAR-10) and seed 0 alone at
    6 bits on MIRFlickr-25K. cascade - flat at 6 bits over seeds 0-2 (0.1, 0.2, 0.3) is complete:
    '3 seeds'; at 4 bits over seeds 0-2 it is '3 of 5 seeds', and the glance counts it as
    interim; MIRFlickr at 6 bits, one seed of one declared: '1 seed', not interim. Catches the
    declared counts of two lengths swapped, or every row called interim (or none)."""
    records = cascade_flat_records()
    rows = {r["id"]: r for r in claims.mah_rows(records)}
    assert claims.ours(rows["B2"]).endswith("], 3 seeds") and not claims.interim(rows["B2"])
    assert claims.ours(rows["B1"]).endswith("], 3 of 5 seeds") and claims.interim(rows["B1"])
    assert claims.ours(rows["C2"]) == "+0.0100, 1 seed" and not claims.interim(rows["C2"])
    # judged: B1, B2, B6 (4 against 6 bits: 3 of the 3 both declare), C2 (B10 waits for B7-B9);
    # interim: B1
    head = claims.claims_glance({"mah": records}).splitlines()[0]
    # a single interim row in the singular: a plural verb here is the wrong change caught
    assert head.endswith("of 4 judged, 0 hold, 0 fail, 4 are inconclusive; 1 of them rests on fewer seeds than "
                         "declared (\"n of N seeds\"), so its verdict is interim.")


def test_several_interim_verdicts_are_named_in_the_plural():
    """The records of the test above without seed 2 at 6 bits: B1 stays 3 of 5 seeds, B2 becomes
    2 of 3, and B6 (4 against 6 bits) pairs seeds 0 and 1 only, 2 of the 3 both declare; C2
    (one seed of one) is complete. So 3 of the 4 judged rows are interim, each inconclusive (two
    or three seeds leave the interval wide). Catches the singular kept for a count above one
    ("rests", "its verdict is"), or the interim count taken as the judged count."""
    head = claims.claims_glance({"mah": cascade_flat_records(dropped=(6, 2))}).splitlines()[0]
    assert head.endswith("of 4 judged, 0 hold, 0 fail, 4 are inconclusive; 3 of them rest on fewer seeds than "
                         "declared (\"n of N seeds\"), so their verdicts are interim.")


def test_a_rerun_is_shown_beside_the_run_it_replaced():
    """A MAH record filed with --replace (its "replaces": the old commit and metrics) gives one row:
    0.4100 then, 0.4250 now, +0.0150; an MMHH one is compared on MAP@H<=2 (0.70 -> 0.69, -0.0100);
    no replaced record, no section. Catches the difference taken the other way round, the wrong
    metric compared, or the section written with nothing to say."""
    mah = {"dataset": "cifar10", "method": "MAH-flat", "bits": 4, "seed": 0, "git_commit": "b4a7513aaaa",
           "metrics": {"map_tie_aware": 0.425, "map": 0.3},
           "replaces": {"git_commit": "08e925fbbbb", "metrics": {"map_tie_aware": 0.41, "map": 0.2}}}
    mmhh_rerun = {**mmhh("DCH", 1, 0.69), "git_commit": "5c764ef", "replaces": {"git_commit": "0902d65",
                                                                                "metrics": {"map_within_radius": 0.7}}}
    lines = claims.reruns({"mah": [mah, {**mah, "replaces": None, "seed": 1}], "tuned": [mmhh_rerun]})
    assert lines[-2:] == ["| CIFAR-10, DCH, 32 bits, seed 1 | `0902d65` -> `5c764ef` | MAP@H<=2 | 0.7000 | 0.6900 "
                          "| -0.0100 |",
                          "| CIFAR-10, MAH-flat, 4 bits, seed 0 | `08e925f` -> `b4a7513` | tie-aware MAP | 0.4100 | "
                          "0.4250 | +0.0150 |"]
    assert "(2)" in lines[1]
    assert claims.reruns({"mah": [{**mah, "replaces": None}]}) == []


def mah(dataset, method, bits, seed, value, commit="abc"):
    """A cpu-pretrained MAH-family record whose primary metrics (both data sets') are `value`."""
    return {"dataset": dataset, "method": method, "bits": bits, "preset": "cpu-pretrained",
            "backbone": "mobilenet_v2", "device": "cpu", "seed": seed, "git_commit": commit,
            "metrics": {"map_tie_aware": value, "map_at_5000": value}}


def test_a_row_where_the_figure_contradicts_the_text_says_so():
    """The paper's figure puts MAH-flat 0.02 below ADSH at 4 bits (0.50 against 0.52), against
    its text: A1 is judged on that side (< 0) and its words say so; at 8 bits (+0.07) the row
    reads as the text. Flat 0.40, 0.41 below ADSH 0.50, 0.50: differences -0.10, -0.09 ->
    [-0.095 ± 12.7062 x 0.0070711 / sqrt(2)] = [-0.1585, -0.0315]: holds on that side. Catches
    the row worded as 'beats' while judged on the side < 0, or judged on the text's side."""
    records = [mah("cifar10", m, 4, s, v) for m, vals in (("MAH-flat", (0.40, 0.41)), ("ADSH", (0.50, 0.50)))
               for s, v in enumerate(vals)]
    rows = {r["id"]: r for r in claims.mah_rows(records)}
    assert rows["A1"]["claim"] == "MAH-flat behind ADSH, CIFAR-10, 4 bits (figure; the text says ahead)"
    assert rows["A1"]["figure"] == "≈-0.0200" and rows["A1"]["verdict"] == "holds"
    assert rows["A1"]["high"] == pytest.approx(-0.095 + T1 * math.sqrt(0.00005) / math.sqrt(2))
    assert rows["A3"]["claim"] == "MAH-flat beats ADSH, CIFAR-10, 8 bits"


def test_only_the_declared_seeds_are_paired_and_sides_without_a_common_seed_are_no_pair():
    """cascade - flat at 6 bits (seeds 0-2 declared): seeds 0-2 differ by 0.1, a seed 3 by 0.9
    is no declared seed and is left out: mean 0.1 on 3 seeds, not 0.3 on 4. On MIRFlickr-25K at
    6 bits (seed 0 declared) a seed-1 pair is left out too: no runs. At 8 bits flat has seed 0,
    cascade seed 1: both ran, no seed in common: 'no pair', named as such in the glance. Catches
    extra seeds entering a mean, and a row whose sides ran reported as having no runs."""
    records = [mah("cifar10", "MAH-flat", 6, s, 0.5) for s in range(4)]
    records += [mah("cifar10", "MAH-cascade", 6, s, 0.6 if s < 3 else 1.4) for s in range(4)]
    records += [mah("flickr25k", "MAH-flat", 6, 1, 0.8), mah("flickr25k", "MAH-cascade", 6, 1, 0.81)]
    records += [mah("cifar10", "MAH-flat", 8, 0, 0.5), mah("cifar10", "MAH-cascade", 8, 1, 0.6)]
    rows = {r["id"]: r for r in claims.mah_rows(records)}
    assert (rows["B2"]["n"], rows["B2"]["mean"]) == (3, pytest.approx(0.1))
    assert rows["C2"]["n"] == 0 and rows["C2"]["verdict"] == "no runs yet"
    assert rows["B3"]["n"] == 0 and rows["B3"]["verdict"] == "no pair"
    tail = claims.claims_glance({"mah": records}).splitlines()
    assert "No pair yet (both sides ran, no seed in common): B3." in tail
    assert not any(line.startswith("No runs yet:") and "B3" in line.split(":")[1].split(", ") for line in tail)


def test_b10_is_interim_while_any_of_b6_to_b9_is():
    """B6 (4 against 6 bits) has its 3 declared seeds, B7 (4 against 8 bits) 3 of its 5: B10,
    judged on B6-B9 together, is interim, and says whose seeds. Catches B10's count taken as the
    least of the rows' counts over the least of the declared, which calls it complete."""
    def value(method, bits, seed):
        return (0.5, 0.6, 0.4)[seed] + (0.1 * seed + 0.2 * (bits == 4)) * (method == "MAH-cascade")

    records = [mah("cifar10", m, b, s, value(m, b, s))
               for m in ("MAH-flat", "MAH-cascade") for b in (4, 6, 8, 10, 12) for s in range(3)]
    rows = {r["id"]: r for r in claims.mah_rows(records)}
    assert claims.interim(rows["B7"]) and not claims.interim(rows["B6"])
    assert claims.interim(rows["B10"])
    assert claims.ours(rows["B10"]) == "seeds of B6-B9: 3 of 3, 3 of 5, 3 of 3, 3 of 5"


def test_a_pair_whose_runs_ran_at_two_commits_is_marked():
    """cascade - flat at 4 bits: seed 0's two runs at commits abc and def, seed 1's at abc and
    abc-dirty (uncommitted changes on abc: the same commit). B1 is marked, and the glance says
    what the mark means; B2, whose pairs each ran at one commit although its seeds ran at two,
    is not. Catches the mark dropped, set per cell across seeds instead of per pair, or set
    for uncommitted changes."""
    records = [mah("cifar10", "MAH-flat", 4, 0, 0.5, "abc"), mah("cifar10", "MAH-cascade", 4, 0, 0.6, "def"),
               mah("cifar10", "MAH-flat", 4, 1, 0.5, "abc"), mah("cifar10", "MAH-cascade", 4, 1, 0.7, "abc-dirty")]
    records += [mah("cifar10", m, 6, s, 0.5 + 0.1 * (m == "MAH-cascade"), c)
                for m in ("MAH-flat", "MAH-cascade") for s, c in ((0, "abc"), (1, "def"))]
    rows = {r["id"]: r for r in claims.mah_rows(records)}
    assert claims.ours(rows["B1"]).endswith(", 2 of 5 seeds" + claims.OTHER_COMMITS)
    assert claims.ours(rows["B2"]).endswith(", 2 of 3 seeds")
    glance = claims.claims_glance({"mah": records})
    mark = f"{claims.OTHER_COMMITS}: one or more of the row's pairs ran at two commits"
    assert glance.splitlines()[-1].startswith(mark)


def test_a_figure_difference_of_exactly_the_resolution_is_level(monkeypatch):
    """docs/claims.md: a read-off difference within ±0.01 makes a level claim. 0.91 - 0.90 is
    0.01 (0.010000000000000009 in floating point): level; 0.912 - 0.90 is a sign claim. Catches
    a strict comparison, or one the rounding of the subtraction decides."""
    figure = {m: dict(v) for m, v in claims.PUBLISHED_MAP5000.items()}
    figure[("flickr25k", "MAH-flat")].update({4: 0.90, 6: 0.90})
    figure[("flickr25k", "MAH-cascade")].update({4: 0.91, 6: 0.912})
    monkeypatch.setattr(claims, "PUBLISHED_MAP5000", figure)
    rows = {r["id"]: r for r in claims.mah_rows([])}
    assert rows["C1"]["claim"].startswith("cascade level with flat")
    assert rows["C2"]["claim"].startswith("cascade beats flat")


def test_a_failed_seed_drops_out_and_is_named():
    """cascade - flat at 4 bits over seeds 0-4 with seed 3's flat run failed: the four pairs left
    (0.1, 0.2, 0.1, 0.2) give mean 0.15; the seed counts as made, so the row is not interim, and
    it names the failed seed. Catches a failed seed left unreported, or counted as missing (the
    verdict would stay interim for ever)."""
    records = [mah("cifar10", "MAH-flat", 4, s, 0.5) for s in (0, 1, 2, 4)]
    records += [mah("cifar10", "MAH-cascade", 4, s, 0.6 + 0.1 * (s % 2 == 1 or s == 4)) for s in range(5)]
    rows = {r["id"]: r for r in claims.mah_rows(records, {("cifar10", "MAH-flat", 4, 3): "NaN loss"})}
    b1 = rows["B1"]
    assert (b1["n"], b1["mean"], b1["lost"]) == (4, pytest.approx(0.15), [3])
    assert not claims.interim(b1) and claims.ours(b1).endswith("], 4 seeds (seed 3 failed)")
    assert claims.interim({**b1, "lost": []})  # the same four seeds without the failure: interim


def test_the_ball_note_names_empty_and_crowded_balls_over_the_claims_runs_only():
    """Chosen: MMHH row 1, DCH row 1 (gamma 5, weight 1). Empty-ball shares: clean MMHH 0.04,
    0.06 (mean 0.05, not named), DCH 0.2, 0.3 (0.25, named), under the released optimiser MMHH
    0.5 (named); database shares: clean MMHH 0.3, 0.4 (0.35, named), DCH 0.1 (not). An --opt-test
    record and an untuned DCH run (gamma 10), both at 0.9, and a failed run are left out, and
    with no run over either share there is no line. Catches the limits compared the wrong way,
    the two statistics swapped, a share taken of one seed, and runs outside the claims pooled."""
    def ran(method, seed, empty, share, **other):
        r = mmhh(method, seed, 0.5, **other)
        r["metrics"]["balls"] = {"empty_ball_share": empty, "ball_database_share": share}
        return r
    val = grid({"MMHH": 1, "DCH": 1})
    runs = [ran("MMHH", 0, 0.04, 0.3), ran("MMHH", 1, 0.06, 0.4), ran("DCH", 0, 0.2, 0.1), ran("DCH", 1, 0.3, 0.1),
            ran("MMHH", 0, 0.5, 0.01, optimizer="sgd"), ran("MMHH", 2, 0.9, 0.9, opt_test=True),
            ran("DCH", 2, 0.9, 0.9, gamma=10.0)]
    failed = [{"run": {"kind": "final", "dataset": "cifar10", "optimiser": "adam", "protocol": "standard",
                       "rate": 0.0, "method": "DCH", "seed": 3}, "reason": "NaN loss", "folder": "runs/final/x"}]
    [note] = claims.ball_note({"tuned": runs, "validation": val, "failed": failed})
    assert note == ("Radius-2 balls behind the MMHH rows (default convention, mean over seeds): empty for more than "
                    "10% of the test queries in CIFAR-10, clean: DCH 0.250; CIFAR-10, clean, released optimiser: "
                    "MMHH 0.500; and holding more than 25% of the database in CIFAR-10, clean: MMHH 0.350.")
    calm = [ran("MMHH", 0, 0.05, 0.2), ran("DCH", 0, 0.1, 0.25)]  # at the limits: not past them
    assert claims.ball_note({"tuned": calm, "validation": val, "failed": []}) == []
