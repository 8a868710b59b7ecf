"""ADSH, the single-head baseline: a MAH script run with --adsh trains one head of the target
length with the loss of MAH's head 0 and nothing else, and records itself as ADSH.

Each test runs the real loop on the embedded digits with the smoke preset (48 sampled
items, batches of 16) and spies on the loss; the expectations come from the MAH run of the
same seed, whose head 0 sees the same images, initial weights and V in its first batch.
"""
import json
import os

import pytest
import torch

from utils import mah
from utils.errors import UserError
from utils.mah import adsh, engine
from utils.models import FlatHeads
from test_mah_training import smoke


def spied_run(out, monkeypatch, *argv, arch="flat"):
    """(every loss call as (code length, value), the network built) of a smoke run."""
    calls, built = [], []
    forward, build = adsh.ADSHLoss.forward, engine.build_model

    def spy_forward(loss, u, V, *rest):
        value = forward(loss, u, V, *rest)
        calls.append((V.shape[1], value.item()))
        return value

    def spy_build(*args):
        model, opt = build(*args)
        built.append(model)
        return model, opt

    monkeypatch.setattr(adsh.ADSHLoss, "forward", spy_forward)
    monkeypatch.setattr(engine, "build_model", spy_build)
    mah.main(smoke(out, "--max-iter", 2, "--eval-every", 2, *argv, arch=arch))
    monkeypatch.undo()
    return calls, built[0]


def test_adsh_trains_one_head_with_the_loss_of_mah_head_0(tmp_path, monkeypatch):
    """One head of the target length, one loss term per batch, and in the first batch the same
    loss value as MAH's head 0 (same seed: same images, same initial head, V from zeros).
    Catches an auxiliary head or its loss surviving --adsh, or a differently initialised head."""
    adsh_calls, adsh_net = spied_run(tmp_path / "adsh", monkeypatch, "--adsh")
    mah_calls, _ = spied_run(tmp_path / "mah", monkeypatch)
    assert isinstance(adsh_net.heads, FlatHeads) and [h.out_features for h in adsh_net.heads.heads] == [4]
    assert {c for c, _ in adsh_calls} == {4}
    assert len(mah_calls) == 3 * len(adsh_calls)  # MAH: heads of 4, 8 and 16 bits per batch
    assert adsh_calls[0][1] == mah_calls[0][1] and mah_calls[0][0] == 4
    with open(tmp_path / "adsh" / "results" / "digits_ADSH_4bits.json") as f:
        record = json.load(f)
    assert record["method"] == "ADSH" and record["aux_bits"] == [] and record["metrics"]["aux"] == []
    with open(tmp_path / "adsh" / "run.json") as f:
        assert json.load(f)["adsh"] is True


def test_adsh_is_the_same_network_from_either_script(tmp_path, monkeypatch):
    """With one head there is no cascade: the cascade script's ADSH run learns exactly the flat
    script's codes. Catches --adsh building CascadeHeads (which needs three lengths) or the
    two scripts' ADSH differing in anything but the name of the script."""
    spied_run(tmp_path / "flat", monkeypatch, "--adsh", arch="flat")
    spied_run(tmp_path / "cascade", monkeypatch, "--adsh", arch="cascade")
    flat, cascade = (torch.load(os.path.join(tmp_path, k, "checkpoint.pt"), weights_only=True) for k in
                     ("flat", "cascade"))
    assert flat["written_by"]["lengths"] == [4] == cascade["written_by"]["lengths"]
    assert torch.equal(flat["V"][0], cascade["V"][0])
    for name, value in flat["model"].items():
        assert torch.equal(value, cascade["model"][name]), name


@pytest.mark.parametrize("option", [["--aux-bits", "8,16"], ["--head-weights", "4,2,1"]])
def test_options_of_auxiliary_heads_are_refused_with_adsh(tmp_path, option):
    """Catches an option that --adsh silently ignores."""
    with pytest.raises(UserError, match=f"{option[0]} sets the auxiliary heads.*--adsh"):
        mah.main(smoke(tmp_path / "run", "--adsh", *option))
    assert not os.path.exists(tmp_path / "run")
