"""Target `download`: every hub id the config names, fetched into the Hugging Face cache.

Compute nodes of most clusters have no internet. Run this once on a machine that has it (the
login node), then submit with HF_HUB_OFFLINE=1: every job reads the same cache
(`HF_HOME`, by default ~/.cache/huggingface; on a cluster, a folder the compute nodes see).

- `data.path` (data.source hf): `datasets.load_dataset` of each split the data stage reads, the
  same call, which also prepares the cache that the stage reads offline;
- `policy.init` and `reward.model` (reward.backend hf): `huggingface_hub.snapshot_download` of
  what `from_pretrained` reads here: config, tokenizer and safetensors weights (never .bin,
  TensorFlow, Flax or ONNX files, which this pipeline does not load).

Local folders are skipped. Every failure is reported, each naming its config key and id.
"""

from pathlib import Path

import datasets
from huggingface_hub import snapshot_download

from pipeline import cli
from pipeline.config import Data, borrow, record
from pipeline.logs import get_logger
from pipeline.settings import read
from pipeline.sources import hub_offline, is_gguf, model_source

log = get_logger("download")


@record
class Settings:
    """The `download` rule's settings: the reviews (a hub dataset's splits are fetched as the data
    stage reads them), the policy and the reward's classifier, each fetched if a hub id."""

    data: borrow("data")
    init: borrow("policy.init")
    reward: borrow("reward")


MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]


def hub_ids(p: Settings) -> list[tuple[str, str]]:
    """(config key, hub id) of each input named by hub id; local folders are not listed."""
    named = []
    if p.data.source == "hf":
        named.append(("data.path", p.data.path))
    if p.init != "scratch" and not is_gguf(p.init):
        named.append(("policy.init", p.init))
    if p.reward.backend == "hf":
        named.append(("reward.model", p.reward.model))
    return [(key, name) for key, name in named if model_source(name, key) == "hub"]


def data_splits(data: Data) -> list[str]:
    splits = [data.split] if isinstance(data.split, str) else list(data.split)
    return splits + ([data.eval_split] if data.eval_split else [])


def fetch(key: str, name: str, data: Data) -> str:
    """Where `name` now lies in the cache."""
    if key == "data.path":
        for split in data_splits(data):
            ds = datasets.load_dataset(name, split=split)
        return str(Path(ds.cache_files[0]["filename"]).parent)
    folder = snapshot_download(name, allow_patterns=MODEL_FILES)
    if not any(Path(folder).glob("*.safetensors")):
        raise ValueError("it has no safetensors weights, the only ones this pipeline loads")
    return folder


def main(argv=None):
    args = cli.parse(__doc__, [], [], argv)
    p = read(Settings, args.params, "download")
    named = hub_ids(p)
    if not named:
        log.info("nothing to download: every input is local or built here")
        return
    failed = []
    for key, name in named:
        log.info("%s '%s': fetching", key, name)
        try:
            log.info("%s '%s' -> %s", key, name, fetch(key, name, p.data))
        except Exception as err:  # noqa: BLE001 - each id's failure is reported, then all at once
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            failed.append(f"  {key} '{name}': {reason}")
    if failed:
        offline = "HF_HUB_OFFLINE is set: unset it here. " if hub_offline() else ""
        raise FileNotFoundError(
            f"could not download {len(failed)} of {len(named)} inputs:\n"
            + "\n".join(failed)
            + f"\n{offline}Run `snakemake --cores 1 download` with the same config on a machine"
            " with internet access (a cluster's login node), or fetch each elsewhere and set its"
            " key to the local folder."
        )
    log.info("%d inputs in the cache: the jobs can now run with HF_HUB_OFFLINE=1", len(named))


if __name__ == "__main__":
    cli.run(main)
