"""The MMHH tuning grid's choice (utils.report.grid) by the rule docs/claims.md declares:
highest validation MAP@H<=2, ties within 0.001 to the loss's own setting, else the lowest row."""
from utils.report import grid as grids, tuning


def rec(method, weight, main, score, bits=32, **extra):
    """A tuning record: `main` is gamma, or HashNet's sigmoid_param times K."""
    args = {"similar_weight_type": weight, "gamma": main if method != "Hamming" else 1.0,
            "sigmoid_param": main / bits if method == "Hamming" else 0.3125, "eval_on": "val"}
    return {"paper": "MMHH", "dataset": "cifar10", "method": method, "bits": bits, "args": args, "seed": 0,
            "preset": "cpu-pretrained", "backbone": "MobileNetV2Fc", "device": "cpu",
            "protocol": {"eval_on": "val", "label_noise": 0.0}, **extra,
            "metrics": {"map_within_radius": score, "opt_test": False}}


def full_grid(method, scores):
    """Eight records, rows 1..8 (weight 1 then auto, main 5, 10, 20, 40), with `scores` by row."""
    return [rec(method, w, m, scores[i * 4 + j]) for i, w in enumerate(("1", "auto"))
            for j, m in enumerate((5, 10, 20, 40))]


def test_rows_follow_the_declared_grid():
    """Catches the weight and the parameter swapped in the row number, or HashNet's
    sigmoid_param read without the factor K (row 6 is 10 / K with weight auto)."""
    assert grids.row_of(rec("MMHH", "1", 10, 0.5)) == 2
    assert grids.row_of(rec("DCH", "auto", 20, 0.5)) == 7
    assert grids.row_of(rec("Hamming", "auto", 10, 0.5)) == 6
    assert grids.row_of(rec("MMHH", "1", 7, 0.5)) is None  # off the grid: no row, never chosen


def test_the_best_row_wins_and_ties_go_to_the_own_setting_else_the_lowest_row():
    """Catches a tie tolerance dropped (row 4's 0.6005 beating the own row 2 at 0.5998), the
    own-row preference dropped, or ties broken by the highest row."""
    assert grids.choose({1: 0.3, 2: 0.5998, 3: 0.2, 4: 0.6005}, own=2) == 2
    assert grids.choose({1: 0.3, 2: 0.5, 3: 0.2, 4: 0.6005}, own=2) == 4  # 0.1 behind: not tied
    assert grids.choose({1: 0.6, 3: 0.6009, 5: 0.5}, own=2) == 1  # own row not among the tied
    grid = full_grid("Hamming", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert grids.choices(grid) == {("cifar10", 32, "Hamming"): 8}


def test_no_choice_on_a_partial_grid_and_test_or_noisy_records_are_left_out():
    """Catches a choice made before all eight rows are in, or a noisy-protocol or --opt-test
    record (not the declared metric), or one of another seed or preset, scored as a tuning
    result (their 0.9 would take row 8 from the own row 2); and the data set's key
    ('cifar10') headed in place of its name."""
    records = full_grid("MMHH", [0.5] * 8)[:7]
    noisy = rec("MMHH", "auto", 40, 0.9, protocol={"eval_on": "val", "label_noise": 0.2})
    opt = {**rec("MMHH", "auto", 40, 0.9), "metrics": {"map_within_radius": 0.9, "opt_test": True}}
    assert grids.choices(records + [noisy, opt]) == {}
    # the missing row run at another seed or preset completes no grid: seed 0 at the headline preset is declared
    other = [{**rec("MMHH", "auto", 40, 0.9), "seed": 1}, {**rec("MMHH", "auto", 40, 0.9), "preset": "cpu-small"}]
    assert grids.choices(records + other) == {}
    assert grids.choices(records + other + [rec("MMHH", "auto", 40, 0.4)]) == {("cifar10", 32, "MMHH"): 2}
    text = tuning.tuning_section(records)
    assert "MMHH not yet (7 of 8 rows filed)" in text and "DCH not yet (0 of 8 rows filed)" in text
    assert "**CIFAR-10, 32 bits**, validation MAP@H<=2" in text
    assert "| 8 | auto | 40 | — |" in text
    chosen = tuning.tuning_section(full_grid("MMHH", [0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]))
    assert "MMHH row 2" in chosen and "| 2 | 1 | 10 | **0.5000 ★** |" in chosen


def test_the_grid_lists_its_commands_by_loss_then_row():
    """Catches the commands of records the grid does not score (an --opt-test one) listed, or
    the list in file order rather than by loss (declared order) and row."""
    runs = [{**r, "command": f"{r['method']} row {grids.row_of(r)}"}
            for r in reversed(full_grid("DCH", [0.5] * 8) + full_grid("MMHH", [0.5] * 8)[:2])]
    opt = {**rec("MMHH", "auto", 40, 0.9), "metrics": {"map_within_radius": 0.9, "opt_test": True}, "command": "opt"}
    text = tuning.tuning_section(runs + [opt])
    listed = [line.strip() for line in text.split("<details>")[1].splitlines() if line.startswith("    ")]
    assert listed == ["MMHH row 1", "MMHH row 2"] + [f"DCH row {row}" for row in range(1, 9)]
    assert "<summary>The 10 commands behind this grid</summary>" in text


def test_the_grid_says_what_the_balls_of_each_run_hold():
    """Row 2 of DCH holds 54.3% of the validation database in a ball and no ball is empty;
    row 5 of DCH, 0.1% with 12.5% of the balls empty; a record from before balls were measured
    says n/a. Catches the two shares swapped, a loss's column shifted, or a ball cell under a
    row that has no run."""
    runs = full_grid("DCH", [0.5] * 8)
    runs[1]["metrics"]["balls"] = {"ball_database_share": 0.5432, "empty_ball_share": 0.0}
    runs[4]["metrics"]["balls"] = {"ball_database_share": 0.001, "empty_ball_share": 0.125}
    text = tuning.tuning_section(runs)
    ball_table = text.split("What the radius-2 balls")[1].splitlines()
    assert "| 2 | 1 | 10 | — | — | 0.543 / 0.000 | — |" in ball_table
    assert "| 5 | auto | 5 | — | — | 0.001 / 0.125 | — |" in ball_table
    assert "| 1 | 1 | 5 | — | — | n/a | — |" in ball_table


def test_the_headline_mmhh_table_says_which_losses_ran_untuned():
    """Runs at a configuration the tuning did not choose (or before it chose any) are called
    untuned above the headline table; runs at the chosen one are not. Catches the untuned
    runs shown as if tuned, or the mark kept once the chosen setting's runs are in."""
    from utils.report import glance

    def run(method, weight, main):
        r = rec(method, weight, main, 0.7)
        return {**r, "preset": "cpu-pretrained", "backbone": "MobileNetV2Fc", "device": "cpu", "seed": 0,
                "args": {**r["args"], "eval_on": "test"}, "protocol": {"eval_on": "test", "label_noise": 0.0},
                "metrics": {"map_within_radius": 0.7, "map_topk": 0.6, "opt_test": False}}

    released = [run("MMHH", "1", 10), run("Hamming", "auto", 10)]  # rows 2 and 6
    records = {"mah": [], "mmhh": released, "protocols": [], "validation": []}
    assert "**Untuned**: HashNet loss; MMHH loss ran" in glance.headline_section(records)
    grid = full_grid("MMHH", [0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]) + \
        full_grid("Hamming", [0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1])
    assert "Untuned" not in glance.headline_section({**records, "validation": grid})
    grid = full_grid("MMHH", [0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1]) + \
        full_grid("Hamming", [0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1])
    assert "**Untuned**: MMHH loss ran" in glance.headline_section({**records, "validation": grid})


def test_a_failed_row_completes_the_grid_and_is_never_chosen():
    """MMHH's rows 1 and 3-8 score 0.5 and its own row 2 failed: the grid is complete (7 scored
    + 1 failed) and, all tied, row 1 is chosen: the own-row preference cannot pick a row without
    a score. Without the failure the grid waits. The tuning table says 'failed' in that row.
    Catches a failed row not counted (the loss's final runs would wait forever) or chosen."""
    records = [r for r in full_grid("MMHH", [0.5] * 8) if grids.row_of(r) != 2]
    failed = {("cifar10", 32, "MMHH", 2)}
    assert grids.choices(records) == {}
    assert grids.choices(records, failed) == {("cifar10", 32, "MMHH"): 1}
    text = tuning.tuning_section(records, failed)
    assert "| 2 | 1 | 10 | failed |" in text and "MMHH row 1" in text
