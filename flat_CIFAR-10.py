"""MAH-flat on CIFAR-10, with the original script's defaults (spec MAH.md): target 6 bits,
auxiliary 48,96, head weights 4,2,1, gamma 200, 41 outer iterations of 3 epoch(s), batch 64,
2000 sampled database items, evaluation every 10. `--help` lists every option."""
from utils.errors import run
from utils.mah import get_args_parser, main

if __name__ == "__main__":
    parser = get_args_parser()
    parser.set_defaults(script="flat_CIFAR-10", arch="flat", dataset="cifar10", paper=dict(
        bits="6", aux_for={6: (48, 96)}, head_weights="4,2,1", gamma=200, max_iter=41, epochs=3,
        batch_size=64, num_samples=2000, eval_every=10))
    run(main, parser.parse_args())
