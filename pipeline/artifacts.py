"""Whether a study's cached artifacts still load: Snakemake trusts a file that exists, so a weights
file or table cut short (a full disk, a copy that stopped) would otherwise be read, and fail, only
when a stage next needs it.

    python -m pipeline.artifacts [results]

lists every broken artifact under the folder, one line each, and exits 1 if there is any; deleting
a broken artifact (a model's whole folder) makes the next `snakemake` run rebuild it and what
depends on it. The stages check what they read the same way (`check_weights`, `io.read_parquet`),
so a broken input stops a job in one line naming the file.
"""

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
from safetensors import safe_open

REBUILD = "if Snakemake made it, delete it and the next run rebuilds it"


def broken(path: Path, why) -> ValueError:
    """The error of an artifact that does not load, naming it and what to do."""
    return ValueError(f"{path}: does not load ({str(why).strip()}); {REBUILD}")


def check_weights(folder, required: bool = True) -> None:
    """Every safetensors file of a model folder opens and holds every byte its header declares
    (reading the header is enough: safetensors checks the data's length against it); without
    `required`, a folder with none passes (the loader then says what it lacks)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files and required:
        raise broken(Path(folder), "no *.safetensors weights")
    for path in files:
        try:
            with safe_open(path, framework="pt") as f:
                f.keys()
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise broken(path, err) from None


def check_model(folder: Path) -> None:
    """A model folder as save_pretrained leaves it: its config and its weights."""
    if not (folder / "config.json").is_file():
        raise broken(folder, "no config.json")
    check_weights(folder)


def check_json(path: Path) -> None:
    try:
        json.loads(path.read_text())
    except ValueError as err:
        raise broken(path, err) from None


def check_table(path: Path) -> None:
    try:
        pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - pyarrow's errors name no common base
        raise broken(path, err) from None


def problems(root: Path) -> list[str]:
    """One line per broken artifact under `root`: model folders (the trained policies' and their
    checkpoints' are what the stages load), Parquet tables, JSON files."""
    found = []
    models = sorted({p.parent for p in root.rglob("config.json")} | set(root.rglob("model")))
    models = [m for m in models if m.is_dir()]
    checks = [(check_model, m) for m in models]
    checks += [(check_table, p) for p in sorted(root.rglob("*.parquet"))]
    checks += [(check_json, p) for p in sorted(root.rglob("*.json"))]
    for check, path in checks:
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # a writer's temporary files, and Snakemake's own
        try:
            check(path)
        except ValueError as err:
            found.append(str(err))
    return found


def main(argv=None) -> int:
    root = Path((argv if argv is not None else sys.argv[1:] or ["results"])[0])
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 2
    found = problems(root)
    for line in found:
        print(line)
    print(f"{len(found)} broken artifact(s) under {root}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
