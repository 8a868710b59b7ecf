"""MAH-cascade on MIRFlickr-25K, with the original script's defaults (spec MAH.md): target 8 bits,
auxiliary 10,12, head weights 6,2,1, gamma 100, 100 outer iterations of 3 epoch(s), batch 64,
2000 sampled database items, evaluation every 10. `--help` lists every option."""
from utils.errors import run
from utils.mah import get_args_parser, main

if __name__ == "__main__":
    parser = get_args_parser()
    parser.set_defaults(script="cascade_FLICKR", arch="cascade", dataset="flickr25k", paper=dict(
        bits="8", aux_for={8: (10, 12)}, head_weights="6,2,1", gamma=100, max_iter=100, epochs=3,
        batch_size=64, num_samples=2000, eval_every=10))
    run(main, parser.parse_args())
