"""Does the test suite see real bugs? Apply small semantic mutations (a flipped sign, a
dropped call, a swapped option, an off-by-one in a schedule, a wrong default) one at a
time to a copy of the working tree, run the tests that guard that code, and report
which mutations the tests kill (some test fails) and which survive (all pass).

    python bench/mutation_check.py              # every mutation
    python bench/mutation_check.py --list       # the mutations, no runs
    python bench/mutation_check.py --only M03,N12

Not part of `make test` (it runs the guarding tests once per mutation). The copy holds
the tracked and untracked-but-not-ignored files, with ../shared beside it as the suite
expects; the unmutated copy must pass the same tests first. A mutation whose text is no
longer found in its file is reported as stale (the list must follow the code).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from utils import runs  # noqa: E402
from utils.report.benches import mutation_block  # noqa: E402  (the outcome as docs/testing.md gives it)

# the quick, targeted files first: pytest stops at the first failure
MAH_TESTS = ["tests/test_mah_training.py", "tests/test_mah.py", "tests/test_learning.py"]
MMHH_TESTS = ["tests/test_mmhh_training.py", "tests/test_mmhh.py", "tests/test_learning.py"]
METRIC_TESTS = ["tests/test_metrics.py"]
RUN_TESTS = ["tests/test_runs.py"]
FAILURE_TESTS = ["tests/test_failures.py", "tests/test_runs.py"]
DIST_TESTS = ["tests/test_distributed.py"]
REPORT_TESTS = ["tests/test_report.py", "tests/test_claims.py"]
WORKER_TESTS = ["tests/test_failures_more.py::test_what_a_loader_error_says_decides_stop_or_failure",
                "tests/test_failures_more.py::test_loader_workers_ended_by_a_signal_are_one_line"]
# the groups of the summary, by the first letter of a mutation's id
GROUPS = {"M": "MAH: loss, DCC, evaluation, heads", "N": "MMHH: losses, schedules, memory bank, model",
          "A": "augmentation", "S": "seeding, scripts and options", "X": "metrics",
          "D": "several processes (torchrun)", "R": "run folders, atomic writes, failures, threads",
          "P": "the report: claims' verdicts, bench figures"}

# (id, what the bug is, file, text, replacement, tests that must kill it)
MUTATIONS = [
    # MAH: similarity, loss and the training loop
    ("M01", "dissimilar term of S V flipped where the loop builds it", "utils/mah/adsh.py",
     "- r * column_sums[:-1]", "+ r * column_sums[:-1]", MAH_TESTS),
    ("M02", "sum S^2 without the r^2 of dissimilar pairs", "utils/mah/adsh.py",
     "- similar) * r * r", "- similar) * r", MAH_TESTS),
    ("M03", "soft similarity of dissimilar pairs +r instead of -r in DCC", "utils/mah/adsh.py",
     "- r * x.sum(0, keepdim=True)", "+ r * x.sum(0, keepdim=True)", MAH_TESTS),
    ("M04", "r = similar / all pairs instead of similar / dissimilar", "utils/mah/adsh.py",
     "similar / max(total - similar, 1)", "similar / max(total, 1)", MAH_TESTS),
    ("M05", "cross term of the ADSH loss with the wrong sign", "utils/mah/adsh.py",
     "- 2 * c * (u * SV).sum()", "+ 2 * c * (u * SV).sum()", MAH_TESTS),
    ("M06", "quantization term of the ADSH loss unweighted", "utils/mah/adsh.py",
     "(pair + self.gamma * quant)", "(pair + quant)", MAH_TESTS),
    ("M07", "head weights ignored in the summed loss", "utils/mah/engine.py",
     "loss = weight * sum(w * p for w, p in zip(args.head_weights, parts))", "loss = weight * sum(parts)",
     MAH_TESTS),
    ("M08", "U keeps zeros instead of the last epoch's outputs", "utils/mah/engine.py",
     "u_all[pos] = u.detach()", "u_all[pos] = 0 * u.detach()", MAH_TESTS),
    ("M09", "U from the first epoch instead of the last", "utils/mah/engine.py",
     "last = epoch == args.epochs - 1", "last = epoch == 0", MAH_TESTS),
    ("M10", "the database sample drawn once instead of every outer iteration", "utils/mah/engine.py",
     "default_rng([args.seed, c0, it])", "default_rng([args.seed, c0])", MAH_TESTS),
    ("M11", "--lr-steps never applied", "utils/mah/engine.py",
     'group["lr"] /= 10', 'group["lr"] /= 1', MAH_TESTS),
    ("M12", "lr step one outer iteration early", "utils/mah/engine.py",
     "if it in args.lr_steps:", "if it + 1 in args.lr_steps:", MAH_TESTS),
    ("M13", "the hold one iteration longer", "utils/mah/engine.py",
     "if it >= args.v_hold:", "if it > args.v_hold:", MAH_TESTS),
    ("M14", "weight decay dropped from MAH's optimiser", "utils/mah/engine.py",
     "lr=args.lr, weight_decay=5e-4, momentum", "lr=args.lr, weight_decay=0.0, momentum", MAH_TESTS),
    ("M15", "--momentum default 0.9 instead of the original's 0", "utils/mah/args.py",
     'default=0.0, help="momentum of sgd', 'default=0.9, help="momentum of sgd', MAH_TESTS),
    ("M16", "list-file crops back to torchvision's 0.08 area", "utils/mah/engine.py",
     "crop_scale=(0.75, 1.0))", "crop_scale=(0.08, 1.0))", MAH_TESTS),
    ("M17", "optimizer state not restored on resume", "utils/mah/engine.py",
     '            load_state(opt, ckpt["optimizer"], ckpt_path, advice)\n            V = ',
     "            V = ", MAH_TESTS),
    # MAH: DCC
    ("M18", "DCC column takes +sign instead of -sign", "utils/mah/adsh.py",
     "column = -torch.sign(value)", "column = torch.sign(value)", MAH_TESTS),
    ("M19", "DCC's quantization term with the wrong sign", "utils/mah/adsh.py",
     "Q[sample_index] -= 2 * gamma * U", "Q[sample_index] += 2 * gamma * U", MAH_TESTS),
    ("M20", "DCC without removing column k from V_{-k}", "utils/mah/adsh.py",
     "2 * (V @ gram[:, k] - V[:, k] * gram[k, k])", "2 * (V @ gram[:, k])", MAH_TESTS),
    ("M21", "DCC maps sign(0) to -1", "utils/mah/adsh.py",
     "column.masked_fill(zero, 1.0)", "column.masked_fill(zero, -1.0)", MAH_TESTS),
    # MAH: evaluation and heads
    ("M22", "model.eval() dropped before MAH encodes queries", "utils/models.py",
     "    model.eval()\n    try:", "    try:", MAH_TESTS),
    ("M23", "an output of exactly 0 coded -1", "utils/models.py",
     "torch.where(outputs >= 0, 1.0, -1.0)", "torch.where(outputs > 0, 1.0, -1.0)", MAH_TESTS),
    ("M24", "the last outer iteration not evaluated (an earlier one reported)", "utils/mah/engine.py",
     "== 0 or it == args.max_iter - 1:", "== 0:", MAH_TESTS),
    ("M25", "a tanh between the cascade's stages", "utils/models.py",
     "z1 = self.second(z2)", "z1 = self.second(torch.tanh(z2))", MAH_TESTS),
    ("M26", "flat heads without tanh", "utils/models.py",
     "return [torch.tanh(h(f)) for h in self.heads]", "return [h(f) for h in self.heads]", MAH_TESTS),
    # augmentation
    ("A01", "crop and flip of array images computed and discarded", "utils/data/images.py",
     "x = _random_crop_flip(x, generator)", "_random_crop_flip(x, generator)", MAH_TESTS),
    ("A02", "list-file training images never augmented", "utils/data/feeder.py",
     "train=train and augment,", "train=False,", MAH_TESTS + MMHH_TESTS),
    ("A03", "flips never drawn (crops only)", "utils/data/images.py",
     "flip = (torch.rand(b, generator=generator) < 0.5)", "flip = (torch.rand(b, generator=generator) < 0.0)",
     MAH_TESTS),
    # MMHH: losses
    ("N01", "margin test strict (d < margin) instead of d <= margin", "utils/mmhh/losses.py",
     'd.detach() <= margins["margin"]', 'd.detach() < margins["margin"]', MMHH_TESTS),
    ("N02", "similar pairs inside the margin weighted sim_out", "utils/mmhh/losses.py",
     'torch.where(inside, S * margins["sim_in"]', 'torch.where(inside, S * margins["sim_out"]', MMHH_TESTS),
    ("N03", "-log p of similar pairs without log 2", "utils/mmhh/losses.py",
     "similar = math.log(2) + torch.log1p(d / gamma)", "similar = torch.log1p(d / gamma)", MMHH_TESTS),
    ("N04", "-log(1 - p) of dissimilar pairs negated", "utils/mmhh/losses.py",
     "torch.log(d + gamma) - torch.log(d + gamma / 2)", "torch.log(d + gamma / 2) - torch.log(d + gamma)",
     MMHH_TESTS),
    ("N05", "w_s applied to dissimilar pairs", "utils/mmhh/losses.py",
     "W = (1 - S) + S * w_s", "W = S + (1 - S) * w_s", MMHH_TESTS),
    ("N06", "Hamming estimate K (1 - cos) instead of K/2 (1 - cos)", "utils/mmhh/losses.py",
     "return K / 2 * (1 - cos)", "return K * (1 - cos)", MMHH_TESTS),
    ("N07", "HashNet loss - S x flipped", "utils/mmhh/losses.py",
     "F.softplus(x) - S * x", "F.softplus(x) + S * x", MMHH_TESTS),
    ("N08", "HashNet loss normalised by the pair count instead of the weight", "utils/mmhh/losses.py",
     "/ (w_s * similar + (S.numel() - similar))", "/ S.numel()", MMHH_TESTS),
    ("N09", "quantization loss log cosh(h) instead of log cosh(|h| - 1)", "utils/mmhh/losses.py",
     "x = (H.abs() - 1).abs()", "x = H.abs()", MMHH_TESTS),
    ("N10", "auto similar weight inverted", "utils/mmhh/losses.py",
     "torch.where(similar > 0, (S.numel() - similar) / similar, 1.0)",
     "torch.where(similar > 0, similar / (S.numel() - similar), 1.0)", MMHH_TESTS),
    # MMHH: schedules and optimiser
    ("N11", "Stair_Step halves one iteration early", "utils/mmhh/optim.py",
     "lr * 0.5 ** (t // decay_step)", "lr * 0.5 ** ((t + 1) // decay_step)", MMHH_TESTS),
    ("N12", "Stair_Step divides by 10 instead of 2", "utils/mmhh/optim.py",
     "lr * 0.5 ** (t // decay_step)", "lr * 0.1 ** (t // decay_step)", MMHH_TESTS),
    ("N13", "HashNet_Step every 1000 iterations instead of 2000", "utils/mmhh/optim.py",
     "lr * 0.5 ** (t // 2000)", "lr * 0.5 ** (t // 1000)", MMHH_TESTS),
    ("N14", "DANN_INV power -0.5 instead of -0.75", "utils/mmhh/optim.py",
     "(1 + 3e-4 * t) ** -0.75", "(1 + 3e-4 * t) ** -0.5", MMHH_TESTS),
    ("N15", "weight decay of the schedules swapped", "utils/mmhh/optim.py",
     'stair_weight_decay if schedule == "Stair_Step" else 5e-4',
     '5e-4 if schedule == "Stair_Step" else stair_weight_decay', MMHH_TESTS),
    ("N16", "hash layer at lr x1 instead of x10", "utils/mmhh/optim.py",
     '"hash_layer": 10.0', '"hash_layer": 1.0', MMHH_TESTS),
    ("N17", "the schedule never applied in training", "utils/mmhh/engine.py",
     "    set_learning_rate(opt, lr)\n", "", MMHH_TESTS),
    ("N18", "HashNet's continuation scale never applied", "utils/mmhh/engine.py",
     "unwrap(model).scale.fill_(continuation_scale(t))", "unwrap(model).scale.fill_(1.0)", MMHH_TESTS),
    ("N19", "continuation scale one step late", "utils/mmhh/engine.py",
     "200 * ((t + 1) // 200)", "200 * (t // 200)", MMHH_TESTS),
    ("N20", "Nesterov dropped from MMHH's SGD", "utils/mmhh/optim.py",
     "momentum=0.9, nesterov=True", "momentum=0.9, nesterov=False", MMHH_TESTS),
    ("N21", "quantization loss dropped from the training loss", "utils/mmhh/engine.py",
     "loss = pair_weight * pair + args.loss_lambda * quant_weight * quant", "loss = pair_weight * pair",
     MMHH_TESTS),
    ("N22", "the same batch order every epoch", "utils/mmhh/engine.py",
     "default_rng([args.seed, epoch])", "default_rng([args.seed])", MMHH_TESTS),
    # MMHH: memory bank
    ("N23", "memory momentum applied to the new outputs", "utils/mmhh/memory.py",
     "beta * self.codes[index] + (1 - beta) * h.detach()", "(1 - beta) * self.codes[index] + beta * h.detach()",
     MMHH_TESTS),
    ("N24", "memory rows not normalised after the update", "utils/mmhh/memory.py",
     "F.normalize(rows, dim=1) if self.normalize else rows", "rows", MMHH_TESTS),
    ("N25", "memory used one iteration before its warm-up ends", "utils/mmhh/memory.py",
     "(h, labels) if t < self.warmup else", "(h, labels) if t < self.warmup - 1 else", MMHH_TESTS),
    ("N26", "memory momentum linear instead of sqrt", "utils/mmhh/memory.py",
     "(1 - beta0) * math.sqrt(t / total)", "(1 - beta0) * (t / total)", MMHH_TESTS),
    ("N27", "memory rows updated at batch positions instead of item indices", "utils/mmhh/engine.py",
     "memory.update(t, distributed.gather_batch(index), h_all)",
     "memory.update(t, torch.arange(len(h_all), device=h.device), h_all)", MMHH_TESTS),
    ("N28", "memory update dropped", "utils/mmhh/engine.py",
     "memory.update(t, distributed.gather_batch(index), h_all)", "pass", MMHH_TESTS),
    ("N29", "memory not restored on resume", "utils/mmhh/engine.py",
     'memory.codes = ckpt["memory"].to(device)', "pass", MMHH_TESTS),
    ("N30", "MODEL-initialised memory taken from random codes", "utils/mmhh/engine.py",
     'if args.semi_init_type == "MODEL":', 'if args.semi_init_type == "RANDOM":', MMHH_TESTS),
    # MMHH: model and test
    ("N31", "hash layer initialised uniform with the same spread", "utils/models.py",
     "nn.init.normal_(self.hash_layer.weight, 0.0, 0.01)",
     "nn.init.uniform_(self.hash_layer.weight, -0.01 * 3 ** 0.5, 0.01 * 3 ** 0.5)", MMHH_TESTS),
    ("N32", "hash layer bias left at PyTorch's default", "utils/models.py",
     "        nn.init.zeros_(self.hash_layer.bias)\n", "", MMHH_TESTS),
    ("N33", "model.eval() dropped before MMHH encodes", "utils/models.py",
     "    model.eval()\n    try:", "    try:", MMHH_TESTS),
    ("N34", "--opt-test and default conventions swapped", "utils/mmhh/evaluate.py",
     'pr_average="nonempty") if opt else', 'pr_average="nonempty") if not opt else', MMHH_TESTS),
    ("N35", "MAP@TopK's empty-query convention swapped", "utils/mmhh/evaluate.py",
     'empty="zero" if opt else "skip", **scores)', 'empty="skip" if opt else "zero", **scores)', MMHH_TESTS),
    ("N36", "--rank_by scores ignored", "utils/mmhh/evaluate.py",
     'if args.rank_by == "scores" else {}', 'if False else {}', MMHH_TESTS),
    ("N37", "default radius 2 used whatever --radius says", "utils/mmhh/evaluate.py",
     "r = radius if radius > 0 else 2", "r = 2", MMHH_TESTS),
    ("N38", "dropout draws not seeded per epoch (a resumed run differs)", "utils/mmhh/engine.py",
     "        torch.manual_seed(int(np.random.default_rng([args.seed, epoch, 1]).integers(2 ** 62)))\n", "",
     MMHH_TESTS),
    ("N39", "the last partial --log_every window never logged", "utils/mmhh/engine.py",
     "t % args.log_every == 0 or t == args.num_iters", "t % args.log_every == 0", MMHH_TESTS),
    ("N40", "--pre_model_path ignored", "utils/mmhh/train.py",
     'load_state(model, load_checkpoint(path, common.writer(args), advice)["model"], path, advice)', "pass",
     MMHH_TESTS),
    # seeding, scripts and options
    ("S01", "list-file crops from the global generator (unseeded without workers)", "utils/data/images.py",
     "            torch.manual_seed(seed)\n", "", MAH_TESTS),
    ("S02", "MAH dropout draws not seeded per outer iteration", "utils/mah/engine.py",
     "    torch.manual_seed(int(np.random.default_rng([args.seed, c0, it, 1]).integers(2 ** 62)))\n", "",
     MAH_TESTS),
    ("S03", "cascade FLICKR's gamma 100 -> 200", "cascade_FLICKR.py",
     "gamma=100,", "gamma=200,", ["tests/test_options.py"]),
    ("S04", "flat NUS-WIDE's head weights swapped to 4,2,1", "flat_NUS_WIDE.py",
     'head_weights="10,2,1"', 'head_weights="4,2,1"', ["tests/test_options.py"]),
    ("S05", "--workers default changed, help not", "utils/mah/args.py",
     '"--workers", type=nonnegative_int, default=default_workers(),',
     '"--workers", type=nonnegative_int, default=default_workers() + 1,',
     ["tests/test_options.py"]),
    ("S06", "cpu-pretrained's lr step at 20", "utils/mah/args.py",
     'lr=1e-4, lr_steps="30"', 'lr=1e-4, lr_steps="20"', ["tests/test_options.py", "tests/test_mah.py"]),
    # metrics
    ("X01", "ball d < r instead of d <= r", "utils/metrics.py",
     "ball, found = n[:, :radius + 1].sum(1), r[:, :radius + 1].sum(1)",
     "ball, found = n[:, :radius].sum(1), r[:, :radius].sum(1)", METRIC_TESTS),
    ("X02", "AP normalised by the ranking length instead of the relevant count", "utils/metrics.py",
     "ap = sums / hits.clamp(min=1)", "ap = sums / length", METRIC_TESTS),
    ("X03", "expected precision of a tie bucket without the (t-1) beta term", "utils/metrics.py",
     "per_bucket = r / n.clamp(min=1) * (n * beta + (b + 1 - beta - beta * a) * dh)",
     "per_bucket = r / n.clamp(min=1) * ((b + 1) * dh)", METRIC_TESTS),
    ("X04", "empty='skip' ignored", "utils/metrics.py",
     "mean.add(ap, (hits > 0) | (empty == \"zero\"))", "mean.add(ap, hits >= 0)", METRIC_TESTS),
    ("X05", "compiled ranks start at 0 at every distance (items closer not counted)", "utils/hamming_kernels.py",
     "ranked[k, d] = ranked[k, d - 1] + np.int64(n[rows[k], d - 1])", "ranked[k, d] = 0", METRIC_TESTS),
    ("X06", "compiled top-k cut one rank late", "utils/hamming_kernels.py",
     "if rank > limit[k]:", "if rank > limit[k] + 1:", METRIC_TESTS),
    ("X07", "compiled relevant counts taken from every label group", "utils/hamming_kernels.py",
     "                if rel_b[k, g]:\n                    for c in range", "                if True:\n"
     "                    for c in range", METRIC_TESTS),
    ("X08", "distance table columns updated in ascending order", "utils/hamming_kernels.py",
     "for d in range(b + 1, 0, -1):", "for d in range(1, b + 2):", METRIC_TESTS),
    ("X09", "duplicate queries mapped to the wrong distinct query", "utils/metrics.py",
     "self.inverse = inverse.reshape(-1)", "self.inverse = inverse.reshape(-1)[::-1].copy()", METRIC_TESTS),
    # several processes (torchrun)
    ("D01", "MAH: U not summed over the processes", "utils/mah/engine.py",
     "    for u in U:\n        distributed.sum_(u)\n", "", DIST_TESTS),
    ("D02", "MAH: each process's loss not weighted by its share", "utils/mah/engine.py",
     "weight = distributed.world_size() * len(pos) / min(args.batch_size, m - start)", "weight = 1.0", DIST_TESTS),
    ("D03", "MMHH: the pair loss against the process's share only", "utils/mmhh/engine.py",
     "h_all, L1_all = distributed.gather_batch(h), distributed.gather_batch(L1)", "h_all, L1_all = h, L1",
     DIST_TESTS),
    ("D04", "gathered shares out of order", "utils/distributed.py",
     "return torch.stack(parts, 1).flatten(0, 1)", "return torch.stack(parts, 0).flatten(0, 1)",
     DIST_TESTS),
    ("D05", "no process group for one torchrun process (a one-GPU machine never runs NCCL)", "utils/distributed.py",
     'return "RANK" in os.environ and "WORLD_SIZE" in os.environ', 'return int(os.environ.get("WORLD_SIZE", "1")) > 1',
     DIST_TESTS),
    ("D06", "a query set smaller than the processes let through", "utils/mah/train.py",
     "    if len(data.query.labels) < distributed.world_size():", "    if False:", DIST_TESTS),
    ("D07", "a finished process leaves the group while rank 0 still writes (no final barrier)",
     "utils/distributed.py", "        yield device\n        barrier()\n", "        yield device\n", DIST_TESTS),
    # atomic writes
    ("R01", "results written in place instead of through a temporary file", "utils/atomic.py",
     'tmp = f"{path}.{os.getpid()}.tmp"', "tmp = path", RUN_TESTS),
    # run folders, failures, threads
    ("R02", "a folder that holds a run not refused", "utils/runs.py",
     "        if not self.resume and held and not self.overwrite:", "        if False:", FAILURE_TESTS),
    ("R03", "no lock on the run folder", "utils/runs.py",
     "            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)", "            pass", FAILURE_TESTS),
    ("R04", "--overwrite leaves the old run's files", "utils/runs.py",
     "        if self.overwrite and not self.resume:", "        if False:", FAILURE_TESTS),
    ("R05", "a failed write keeps its temporary", "utils/atomic.py",
     "        with contextlib.suppress(OSError):\n            os.remove(tmp)", "        pass", FAILURE_TESTS),
    ("R06", "MMHH log not cut back to the checkpoint on resume", "utils/mmhh/engine.py",
     '        log.keep(lambda r: r.get("iteration", t) <= t)', "        pass", FAILURE_TESTS),
    ("R07", "MAH log not cut back to the checkpoint on resume", "utils/mah/engine.py",
     '        log.keep(lambda r: r.get("bits") != c0 or r.get("iteration", start) < start)', "        pass",
     FAILURE_TESTS),
    ("R08", "non-finite parameters and buffers not checked", "utils/runs.py",
     "        if tensor.is_floating_point() and not torch.isfinite(tensor).all():", "        if False:", FAILURE_TESTS),
    ("R09", "numba's OpenMP threading layer", "utils/hamming_kernels.py",
     '    numba.config.THREADING_LAYER = "workqueue"', '    numba.config.THREADING_LAYER = "omp"', FAILURE_TESTS),
    ("R10", "numba's threads not following torch's", "utils/hamming_kernels.py",
     "    numba.set_num_threads(thread_count())", "    pass", FAILURE_TESTS),
    ("R11", "options given with --resume ignored", "utils/options.py",
     "    if differ or unknown:", "    if False:", FAILURE_TESTS),
    ("R12", "a checkpoint's writer not checked", "utils/runs.py",
     "    if written_by and any(found.get(k) != v for k, v in written_by.items()):", "    if False:", FAILURE_TESTS),
    ("R13", "a byte-order mark kept in the first path", "utils/data/listfiles.py",
     'raw.removeprefix(b"\\xef\\xbb\\xbf")', "raw", FAILURE_TESTS),
    ("R14", "Ctrl-C not turned into its line and status 130", "utils/errors.py",
     "    sys.exit(INTERRUPTED)", "    raise", FAILURE_TESTS),
    ("R15", "learning rates not range-checked", "utils/options.py",
     'positive_float = _number(float, lambda v: v > 0, "> 0")',
     'positive_float = _number(float, lambda v: True, "> 0")',
     FAILURE_TESTS),
    ("R16", "a loader worker ended by SIGTERM reported as a failure, not as Ctrl-C's stop", "utils/errors.py",
     "        if stopped_loader(e):", "        if False:", WORKER_TESTS),
    ("R17", "a loader worker killed otherwise shown as a traceback", "utils/errors.py",
     '        if "DataLoader worker" not in str(e):', "        if True:", WORKER_TESTS),
    ("R18", "a stop signal lost inside a C callback: the run goes on", "utils/errors.py",
     "        if self.stopping:", "        if False:",
     ["tests/test_failures_more.py::test_a_stop_signal_inside_a_c_callback_still_stops_the_run"]),
    ("R19", "a worker's death that a stop signal follows reported as a failure", "utils/errors.py",
     "        if stop_on_its_way():", "        if False:",
     ["tests/test_failures_more.py::test_a_worker_death_that_a_stop_signal_follows_is_a_stop"]),
    # the report: the claims' verdicts and the benches' figures
    ("P01", "the claims' interval from the population standard deviation", "utils/report/claims.py",
     "x.std(ddof=1)", "x.std(ddof=0)", REPORT_TESTS),
    ("P02", "a claim holds where its interval only reaches the paper's side of 0", "utils/report/claims.py",
     'return "holds" if low > 0 else "fails" if high < 0 else "inconclusive"',
     'return "holds" if low > 0 or high > 0 else "fails" if high < 0 else "inconclusive"', REPORT_TESTS),
    ("P03", "paired differences the other way round", "utils/report/claims.py",
     "return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}",
     "return {s: b[s] - a[s] for s in sorted(set(a) & set(b))}", REPORT_TESTS),
    ("P04", "metrics bench: the ratio of medians inverted", "utils/report/benches.py",
     'f"{c_med / l_med:.1f}x"', 'f"{l_med / c_med:.1f}x"', REPORT_TESTS),
    ("P05", "metrics bench: the best call taken as the median", "utils/report/benches.py",
     "out[side] = (statistics.median(times), min(times))", "out[side] = (min(times), min(times))", REPORT_TESTS),
    ("P06", "bench summaries: the mean taken for the median", "utils/report/benches.py",
     "return {name: statistics.median(lists[name]) for name in names}",
     "return {name: statistics.mean(lists[name]) for name in names}", REPORT_TESTS),
    ("P07", "a partial or failing suite's time shown as the suite's", "utils/report/benches.py",
     'if summary.get("selection") or summary["failed"]:', "if False:", REPORT_TESTS),
    ("P08", "a claim's pair whose runs ran at two commits not marked", "utils/report/claims.py",
     '"commits": any(map(mixed, pairs))', '"commits": False', REPORT_TESTS),
    ("P09", "seeds beyond the declared ones paired", "utils/report/claims.py",
     "kept = {s: x for s, x in differences.items() if s < planned}", "kept = dict(differences)", REPORT_TESTS),
    ("P10", "a failed tuning row not counted: the grid never completes", "utils/report/grid.py",
     "if len(scores) + len(lost) == 2 * len(MAIN):", "if len(scores) == 2 * len(MAIN):", ["tests/test_tuning.py"]),
    ("P11", "the plan makes a failed run again", "utils/report/plan.py",
     "if key in failed or key in filed", "if key in filed", ["tests/test_plan.py"]),
    ("P12", "tuning runs of other seeds or regimes scored", "utils/report/grid.py",
     'if r.get("seed") != 0 or not declared_regime(r):', "if False:", ["tests/test_tuning.py"]),
    ("P13", "a planned final run named by another seed than its command's", "utils/report/plan.py",
     '"rate": rate, "method": method, "seed": seed}', '"rate": rate, "method": method, "seed": 0}',
     ["tests/test_plan.py"]),
    ("P14", "a GPU run filed in the place of the CPU run of its cell", "utils/report/filing.py",
     'return "" if record["device"] == "cpu" else', 'return "" if True else', ["tests/test_filing.py"]),
    ("P15", "a record written over another cell's file", "utils/report/filing.py",
     "if os.path.exists(target) and not (old and os.path.samefile(target, old)):", "if False:",
     ["tests/test_filing.py"]),
    ("P16", "the claims pair runs of another device or backbone under the headline preset", "utils/report/claims.py",
     "series = series_of([r for r in records if declared_regime(r)])", "series = series_of(records)", REPORT_TESTS),
    ("P17", "the --opt-test rows compared with the declared convention's own rows", "utils/report/claims.py",
     "mmhh_rows(*mmhh_inputs(records), opt_test=True)", "mmhh_rows(*mmhh_inputs(records))",
     ["tests/test_claims.py"]),
    ("P18", "the noise figure's --opt-test panel drawn from the default test", "utils/report/figures.py",
     "opt_test = noise_curves(found[key], opt_test=True)", "opt_test = noise_curves(found[key])",
     ["tests/test_report.py::test_the_noise_figure_draws_opt_test_beside_the_default_test"]),
]


def copy_tree(dst):
    """The working tree's tracked and untracked-not-ignored files, copied under dst/repo as a git
    repository of one commit (filing's tests check a record's commit against the history), with
    dst/shared pointing at ../shared (the suite reads its fixtures from there)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = os.path.join(REPO, name)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dst, "repo", name)), exist_ok=True)
            shutil.copy2(src, os.path.join(dst, "repo", name))
    repo = os.path.join(dst, "repo")
    who = {**os.environ, "GIT_AUTHOR_NAME": "mutation check", "GIT_AUTHOR_EMAIL": "-", "GIT_COMMITTER_NAME": "-",
           "GIT_COMMITTER_EMAIL": "-"}
    for git in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the working tree"]):
        subprocess.run(["git", *git], cwd=repo, env=who, check=True, capture_output=True)
    shared = os.path.join(os.path.dirname(REPO), "shared")
    if os.path.exists(shared):
        os.symlink(shared, os.path.join(dst, "shared"))
    return repo


def run_tests(repo, tests, timeout):
    """(passed, seconds, the first failing test or the reason)."""
    tests = [t for t in tests if os.path.exists(os.path.join(repo, t.split("::")[0]))]
    env = {**os.environ, "HASHING_CACHE": os.environ.get("HASHING_CACHE") or os.path.join(REPO, "cache")}
    tic = time.time()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-W",
                               "ignore", *tests], cwd=repo, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return False, time.time() - tic, f"timeout after {timeout} s"
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in done.stdout.splitlines() if line.startswith("FAILED ")]
    reason = failed[0] if failed else (done.stdout.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return done.returncode == 0, time.time() - tic, reason


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated mutation ids (default: all)")
    p.add_argument("--list", action="store_true", help="print the mutations and exit")
    p.add_argument("--timeout", type=int, default=900, help="seconds per test run (default: 900)")
    p.add_argument("--json", default=os.path.join(REPO, "bench", "out", "mutation_check.json"),
                   help="the summary, rewritten after every mutation, that docs/testing.md's table is written "
                        "from (default: bench/out/mutation_check.json)")
    args = p.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m[0] in args.only.split(",")]
    if args.list:
        for mid, what, path, *_ in chosen:
            print(f"{mid}  {path:<18} {what}")
        return 0
    summary = {**runs.provenance(),
               "chosen": len(chosen), "of": len(MUTATIONS), "complete": False, "mutations": []}
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        repo = copy_tree(tmp)
        needed = sorted({t for m in chosen for t in m[5]})
        ok, seconds, reason = run_tests(repo, needed, args.timeout)
        print(f"unmutated: {'pass' if ok else 'FAIL'} ({seconds:.0f} s) {'' if ok else reason}", flush=True)
        if not ok:
            print("the tests fail without any mutation; fix that first", file=sys.stderr)
            return 1
        outcome = summary["mutations"]
        for mid, what, path, old, new, tests in chosen:
            target = os.path.join(repo, path)
            with open(target) as f:
                original = f.read()
            if original.count(old) != 1:
                status, seconds, reason = "stale", 0.0, f"text found {original.count(old)} times in {path}"
            else:
                with open(target, "w") as f:
                    f.write(original.replace(old, new))
                passed, seconds, reason = run_tests(repo, tests, args.timeout)
                status = "SURVIVED" if passed else "killed"
                with open(target, "w") as f:
                    f.write(original)
            outcome.append(dict(id=mid, group=GROUPS[mid[0]], what=what, file=path, status=status,
                                seconds=round(seconds, 1), by=reason))
            summary["complete"] = len(outcome) == len(chosen)
            runs.write_json(args.json, summary)  # a stopped run keeps what it found
            print(f"{mid} {status:<8} {seconds:5.0f} s  {what}  [{reason if status != 'SURVIVED' else ''}]",
                  flush=True)
    print(f"\n{mutation_block(args.json)}\n\nsummary: {args.json}")
    return 0 if all(o["status"] == "killed" for o in outcome) else 1


if __name__ == "__main__":
    sys.exit(main())
