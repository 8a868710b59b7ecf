"""Testing an MMHH network: MAP within a Hamming radius and MAP@TopK of a seeded sample of
the queries and the database, under either metric convention (docs/metrics.md), the
released code's output files, the results record, and test_mmhh.py's main.
"""
import argparse
import os
import time

import numpy as np
import torch

from utils import metrics, options, retrieval
from utils.atomic import atomic_write
from utils.data import protocols
from utils.data.datasets import get_dataset
from utils.data.labels import label_matrix
from utils.errors import UserError, one_line
from utils.mmhh import common
from utils.mmhh.args import output_paths, target_settings
from utils.mmhh.losses import MARGIN_KEYS, MEAN_LOSSES, parse_margin_params
from utils.models import to_codes
from utils.records import results_record as record_of
from utils.runs import check_device, choose_device, load_checkpoint, load_state, make_folder, recorded_path, write_json


def sample_indices(n, ratio, rng):
    """A seeded sorted subset of round(ratio * n) of range(n) (at least one)."""
    if ratio >= 1:
        return np.arange(n)
    return np.sort(rng.permutation(n)[:max(1, round(ratio * n))])


def sample(data, ratio, seed):
    """The indices of the queries and the database a test scores: a seeded `ratio` of each."""
    rng = np.random.default_rng([seed, 1])
    return sample_indices(len(data.query.labels), ratio, rng), sample_indices(len(data.database.labels), ratio, rng)


def test_model(model, data, device, args, ratio, seed, radius, batch_size):
    """Metrics of the model on a seeded `ratio` of the queries and the database, and the arrays tested."""
    q_idx, d_idx = sample(data, ratio, seed)
    q_out = common.encode(model, common.feeders(data, "query", device, args), q_idx, batch_size)  # Q x K
    d_out = common.encode(model, common.feeders(data, "database", device, args), d_idx, batch_size)  # N x K
    return score(q_out, d_out, data.query.labels[q_idx], data.database.labels[d_idx], data.info, args, radius)


def score(q_out, d_out, ql, dl, info, args, radius):
    """Metrics of the continuous outputs q_out (Q x K) and d_out (N x K) of queries and database
    labelled ql and dl, under args' conventions (--opt-test, --rank_by), and the arrays tested."""
    if not (torch.isfinite(q_out).all() and torch.isfinite(d_out).all()):
        raise UserError("the model's outputs are not finite (the training diverged): train again with a lower --lr")
    q_codes, d_codes = to_codes(q_out), to_codes(d_out)
    scores = dict(query_scores=q_out, db_scores=d_out) if args.rank_by == "scores" else {}
    opt = bool(args.opt_test)
    r = radius if radius > 0 else 2
    # the released metrics' conventions for degenerate queries (docs/metrics.md): the "optimised" one
    # leaves a query with an empty ball out of all three numbers, the default counts it 0
    conventions = dict(empty_ball="skip", no_relevant="zero", pr_average="nonempty") if opt else \
        dict(empty_ball="zero", no_relevant="skip", pr_average="all")
    ball = metrics.map_within_radius(q_codes, d_codes, ql, dl, r, **scores, **conventions)
    topk = info.topk
    map_topk = metrics.mean_average_precision(q_codes, d_codes, ql, dl, topk=None if topk < 0 else topk,
                                              empty="zero" if opt else "skip", **scores)
    result = {"pr_by_radius": retrieval.pr_curve(q_codes, d_codes, ql, dl), "map_within_radius": ball["map"],
              "precision_within_radius": ball["precision"], "recall_within_radius": ball["recall"], "radius": r,
              "map_topk": map_topk, "topk": topk,
              "opt_test": opt, **conventions, "rank_by": args.rank_by, "queries": len(ql),
              "database": len(dl), "balls": retrieval.ball_statistics(q_codes, d_codes, r)}
    if args.rank_by == "signs" and topk < 0:  # the whole ranking by Hamming distance, whose ties are many
        result["map_topk_tie_aware"] = metrics.mean_average_precision(q_codes, d_codes, ql, dl,
                                                                      empty="zero" if opt else "skip",
                                                                      ties="expected")
    retrieval.warn_if_collapsed(d_codes, dl, info.classes)
    arrays = {"query_codes": q_codes, "query_outputs": q_out, "query_labels": ql,
              "database_codes": d_codes, "database_outputs": d_out, "database_labels": dl}
    return result, arrays


def report(result, radius):
    """The original's headline: MAP@H<=radius with precision and recall, or MAP@TopK."""
    if radius > 0:
        print(f"MAP@H<={result['radius']}: {result['map_within_radius']:.4f}  precision "
              f"{result['precision_within_radius']:.4f}  recall {result['recall_within_radius']:.4f}")
    else:
        k = "full ranking" if result["topk"] < 0 else result["topk"]
        print(f"MAP@TopK ({k}): {result['map_topk']:.4f}")


SAVED_OUTPUTS = ("test_code", "database_code", "test_labels", "database_labels")


def save_test_output(folder, arrays, classes):
    """The released code's end-of-training files: the continuous outputs (before sign) of the
    tested queries and database as test_code.npy / database_code.npy (Q x K, N x K float32)
    and their labels as test_labels.npy / database_labels.npy (Q x C, N x C float32 multi-hot;
    class ids become one-hot rows, the only layout its metrics could read)."""
    os.makedirs(folder, exist_ok=True)
    files = {"test_code": arrays["query_outputs"], "database_code": arrays["database_outputs"],
             "test_labels": label_matrix(arrays["query_labels"], classes, "cpu"),
             "database_labels": label_matrix(arrays["database_labels"], classes, "cpu")}
    for name, value in files.items():
        value = value.detach().cpu().float().numpy()
        atomic_write(os.path.join(folder, f"{name}.npy"), lambda f: np.save(f, value))


def saved_outputs(saved, path, data, ratio, seed, eval_on, training_set):
    """The continuous outputs the training run of snapshot `path` (train flags `saved`) saved at
    its end, as (q_out, d_out, query indices, database indices) of `data`: what encoding the
    same sample again would give, read instead of computed. Refused (UserError) unless the
    snapshot is the run's last and this test scores the sample that run's test scored."""
    drop = "or drop --saved_outputs to encode the data again"
    _, last, folder = output_paths(argparse.Namespace(**saved))
    last = os.path.basename(last)
    if os.path.basename(path) != last:
        raise UserError(f"--saved_outputs: the training run saved the outputs of its last snapshot {last}, not of "
                        f"{os.path.basename(path)}; give that --model_path, {drop}")
    for flag, given, tested in (("--test_sample_ratio", ratio, saved["test_sample_ratio"]),
                                ("--seed", seed, saved["seed"]), ("--eval_on", eval_on, saved.get("eval_on", "test"))):
        if given != tested:
            raise UserError(f"--saved_outputs: the training run tested with {flag} {tested}, not {given}; give "
                            f"{flag} {tested}, {drop}")
    if not training_set:
        raise UserError(f"--saved_outputs: the training run tested on {saved['t_dataset']} from its own data "
                        f"options; drop --dataset and the data options, {drop}")
    try:
        files = {name: np.load(os.path.join(folder, f"{name}.npy")) for name in SAVED_OUTPUTS}
    except (OSError, ValueError) as e:
        raise UserError(f"--saved_outputs: the training run's test outputs in {folder} cannot be read "
                        f"({one_line(e)}); {drop}") from None
    q_idx, d_idx = sample(data, ratio, seed)
    # the labels saved beside the outputs are those of the items this test samples, in its order
    # (within a class this cannot tell items apart; the checks above fix the sample itself)
    expected = {"test_labels": label_matrix(data.query.labels[q_idx], data.info.classes, "cpu"),
                "database_labels": label_matrix(data.database.labels[d_idx], data.info.classes, "cpu")}
    fits = all(files[name].shape == (len(idx), saved["hash_bit"])
               for name, idx in (("test_code", q_idx), ("database_code", d_idx)))
    fits = fits and all(files[name].shape == tuple(labels.shape) and np.array_equal(files[name], labels.numpy())
                        for name, labels in expected.items())
    if not fits:
        raise UserError(f"--saved_outputs: the outputs in {folder} are not those of this snapshot's test (another "
                        f"run's, or its data changed since); {drop}")
    return torch.from_numpy(files["test_code"]), torch.from_numpy(files["database_code"]), q_idx, d_idx


def method_of(settings):
    """The method a results record names, from the train flags `settings` (a dict): the loss
    (Hamming is HashNet's); the MMHH loss without its reweighting is MMHH0, whether chosen by
    --distance_type MMHH0 or by every factor of --margin_params at 1."""
    kind = settings["distance_type"]
    if kind == "MMHH" and "margin_params" in settings:
        margins = parse_margin_params(settings["margin_params"])
        if all(margins[key] == 1 for key in MARGIN_KEYS[:4]):
            return "MMHH0"
    return kind if kind in MEAN_LOSSES else "Hamming"


def results_name(dataset, method, bits, eval_on):
    """The results file of a test: validation results are named apart from test results."""
    return f"{dataset}_{method}_{bits}bits{'_val' if eval_on == 'val' else ''}.json"


def results_record(data, args, result, seconds, device, bits, protocol, **extra):
    """The results record of a test (utils.records); `protocol`: the run's protocol record
    (utils.mmhh.common.data_for), whose eval_on says which split was tested."""
    return record_of(data.info.name, method_of(vars(args)), bits, args.preset, args.image_network, args.seed,
                     result, seconds, device, options.public(args), protocols.summary(protocol), paper="MMHH", **extra)


def snapshot_settings(saved, name):
    """The snapshot's train flags `saved` with the data roots of data set `name`: the tested
    set's (--t_data_root) or the training set's (--data_root), none for another data set."""
    if name == get_dataset(saved["t_dataset"]).name and "t_data_root" in saved:  # not in older snapshots
        return target_settings(saved)
    if name == get_dataset(saved["s_dataset"]).name:
        return saved
    return {**saved, "data_root": None, "image_root": None}


def test_main(args):
    check_device(args.gpu_id, "--gpu_id")
    path = common.snapshot_path(args.model_path)
    advice = "give --model_path a snapshot that train_mmhh.py wrote"
    kind = common.writer(argparse.Namespace(hash_bit=0, image_network=""))["kind"]
    ckpt = load_checkpoint(path, {"kind": kind}, advice)
    saved = ckpt["args"]
    results = os.path.join(args.log_dir, args.annotation, "results")
    name = args.dataset or saved["t_dataset"]
    trained_on = saved.get("eval_on", "test")
    eval_on = args.eval_on or trained_on
    if eval_on == "val" and trained_on != "val":
        raise UserError("--eval_on val: this snapshot trained on the whole training part, the validation queries "
                        "included; test it with --eval_on test, or train with --eval_on val")
    settings = snapshot_settings(saved, get_dataset(name).name)
    training_set = get_dataset(name).name == get_dataset(saved["s_dataset"]).name and \
        (settings["data_root"], settings["image_root"]) == (saved["data_root"], saved["image_root"])
    if eval_on == "val" and not training_set:
        raise UserError(f"--eval_on val tests on the validation split of the snapshot's training set "
                        f"{saved['s_dataset']}, not {name}; drop --dataset, or use --eval_on test")
    target = os.path.join(results, results_name(get_dataset(name).name, method_of(saved), saved["hash_bit"], eval_on))
    if os.path.exists(target) and not args.overwrite:  # checked before the test, not after it
        raise UserError(f"{target} holds the results of an earlier test of annotation {args.annotation}: give "
                        "another --annotation, or --overwrite to replace them")
    make_folder(results, "--log_dir")  # fails now rather than after the test
    if args.output_path:
        make_folder(args.output_path, "--output_path")
    device = choose_device(args.gpu_id, "--gpu_id")
    if not args.saved_outputs:
        model = common.build_network(saved["image_network"], saved["hash_bit"], pretrained=False)
        load_state(model, ckpt["model"], path, advice)
        model = model.to(device, memory_format=torch.channels_last)
    for key in ("resize", "crop", "augment"):  # the snapshot's input pipeline
        setattr(args, key, saved[key])
    run_dir = os.path.join(saved["log_dir"], f"{saved['annotation']}_{saved['s_dataset']}_{saved['t_dataset']}")
    # the training run's split when it is still there and of this data set; a seeded split is re-derived otherwise
    same = training_set and os.path.exists(os.path.join(run_dir, "split.json"))
    given = {k: getattr(args, k) for k in ("data_root", "image_root", "path_prefix", "missing_images")
             if getattr(args, k) is not None}
    given["eval_on"] = eval_on
    # the corruption of the training labels is re-derived for the record, on the training set only
    data, _, protocol = common.data_for(name, {**settings, **given, **({} if training_set else {"label_noise": 0.0})},
                                 run_dir if same else None)
    if not training_set:  # the rate trained under; the items corrupted were another data set's
        protocol = {k: v for k, v in protocol.items() if k not in ("corrupted_items", "corrupted")}
        protocol["label_noise"] = saved.get("label_noise", 0.0)
    seed = saved["seed"] if args.seed is None else args.seed
    tic = time.time()
    if args.saved_outputs:
        q_out, d_out, q_idx, d_idx = saved_outputs(saved, path, data, args.test_sample_ratio, seed, eval_on,
                                                   training_set)
        result, arrays = score(q_out, d_out, data.query.labels[q_idx], data.database.labels[d_idx], data.info, args,
                               args.radius)
    else:
        result, arrays = test_model(model, data, device, args, args.test_sample_ratio, seed, args.radius,
                                    args.batch_size)
    report(result, args.radius)
    if args.output_path:
        for name, value in arrays.items():
            value = value.cpu().numpy() if torch.is_tensor(value) else value
            atomic_write(os.path.join(args.output_path, f"{name}.npy"), lambda f: np.save(f, value))
    trained = argparse.Namespace(**{**saved, "seed": seed})
    record = results_record(data, trained, result, time.time() - tic, device, saved["hash_bit"], protocol)
    record["snapshot"] = recorded_path(path)
    record["saved_outputs"] = bool(args.saved_outputs)
    write_json(target, record)
    return record
