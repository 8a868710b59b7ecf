"""MAH-cascade on CIFAR-10, with the original script's defaults (spec MAH.md): target 4 bits,
auxiliary 8,16, head weights 4,2,1, gamma 200, 41 outer iterations of 3 epoch(s), batch 64,
2000 sampled database items, evaluation every 1. `--help` lists every option."""
from utils.errors import run
from utils.mah import get_args_parser, main

if __name__ == "__main__":
    parser = get_args_parser()
    parser.set_defaults(script="cascade_CIFAR-10", arch="cascade", dataset="cifar10", paper=dict(
        bits="4", aux_for={4: (8, 16)}, head_weights="4,2,1", gamma=200, max_iter=41, epochs=3,
        batch_size=64, num_samples=2000, eval_every=1))
    run(main, parser.parse_args())
