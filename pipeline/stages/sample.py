"""Stage `sample`: n completions per training prompt from pi_ref, by ancestral sampling
(pipeline.sampling; by default pure sampling, the distribution whose log-probs are measured)."""

from pipeline import cli, io
from pipeline.config import Sample as Settings
from pipeline.logs import get_logger
from pipeline.models import device, load_causal_lm
from pipeline.safe_loading import load_tokenizer
from pipeline.sampling import sample_table
from pipeline.settings import read
from pipeline.sources import check_context, context_length

log = get_logger("sample")


def main(argv=None):
    args = cli.parse(__doc__, ["prompts", "policy"], ["out"], argv)
    p = read(Settings, args.params, "sample")
    dev = device()
    tok = load_tokenizer(args.policy, "policy")
    model = load_causal_lm(args.policy, "policy").to(dev).eval()
    prompts = io.read_parquet(args.prompts, ["prompt_id", "prompt_ids"])
    longest = int(prompts["prompt_ids"].map(len).max()) + p.max_new_tokens
    check_context(
        context_length(model.config.to_dict()),
        "the policy's positions",
        [("the longest prompt + sample.max_new_tokens", longest)],
    )
    table = sample_table(model, tok, prompts, p)
    io.write_parquet(table, args.out)
    log.info(
        "%d samples of %d prompts, %.1f%% ended with EOS, mean length %.1f tokens -> %s",
        len(table),
        len(prompts),
        100 * table["ended"].mean(),
        table["completion_ids"].map(len).mean(),
        args.out,
    )


if __name__ == "__main__":
    cli.run(main)
