"""MAH-cascade on NUS-WIDE (21 concepts), with the original script's defaults (spec MAH.md): target 8 bits,
auxiliary 10,12, head weights 4,2,1, gamma 200, 300 outer iterations of 3 epoch(s), batch 100,
8000 sampled database items, evaluation every 10. `--help` lists every option."""
from utils.errors import run
from utils.mah import get_args_parser, main

if __name__ == "__main__":
    parser = get_args_parser()
    parser.set_defaults(script="cascade_NUS_WIDE", arch="cascade", dataset="nuswide21", paper=dict(
        bits="8", aux_for={8: (10, 12)}, head_weights="4,2,1", gamma=200, max_iter=300, epochs=3,
        batch_size=100, num_samples=8000, eval_every=10))
    run(main, parser.parse_args())
