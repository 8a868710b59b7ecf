"""MAH-flat on NUS-WIDE (21 concepts), with the original script's defaults (spec MAH.md): target 4 bits,
auxiliary 8,12, head weights 10,2,1, gamma 200, 300 outer iterations of 1 epoch(s), batch 100,
8000 sampled database items, evaluation every 10. `--help` lists every option."""
from utils.errors import run
from utils.mah import get_args_parser, main

if __name__ == "__main__":
    parser = get_args_parser()
    parser.set_defaults(script="flat_NUS_WIDE", arch="flat", dataset="nuswide21", paper=dict(
        bits="4", aux_for={4: (8, 12)}, head_weights="10,2,1", gamma=200, max_iter=300, epochs=1,
        batch_size=100, num_samples=8000, eval_every=10))
    run(main, parser.parse_args())
