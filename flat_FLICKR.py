"""MAH-flat on MIRFlickr-25K, with the original script's defaults (spec MAH.md): target 6 bits,
auxiliary 8,16, head weights 4,2,1, gamma 200, 300 outer iterations of 1 epoch(s), batch 100,
2000 sampled database items, evaluation every 10. `--help` lists every option."""
from utils.errors import run
from utils.mah import get_args_parser, main

if __name__ == "__main__":
    parser = get_args_parser()
    parser.set_defaults(script="flat_FLICKR", arch="flat", dataset="flickr25k", paper=dict(
        bits="6", aux_for={6: (8, 16)}, head_weights="4,2,1", gamma=200, max_iter=300, epochs=1,
        batch_size=100, num_samples=2000, eval_every=10))
    run(main, parser.parse_args())
