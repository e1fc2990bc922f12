"""Logging and progress bars shared by the stages (each rule sends stderr to its log file)."""

import logging
import sys

from tqdm.auto import tqdm


def get_logger(name: str) -> logging.Logger:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    return logging.getLogger(name)


def progress(iterable=None, **kwargs):
    """A tqdm bar that stays readable in a log file: redraw every 10 s when not on a terminal."""
    kwargs.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 10.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, file=sys.stderr, **kwargs)
