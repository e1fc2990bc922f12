"""Whether bf16 pays on this CPU: GFLOP/s of the matrix products of a policy's shapes in fp32 and
in bf16, and what `resources.cpu_precision: auto` picks here (bf16 only with bf16 instructions).

    python benchmarks/cpu_precision.py --json benchmarks/results/cpu-precision-<machine>.json

The shapes are SmolLM2-135M's (hidden 576, MLP 1536, vocabulary 49,152) and the embedded
default's GPT-2 (width 128, MLP 512, vocabulary 2,048), at 128 rows (a decoding step's batch;
an emulated bf16 output layer takes seconds a product). Each product runs until `--seconds` have
passed, after one untimed run. The stages' own seconds per step under each format:
`benchmarks/preflight_ab.py --overlay '{resources: {cpu_precision: bf16}}'`.
"""

import argparse
import time

import record
import torch

from pipeline.models import cpu_has_bf16

SHAPES = {  # (rows, inner, outer)
    "smollm2 attention projection": (128, 576, 576),
    "smollm2 MLP": (128, 576, 1536),
    "smollm2 output layer": (128, 576, 49152),
    "gpt2-default attention projection": (128, 128, 128),
    "gpt2-default MLP": (128, 128, 512),
    "gpt2-default output layer": (128, 128, 2048),
}


def gflops(shape: tuple[int, int, int], dtype: torch.dtype, seconds: float) -> float:
    m, k, n = shape
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        runs += 1
    return 2 * m * k * n * runs / (time.perf_counter() - t0) / 1e9


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per product and format")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    native = cpu_has_bf16()
    result = record.provenance() | {
        "bf16_instructions": native,
        "auto_picks": "bf16" if native else "fp32",
        "products": {},
    }
    print(f"bf16 instructions: {native}; resources.cpu_precision auto: {result['auto_picks']}")
    for name, shape in SHAPES.items():
        fp32 = gflops(shape, torch.float32, args.seconds)
        bf16 = gflops(shape, torch.bfloat16, args.seconds)
        result["products"][name] = {
            "shape": shape,
            "fp32_gflops": round(fp32, 2),
            "bf16_gflops": round(bf16, 2),
            "bf16_over_fp32": round(bf16 / fp32, 3),
        }
        ratio = bf16 / fp32
        print(f"  {name:34s} {shape}: fp32 {fp32:7.1f}, bf16 {bf16:7.1f} GFLOP/s ({ratio:.3f})")
    record.write(result, args.json)


if __name__ == "__main__":
    main()
