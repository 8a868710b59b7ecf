"""MMHH (Kang et al., ICCV 2019): main() of train_mmhh.py.

Training: a backbone and one hash layer, a pair loss (HashNet's, "Hamming", the released
default; or MMHH's) against the batch itself or against a memory of the whole training
set, plus DHN's quantization (utils.mmhh.engine). At the end a snapshot is written and
tested (utils.mmhh.evaluate), and the continuous outputs and labels of the test are saved
as .npy files where the released code saved them.
"""
import os
import shlex


from utils import distributed, options
from utils.errors import PROGRESS, UserError, one_line
from utils.data.datasets import get_dataset
from utils.data.splits import save_validation
from utils.mmhh import common, engine
from utils.mmhh.args import output_paths, resolve, resumed, target_settings
from utils.mmhh.evaluate import report, results_name, results_record, save_test_output, test_model
from utils.records import thread_counts
from utils.runs import (RunFolder, check_device, choose_device, command_line, device_name, git_commit,
                        load_checkpoint, load_state, read_json, recorded_path, write_json)


def train_main(args):
    """train_mmhh.py with the arguments of its parser (or of the run it resumes); under torchrun
    (docs/distributed.md) one of its processes."""
    PROGRESS.reset()
    args = resumed(args) if args.resume else resolve(args)
    with distributed.process_group(args.gpu_id) as device:
        return _train_main(args, device)


def _train_main(args, device):
    check_device(args.gpu_id, "--gpu_id")
    main_process = distributed.is_main()  # only rank 0 writes, and tests at the end
    run_dir, snapshot, outputs = output_paths(args)
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    locate = " ".join(f"--{k} {shlex.quote(str(getattr(args, k)))}" for k in ("log_dir", "annotation", "s_dataset",
                                                                               "t_dataset"))
    folder = RunFolder(run_dir, "--annotation", resume=args.resume, overwrite=args.overwrite,
                       resume_hint=f"train_mmhh.py {locate} --resume")
    with folder:  # a new run that fails before its first checkpoint leaves nothing (RunFolder.__exit__)
        with folder.starting():  # nothing is removed or written until the inputs are checked
            if main_process:
                folder.writable(args.log_dir, "--log_dir")
                folder.claim()
                theirs = [path for path in (snapshot, os.path.join(outputs, "test_code.npy")) if os.path.exists(path)]
                if theirs and not args.resume and not args.overwrite:
                    raise UserError(f"{theirs[0]} belongs to another run of annotation {args.annotation}: use another "
                                    "--annotation, or add --overwrite to replace that run's files")
                for place, option in ((args.snap_path, "--snap_path"), (args.test_output_dir, "--test_output_dir")):
                    folder.writable(place, option)
            device = device or choose_device(args.gpu_id, "--gpu_id")
            if not main_process:  # rank 0 saves the split first, the others read it
                distributed.barrier()
            data, train_labels, protocol = common.data_for(args.s_dataset, vars(args),
                                                    run_dir if args.resume or not main_process else None)
            target = target_settings(vars(args))
            same = get_dataset(args.t_dataset).name == data.info.name and \
                (target["data_root"], target["image_root"]) == (args.data_root, args.image_root)
            test_data = data if same else common.data_for(args.t_dataset, {**target, "label_noise": 0.0}, None)[0]
            model = common.build_network(args.image_network, args.hash_bit, args.pretrained, args.weights, args.seed)
            if args.pre_model_path:
                path = common.snapshot_path(args.pre_model_path, "--pre_model_path")
                advice = "give --pre_model_path a snapshot of the same --hash_bit and --image_network"
                load_state(model, load_checkpoint(path, common.writer(args), advice)["model"], path, advice)
            B = min(args.batch_size, len(data.train.labels))
            if B % distributed.world_size():
                raise UserError(f"--batch_size {B} cannot be shared equally by {distributed.world_size()} "
                                "processes; make it a multiple of the number of processes")
            ckpt = None
            if args.resume and os.path.exists(ckpt_path):
                ckpt = load_checkpoint(ckpt_path, common.writer(args),
                                       f"this is not the checkpoint of the run in {run_dir}; "
                                       f"start afresh with another --annotation")
            validation = protocol.pop("validation_split", None)
            if main_process:
                folder.start()
                data.save_split(os.path.join(run_dir, "split.json"))
                if validation is not None:  # positions in the training part of the split just saved
                    save_validation(os.path.join(run_dir, "split.json"), validation, args.seed)
                write_json(os.path.join(run_dir, "protocol.json"), protocol)  # the corrupted items, unseen classes
                if not args.resume:
                    write_json(os.path.join(run_dir, "run.json"), {**options.public(args), "kind": "MMHH",
                                                                   "threads": thread_counts(),
                                                                   "command": command_line()})
                distributed.barrier()
        PROGRESS.update(resume=f"python train_mmhh.py {locate} --resume")
        if main_process:
            which = "validation " if validation is not None else ""
            print(f"{args.distance_type} loss on {data.info.name} ({len(data.train.labels)} train, "
                  f"{len(data.query.labels)} {which}queries, {len(data.database.labels)} {which}database), "
                  f"{args.hash_bit} bits, preset {args.preset}, {args.image_network}, device {device_name(device)}, "
                  f"commit {git_commit()}"
                  + distributed.describe())
        seconds = engine.train(args, data, model, ckpt, device, run_dir, snapshot, train_labels)
        if not main_process:
            return None
        return test_snapshot(args, model, test_data, device, run_dir, snapshot, outputs, seconds, protocol)


def test_snapshot(args, model, test_data, device, run_dir, snapshot, outputs, seconds, protocol):
    """The end-of-training test of the snapshot just written: its metrics, the released code's
    output files and the results record (returned); `protocol` goes to the results file."""
    PROGRESS.update(where="while testing the snapshot", resume=f"python test_mmhh.py --model_path {snapshot}")
    try:
        result, arrays = test_model(model, test_data, device, args, args.test_sample_ratio, args.seed, args.radius,
                                    args.batch_size)
    except UserError as e:
        raise UserError(f"{one_line(e)} (the snapshot {snapshot} is saved: test it with python test_mmhh.py "
                        f"--model_path {snapshot})") from None
    report(result, args.radius)
    save_test_output(outputs, arrays, test_data.info.classes)
    print(f"test outputs: {outputs}")
    # a resumed run's record keeps the command that started it (run.json), which starts it again
    started = read_json(os.path.join(run_dir, "run.json"), "run record").get("command") if args.resume else None
    resumed_by = {"resumed_by": command_line()} if started else {}
    record = results_record(test_data, args, result, seconds, device, args.hash_bit, protocol, command=started,
                            test_output=recorded_path(outputs), **resumed_by,
                            weights=getattr(model.backbone, "pretrained_from", None),
                            world_size=distributed.world_size())
    write_json(os.path.join(run_dir, "results", results_name(test_data.info.name, record["method"], args.hash_bit,
                                                             protocol["eval_on"])), record)
    return record
