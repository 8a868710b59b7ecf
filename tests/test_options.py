"""The entry scripts' options as a user meets them: every --help line states its default,
and the six MAH scripts resolve to the original's per-script defaults (spec MAH.md)."""
import argparse
import importlib.util
import os
import runpy
import sys

import pytest

from utils import index, mah, mmhh
from utils.report import main as report
from utils.mah import args as mah_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prepare_parser(folder):
    spec = importlib.util.spec_from_file_location(f"prepare_{folder}", os.path.join(REPO, "data", folder, "prepare.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_args_parser()


def _index_parser(command):
    return index.get_args_parser()._subparsers._group_actions[0].choices[command]


PARSERS = {"MAH scripts": mah.get_args_parser, "train_mmhh.py": mmhh.get_train_parser,
           **{f"utils.index {c}": (lambda c=c: _index_parser(c)) for c in ("build", "search", "info")},
           "test_mmhh.py": mmhh.get_test_parser, "utils.report": report.get_args_parser,
           **{f"data/{d}/prepare.py": (lambda d=d: _prepare_parser(d)) for d in ("CIFAR-10", "FLICKR", "NUS-WIDE")}}


@pytest.mark.parametrize("name", PARSERS)
def test_every_help_line_states_its_default(name):
    """Each option's help ends its text with "(default: ...)" or says "(required)", and a
    default argparse fills in is the one the help states. Catches a new option without its
    default in --help, or a default changed in the code but not in the help (--workers 4 ->
    2 with the help still saying 4)."""
    for action in PARSERS[name]()._actions:
        if action.dest == "help":
            continue
        text = (action.help or "").lower()
        assert "(default" in text or "(required)" in text, f"{name} {action.option_strings}: {action.help!r}"
        value = action.default
        if action.required or value in (None, False, [], argparse.SUPPRESS):
            continue
        shown = os.path.basename(value.rstrip(os.sep)) if isinstance(value, str) and os.sep in value else \
            f"{value:g}" if isinstance(value, float) else str(value)
        assert shown.lower() in text[text.index("(default"):], f"{name} {action.option_strings}: default {value!r}"


# spec MAH.md, "Per-script defaults of the original": target and auxiliary lengths, head
# weights, gamma, max_iter, epochs, batch, num_samples, eval_every
SPEC_TABLE = {
    "cascade_CIFAR-10": ("cascade", "cifar10", 4, (8, 16), [4, 2, 1], 200, 41, 3, 64, 2000, 1),
    "flat_CIFAR-10": ("flat", "cifar10", 6, (48, 96), [4, 2, 1], 200, 41, 3, 64, 2000, 10),
    "cascade_FLICKR": ("cascade", "flickr25k", 8, (10, 12), [6, 2, 1], 100, 100, 3, 64, 2000, 10),
    "flat_FLICKR": ("flat", "flickr25k", 6, (8, 16), [4, 2, 1], 200, 300, 1, 100, 2000, 10),
    "cascade_NUS_WIDE": ("cascade", "nuswide21", 8, (10, 12), [4, 2, 1], 200, 300, 3, 100, 8000, 10),
    "flat_NUS_WIDE": ("flat", "nuswide21", 4, (8, 12), [10, 2, 1], 200, 300, 1, 100, 8000, 10),
}


def resolved(script, monkeypatch, *argv):
    """The arguments `script`.py hands to main after resolution, without training."""
    seen = []
    monkeypatch.setattr(mah, "main", lambda args: seen.append(mah_args.resolve(args)))
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    runpy.run_path(os.path.join(REPO, f"{script}.py"), run_name="__main__")
    return seen[0]


@pytest.mark.parametrize("script", SPEC_TABLE)
def test_each_script_resolves_to_the_originals_defaults(script, monkeypatch):
    """The six entry scripts run with no option: the per-script table of the spec, the paper's
    optimiser (SGD, lr 1e-3, no momentum, weight decay in build_model), lr / 10 after outer
    iterations 10 to 50, V from zeros with no hold, ResNet-50 from ImageNet at 224. Catches a
    script's row edited (say FLICKR's gamma 100 -> 200), defaults of two scripts swapped, or a
    preset value leaking into the paper recipe."""
    arch, dataset, c0, aux, weights, gamma, max_iter, epochs, batch, samples, every = SPEC_TABLE[script]
    a = resolved(script, monkeypatch)
    assert (a.arch, a.dataset, a.bits, mah_args.aux_lengths(a, c0)) == (arch, dataset, [c0], aux)
    assert (a.head_weights, a.gamma, a.max_iter, a.epochs, a.batch_size, a.num_samples, a.eval_every) == (
        weights, gamma, max_iter, epochs, batch, samples, every)
    assert (a.optimizer, a.lr, a.momentum, a.lr_steps, a.v_init, a.v_hold) == ("sgd", 1e-3, 0.0, [10, 20, 30, 40, 50],
                                                                                "zeros", 0)
    assert (a.backbone, a.pretrained, a.resize, a.crop, a.augment) == ("resnet50", True, 256, 224, False)
    assert (a.protocol, a.seed, a.missing_images) == ("dpsh", 0, "error")


@pytest.mark.parametrize("script", ["cascade_FLICKR", "flat_NUS_WIDE"])
def test_presets_override_the_schedule_but_not_the_scripts_loss(script, monkeypatch):
    """cpu-pretrained as the README's deviation table lists it, on scripts whose own numbers
    differ from CIFAR-10's (FLICKR cascade: weights 6,2,1 and gamma 100; NUS-WIDE flat: 10,2,1):
    Adam at 1e-4, lr / 10 after iteration 30, 41 x 1 iterations, MobileNetV2 at 64 px with
    augmentation, evaluation every 10, auxiliary 2 c0 and 4 c0; the script's weights, gamma,
    batch and sample unchanged. Catches a preset replacing what it promises to keep."""
    _, _, c0, _, weights, gamma, _, _, batch, samples, _ = SPEC_TABLE[script]
    a = resolved(script, monkeypatch, "--preset", "cpu-pretrained")
    assert (a.optimizer, a.lr, a.lr_steps, a.max_iter, a.epochs, a.eval_every) == ("adam", 1e-4, [30], 41, 1, 10)
    assert (a.backbone, a.pretrained, a.resize, a.crop, a.augment, a.v_init, a.v_hold) == (
        "mobilenet_v2", True, 64, 64, True, "zeros", 0)
    assert (a.head_weights, a.gamma, a.batch_size, a.num_samples) == (weights, gamma, batch, samples)
    assert mah_args.aux_lengths(a, c0) == (2 * c0, 4 * c0)
