"""MAH (Luo et al., arXiv:1809.09329): main() of the six scripts.

Each script sets its paper defaults (the table in docs/MAH.md) and calls main.
Per target code length c0: a shared backbone with three heads (c0 and two auxiliary
lengths; one head, c0 alone, for ADSH under --adsh), the ADSH loss per head weighted and
summed, and the database codes of every head learned by DCC once per outer iteration
(utils.mah.engine). Retrieval: sign of head 0 for queries, V of head 0 for the database.
"""
import os

import torch

from utils import distributed
from utils.data import protocols
from utils.data.loader import load_data
from utils.errors import PROGRESS, UserError
from utils.mah.args import arguments, method_name, resolve, resumed
from utils.mah.engine import train_length
from utils.models import build_backbone
from utils.records import results_record, thread_counts
from utils.runs import (JsonLog, RunFolder, check_device, choose_device, command_line, default_output_dir, device_name,
                        git_commit, read_json, write_json)


def main(args):
    """Train every --bits length; under torchrun (see docs/distributed.md) one of its processes."""
    with distributed.process_group(args.gpu) as device:
        return _main(args, device)


def _main(args, device):
    PROGRESS.reset()
    args = resumed(args) if args.resume else resolve(args)
    check_device(args.gpu)
    if not args.resume:
        args.command = command_line()  # the command that can start this run again, kept across resumes
        # one folder for all processes: rank 0's (its default name holds the time)
        args.output_dir = distributed.broadcast_object(args.output_dir or default_output_dir(args.script))
    main_process = distributed.is_main()
    resume_command = f"python {args.script}.py --resume {args.output_dir}"
    folder = RunFolder(args.output_dir, "--output-dir", resume=bool(args.resume), overwrite=args.overwrite,
                       resume_hint=f"--resume {args.output_dir}")
    split_file = os.path.join(args.output_dir, "split.json")
    with folder:  # a new run that fails before its first checkpoint leaves nothing (RunFolder.__exit__)
        with folder.starting():  # nothing is removed or written until the inputs are checked
            if main_process:  # only rank 0 writes
                folder.claim()
            device = device or choose_device(args.gpu)
            if not main_process:  # rank 0 draws and saves the split first, the others read it
                distributed.barrier()
            data = load_data(args.dataset, args.data_root, args.image_root, args.path_prefix,
                             protocols.split_protocol(args.protocol, "dpsh"), args.seed,
                             split_file=split_file if args.resume or not main_process else None,
                             download=args.download, missing=args.missing_images, settings=vars(args))
            # MAH trains on its database (its seen items under unseen classes)
            data, pool, train_labels, protocol = protocols.prepare(data, args.protocol, args.seen_fraction,
                                                                   args.label_noise, args.seed, "database")
            check_sizes(data, args, pool)
            torch.manual_seed(args.seed)  # the initialisation comes from --seed
            module, features = build_backbone(args.backbone, args.pretrained, args.weights)  # the weights load
            backbone = (module, features, torch.get_rng_state())  # every length copies it (engine.build_model)
            if main_process:
                folder.start()
                data.save_split(split_file)
                write_json(folder.file("protocol.json"), protocol)  # the corrupted items, the unseen classes
                if not args.resume:
                    write_json(folder.file("run.json"), {**arguments(args), "command": args.command,
                                                         "kind": "MAH", "threads": thread_counts()})
                distributed.barrier()
        PROGRESS.update(resume=resume_command)
        return train_lengths(args, data, device, backbone, pool, train_labels, protocols.summary(protocol))


def check_sizes(data, args, pool):
    """Fail before anything is written when the processes cannot share the batches or queries."""
    m = min(args.num_samples, len(getattr(data, pool).labels))
    smallest = m % args.batch_size or min(args.batch_size, m)  # the last batch of an epoch
    if smallest < distributed.world_size():
        raise UserError(f"a batch of {smallest} items cannot be shared by {distributed.world_size()} processes; "
                        "choose --num-samples and --batch-size so that every batch has one item per process")
    if len(data.query.labels) < distributed.world_size():  # each encodes its share of the queries (see evaluate)
        raise UserError(f"the query set ({len(data.query.labels)} items) cannot be shared by "
                        f"{distributed.world_size()} processes: run with at most as many processes as queries")


def learning_curve(log, c0):
    """The target head's metrics at every evaluation of length c0, from the run's log: a list of
    {"iteration" (outer iterations done), "map_tie_aware", "map_at_5000"}."""
    return [{"iteration": r["iteration"] + 1, **{k: r["metrics"][k] for k in ("map_tie_aware", "map_at_5000")}}
            for r in JsonLog(log).records() if r.get("bits") == c0 and "metrics" in r]


def train_lengths(args, data, device, backbone, pool, train_labels, protocol):
    main_process = distributed.is_main()
    method = method_name(args)
    if main_process:
        print(f"{method} on {data.info.name} ({len(data.query.labels)} queries, {len(data.database.labels)} database), "
              f"preset {args.preset}, backbone {args.backbone}, device {device_name(device)}, commit {git_commit()}"
              + distributed.describe())
        if protocol["protocol"] == "unseen" or protocol["label_noise"]:
            print(f"protocol {protocol['protocol']}" + (f", unseen classes {protocol['unseen_classes']} "
                  f"({protocol['train_items']} training items)" if protocol["protocol"] == "unseen" else "")
                  + f", label noise {protocol['label_noise']:g} ({protocol['corrupted_items']} items)")
    rows = []
    for c0 in args.bits:
        path = os.path.join(args.output_dir, "results", f"{data.info.name}_{method}_{c0}bits.json")
        if os.path.exists(path):  # finished before the run was resumed
            rows.append(read_json(path, "results file", keys=("bits", "metrics", "seconds")))
            continue
        trained = train_length(args, data, c0, device, args.output_dir, backbone, pool, train_labels)
        if not main_process:
            continue
        result, shown, seconds, lengths, weights = trained
        record = results_record(data.info.name, method, c0, args.preset, args.backbone, args.seed, result, seconds,
                                device, arguments(args), protocol, command=args.command,
                                aux_bits=list(lengths[1:]), database_order="seeded random", weights=weights,
                                retrieval=shown, world_size=distributed.world_size(),
                                curve=learning_curve(os.path.join(args.output_dir, "log.jsonl"), c0))
        if args.resume:
            record["resumed_by"] = command_line()
        write_json(path, record)
        rows.append(record)
    if not main_process:
        return rows
    print(f"\n{'bits':>4} {'tie-aware MAP':>13} {'MAP (index ties)':>16} {'mAP@5000':>8} {'P@5000':>7} "
          f"{'minutes':>7}")
    for row in rows:
        r = row["metrics"]
        print(f"{row['bits']:>4} {r['map_tie_aware']:>13.4f} {r['map']:>16.4f} {r['map_at_5000']:>8.4f} "
              f"{r['precision_at_5000']:>7.4f} {row['seconds'] / 60:>7.1f}")
    return rows
