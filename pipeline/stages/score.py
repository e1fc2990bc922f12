"""Stage `score`: the ground-truth reward, p(positive sentiment), of every sample.

The scored text is the prompt and the completion decoded together, as the DPO paper scores it
(the prompt alone already carries sentiment; both pi_ref and the trained policies see the same
prompts, so the comparison stays fair). The reward's backends: pipeline.rewards.
"""

from pipeline import cli, io
from pipeline.logs import get_logger
from pipeline.rewards import Reward, make_scorer
from pipeline.settings import read

log = get_logger("score")


def main(argv=None):
    args = cli.parse(__doc__, ["samples"], ["out"], argv)
    scorer = make_scorer(read(Reward, args.params, "score"))
    table = io.read_parquet(args.samples, ["text"])
    table["score"] = scorer(table["text"].tolist())
    io.write_parquet(table, args.out)
    log.info(
        "%d samples scored, mean %.3f (sd %.3f) -> %s",
        len(table),
        table["score"].mean(),
        table["score"].std(),
        args.out,
    )


if __name__ == "__main__":
    cli.run(main)
