"""Copy a model folder with its routed experts' weights perturbed: what a broken
quantization of the experts does to a MoE checkpoint (#34).

    python scripts/perturb_experts.py SRC DST [--scale 4] [--seed 0]

Every file of SRC is copied to DST; in *.safetensors, every routed expert's weight
(`…mlp.experts.<e>.{gate,up,down}_proj.weight`; the shared experts, the router and the
rest are kept) gets Gaussian noise of `scale` times the tensor's own standard deviation,
drawn from a generator seeded with `seed` and the tensor's name: the same copy every
time. A quantization whose scales are wrong does much the same: every expert still runs
and the server stays healthy, only its answers go wrong (vllm#54924: 91.6 % → 14.9 % on
GSM8K). Served from the folder (`invoke up --model DST`), the tiny model then answers
tiny-arith worse: `invoke eval --against glmkit/glm-tiny` must fail on it.

Needs only numpy (the kit's host environment has it): safetensors is a JSON header and
raw little-endian tensors, and bfloat16 is float32's upper half.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np

ROUTED = re.compile(r"\.mlp\.experts\.\d+\.(gate|up|down)_proj\.weight$")
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
# Measured on the tiny model (bf16, its trainer's teacher-forced check): noise of 1 or 2
# standard deviations leaves every tiny-arith answer as it was (the shared expert and the
# dense first layer carry them), 4 changes 46 of 50, 8 all 50.
SCALE = 4.0


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(values: np.ndarray) -> np.ndarray:
    """Round to nearest even, as torch's `.to(torch.bfloat16)` does (no NaN here)."""
    bits = values.astype(np.float32).view(np.uint32)
    bits = bits + 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16).astype(np.uint16)


def noisy(name: str, values: np.ndarray, scale: float, seed: int) -> np.ndarray:
    tensor_seed = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8],
                                 "little")
    noise = np.random.default_rng(tensor_seed).standard_normal(values.shape)
    return (values + scale * float(values.std()) * noise).astype(np.float32)


def perturb_file(src: Path, dst: Path, scale: float, seed: int) -> list[str]:
    """`src` written to `dst` with its routed experts perturbed; their names."""
    data = src.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    if size > MAX_HEADER or 8 + size > len(data):
        raise SystemExit(f"{src}: not a safetensors file (header of {size} bytes)")
    header = json.loads(data[8:8 + size])
    body = bytearray(data[8 + size:])
    changed = []
    for name, entry in header.items():
        if name == "__metadata__" or not ROUTED.search(name):
            continue
        begin, end = entry["data_offsets"]
        if entry["dtype"] == "BF16":
            raw = np.frombuffer(bytes(body[begin:end]), dtype="<u2")
            out = f32_to_bf16(noisy(name, bf16_to_f32(raw), scale, seed)).astype("<u2")
        elif entry["dtype"] in ("F32", "F16"):
            kind = "<f4" if entry["dtype"] == "F32" else "<f2"
            raw_f = np.frombuffer(bytes(body[begin:end]), dtype=kind)
            out = noisy(name, raw_f.astype(np.float32), scale, seed).astype(kind)
        else:
            raise SystemExit(f"{src}: {name} is {entry['dtype']}, not a float this script "
                             f"perturbs")
        body[begin:end] = out.tobytes()
        changed.append(name)
    dst.write_bytes(data[:8 + size] + bytes(body))
    return changed


def perturb(src: Path, dst: Path, *, scale: float = SCALE, seed: int = 0) -> list[str]:
    """Copy the model folder `src` to `dst` (which must not exist) with its routed experts
    perturbed; the names of the tensors changed."""
    if not (src / "config.json").is_file():
        raise SystemExit(f"{src} is not a model folder (no config.json)")
    shutil.copytree(src, dst)
    changed = []
    for path in sorted(src.glob("*.safetensors")):
        changed += perturb_file(path, dst / path.name, scale, seed)
    if not changed:
        raise SystemExit(f"{src} has no routed expert weights to perturb")
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--scale", type=float, default=SCALE,
                        help="noise, in units of each tensor's standard deviation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    changed = perturb(args.src, args.dst, scale=args.scale, seed=args.seed)
    print(f"{len(changed)} routed expert tensors perturbed (scale {args.scale}, "
          f"seed {args.seed}) in {args.dst}")


if __name__ == "__main__":
    main()
