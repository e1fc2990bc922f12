"""The one way a stage reads its arguments: file paths plus its config section as JSON.

Snakemake rules pass exactly the config a stage depends on as one JSON string, so that editing a
value reruns that stage (and what depends on it) and nothing else.
"""

import argparse
import gc
import json
import os
import sys

from pipeline.methods import load_extensions

# A torch stage's number format on a CPU (resources.cpu_precision), for this process and the
# processes it starts; pipeline.models reads it.
CPU_PRECISION = "PIPELINE_CPU_PRECISION"
PRECISIONS = ("fp32", "bf16", "auto")


def parse(
    description: str,
    inputs: list[str],
    outputs: list[str],
    argv=None,
    optional: tuple[str, ...] = (),
    lists: tuple[str, ...] = (),
):
    """The stage's arguments: one path each, or several for the inputs named in `lists` (a rule's
    list of files, each of which it declares). A stage that reads method records gets
    `extensions` in its params (train.extensions): their methods are registered here, before the
    stage looks one up. A torch stage's rule passes `--precision`: set here for the process and
    the processes it starts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=json.loads, default={}, help="config section as JSON")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="a torch stage's number format on a CPU (resources.cpu_precision; CUDA: bf16)",
    )
    for name in inputs + outputs:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            required=name not in optional,
            nargs="+" if name in lists else None,
        )
    args = parser.parse_args(argv)
    load_extensions(args.params.get("extensions", []))
    if args.precision:
        os.environ[CPU_PRECISION] = args.precision
    return args


def run(main, argv=None) -> None:
    """Run a stage; an expected failure (bad input) ends with one clear line, not a traceback.

    The garbage collector leaves alone what exists before the stage starts and when it ends: at
    exit the interpreter would otherwise walk every object torch and transformers loaded, for
    memory the OS takes back anyway."""
    gc.freeze()
    try:
        main(argv)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    finally:
        gc.freeze()
