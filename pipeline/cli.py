"""The one way a stage reads its arguments: file paths plus its config section as JSON.

Snakemake rules pass exactly the config a stage depends on as one JSON string, so that editing a
value reruns that stage (and what depends on it) and nothing else.
"""

import argparse
import json
import sys


def parse(description: str, inputs: list[str], outputs: list[str], argv=None,
          optional: tuple[str, ...] = ()):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=json.loads, default={}, help="config section as JSON")
    for name in inputs + outputs:
        parser.add_argument(f"--{name.replace('_', '-')}", required=name not in optional)
    return parser.parse_args(argv)


def run(main, argv=None) -> None:
    """Run a stage; an expected failure (bad input) ends with one clear line, not a traceback."""
    try:
        main(argv)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
