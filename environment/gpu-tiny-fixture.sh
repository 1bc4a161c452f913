#!/usr/bin/env bash
# On the GPU machine: the tiny fixture's weights (.gpu/fixtures/spatial-mllm-tiny/model.safetensors, 9.6 MB), rebuilt by
# the shared generator from the seed, frames and size in its io.json instead of carried: with them the repository and
# .gpu/ would pass the 64 MiB a call carries. The rebuilt fixture's expected outputs must equal the carried io.safetensors
# (they did bit for bit on 2026-12-07), else it stops. gpu-tests.sh and gpu-fixtures.sh run it first.
set -euo pipefail
TINY=$PWD/.gpu/fixtures/spatial-mllm-tiny
[ -f "$TINY/model.safetensors" ] && exit 0
scratch=$(mktemp -d)
python3 - "$TINY" "$scratch" "$PWD/.gpu/ref" "$PWD/.gpu/tools/make_fixtures.py" <<'PY'
import json, subprocess, sys
tiny, scratch, ref, tool = sys.argv[1:]
spec = json.load(open(f"{tiny}/io.json"))
args = [sys.executable, tool, ref, scratch, "spatial-mllm-tiny", str(spec["seed"]), "--frames", str(spec["frames"]),
        "--hw", str(spec["height"]), str(spec["width"])] + ([] if spec["tied"] else ["--untied"])
subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
from safetensors.torch import load_file
carried, rebuilt = load_file(f"{tiny}/io.safetensors"), load_file(f"{scratch}/io.safetensors")
worst = max((carried[k].double() - rebuilt[k].double()).abs().max().item() for k in carried if carried[k].is_floating_point())
print(f"tiny fixture rebuilt from seed {spec['seed']}: its outputs differ from the carried ones by at most {worst}")
sys.exit(0 if worst == 0 else 1)
PY
cp "$scratch/model.safetensors" "$TINY/model.safetensors"
rm -rf "$scratch"
