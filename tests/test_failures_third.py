"""Real-world failures, a third set (see test_failures.py): collapsed codes are named after the
evaluation of either method, in one warning line."""
import os

import numpy as np
import pytest
import torch

from test_failures import MAH, entry
from test_index import trained  # noqa: F401 (the fixture)

WARNING = "warning: "


def test_the_collapse_warning_compares_distinct_codes_with_what_must_be_told_apart(capsys):
    """Six items of classes 0, 0, 1, 1, 2, 2: three distinct codes are enough (no line), two are
    not ('only 2 distinct codes, fewer than the 3 classes'), one is 'all 6 ... one code'. With
    two distinct label rows among 10 classes two codes are enough; at 1 bit, two codes are all
    there are. Catches a line for a healthy model, or none for a collapsed one."""
    from utils.retrieval import warn_if_collapsed

    labels = np.array([0, 0, 1, 1, 2, 2])
    three = torch.tensor([[1, 1], [1, 1], [1, -1], [1, -1], [-1, 1], [-1, 1]], dtype=torch.float32)
    two = torch.tensor([[1, 1]] * 4 + [[-1, 1]] * 2, dtype=torch.float32)
    assert warn_if_collapsed(three, labels, 3) == 3 and capsys.readouterr().err == ""
    assert warn_if_collapsed(two, labels, 3) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(WARNING + "the 6 database items have only 2 distinct codes, fewer "
                                                          "than the 3 classes")
    assert warn_if_collapsed(torch.ones(6, 2), labels, 3) == 1
    assert capsys.readouterr().err.startswith(WARNING + "all 6 database items have one code")
    assert warn_if_collapsed(two, np.array([0, 0, 0, 0, 7, 7]), 10) == 2 and capsys.readouterr().err == ""
    assert warn_if_collapsed(two[:, :1], labels, 3) == 2  # 1 bit: +1 and -1, both codes there are
    assert capsys.readouterr().err == ""


def test_test_mmhh_warns_when_every_database_item_has_one_code(trained, tmp_path, monkeypatch):  # noqa: F811
    """test_mmhh.py on a snapshot whose network gives every image the same output: exit 0 and one
    warning line saying all 1,697 database digits have one code. Catches a collapse tested
    without a word."""
    from utils.models import HashModel

    monkeypatch.setattr(HashModel, "forward", lambda self, x: torch.ones(len(x), 16))
    code, out, err = entry("test_mmhh", "--model_path", trained / "snap" / "empty_digits_digits_iter_00003",
                           "--gpu_id", "cpu", "--log_dir", tmp_path, monkeypatch=monkeypatch)
    warnings = [line for line in err if line.startswith(WARNING)]
    assert code == 0 and "MAP" in out, err
    assert len(warnings) == 1 and warnings[0].startswith(WARNING + "all 1697 database items have one code"), err


def test_a_mah_run_warns_exactly_when_its_database_codes_are_too_few(tmp_path, monkeypatch):
    """A MAH smoke run on digits (4 bits, 10 classes): the warning line is there exactly when the
    database codes V the checkpoint holds take fewer than 10 distinct values (counted here as a
    set of rows), and it names that count. Catches the check not made after MAH's evaluation, or
    made on other codes than the database's."""
    out = tmp_path / "run"
    code, _, err = entry("cascade_CIFAR-10", *MAH, "--output-dir", out, monkeypatch=monkeypatch)
    assert code == 0, err
    V = torch.load(out / "checkpoint.pt", weights_only=True)["V"][0]  # 1697 x 4
    distinct = len({tuple(row) for row in V.tolist()})
    warnings = [line for line in err if line.startswith(WARNING)]
    if distinct < 10:
        assert len(warnings) == 1 and f"have only {distinct} distinct codes, fewer than the 10 classes" in warnings[0]
    else:
        assert warnings == [], err
