#!/usr/bin/env bash
# Here (the CPU machine): prepares .gpu-nb/ for one `device` call that runs every notebook on the GPU machine
# (environment/gpu-notebooks.sh). That machine has no .NET, no NuGet and no internet, so this carries, xz-packed:
#   .gpu-nb/dotnet.tar.xz      the .NET runtime (no SDK: the notebooks reference the library by `#r` of its build
#                              output, never `#r "nuget: …"`, which would need the SDK to restore)
#   .gpu-nb/notebooks.tar.xz   repl/    dotnet-repl (the notebook kernel of the tests, framework-dependent) without
#                                       its Playwright node, its other platforms' natives and its translations
#                              lib/     the library's Release build output without libtorch (the GPU machine's
#                                       PyTorch brings it: two copies in one process abort) and without .pdb
#                              shared/  the VSI-Bench annotations and scored predictions notebook 04 reads
#                              fullsize/ what makes the full-size random-weight checkpoint there: the seed's reference
#                                       source, make_fullsize_fixture.py, and the real Qwen2.5-VL-3B config and tokenizer
# What travels (these, the tracked files and any untracked ones) must stay under 64 MiB; the script prints the sum.
#   environment/gpu-pack-notebooks.sh   then: run(command: "bash environment/gpu-notebooks.sh", carry: [".gpu-nb"])
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SPATIAL_MLLM_SHARED:-$(cd .. && pwd)/shared}
out=.gpu-nb
exclude=$(git rev-parse --git-path info/exclude)   # the main repository's: worktrees share it
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu-nb/' "$exclude" 2>/dev/null || echo '/.gpu-nb/' >> "$exclude"

repl_version=$(python3 -c 'import json; print(json.load(open(".config/dotnet-tools.json"))["tools"]["dotnet-repl"]["version"])')
repl=${NUGET_PACKAGES:-$HOME/.nuget/packages}/dotnet-repl/$repl_version/tools/net10.0/any
[ -f "$repl/dotnet-repl.dll" ] || dotnet tool restore >/dev/null
[ -f "$repl/dotnet-repl.dll" ] || { echo "dotnet-repl $repl_version not found under $repl" >&2; exit 1; }

dotnet build src/SpatialMllm.Research -c Release -nologo -v q >/dev/null
build=src/SpatialMllm.Research/bin/Release/net10.0/linux-x64

rm -rf "$out"
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

dn=$(dirname "$(readlink -f "$(command -v dotnet)")")
tar -C "$dn" -cJf "$out/dotnet.tar.xz" dotnet host shared/Microsoft.NETCore.App

cp -r "$repl" "$stage/repl"
( cd "$stage/repl"
  rm -rf .playwright playwright.ps1 Modules cs de es fr it ja ko pl pt-BR ru tr zh-Hans zh-Hant
  for r in runtimes/*; do case "$r" in runtimes/unix|runtimes/linux|runtimes/linux-x64) ;; *) rm -rf "$r" ;; esac; done )

mkdir -p "$stage/lib"
cp -r "$build"/. "$stage/lib/"
# the same list as ../shared/gpu/pack: libtorch must come from the machine it runs on
find "$stage/lib" -maxdepth 1 \( -name 'libtorch*.so*' -o -name 'libc10*.so*' -o -name 'libgomp*.so*' \
     -o -name 'libshm*.so*' -o -name 'libcaffe2*.so*' -o -name 'libbackend_with_compiler.so' \
     -o -name 'libjitbackend_test.so' -o -name 'libnnapi_backend.so' -o -name 'libaoti_custom_ops.so' \
     -o -name 'libtorchbind_test.so' -o -name '*.pdb' \) -delete
rm -rf "$stage/lib/runtimes"

mkdir -p "$stage/shared/fixtures/vsibench-scoring" "$stage/shared/data/vsibench" "$stage/fullsize/qwen"
cp "$shared/fixtures/vsibench-scoring/vsibench-predictions-a.jsonl" "$stage/shared/fixtures/vsibench-scoring/"
cp "$shared/data/vsibench/test.jsonl" "$stage/shared/data/vsibench/"
cp -r "$shared/reference/spatial-mllm" "$stage/fullsize/ref"
cp "$shared/tools/make_fullsize_fixture.py" "$stage/fullsize/"
cp "$shared"/data/qwen2.5-vl-3b/{config.json,vocab.json,merges.txt,added_tokens.json,chat_template.json,preprocessor_config.json,generation_config.json} "$stage/fullsize/qwen/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
tar -C "$stage" -cJf "$out/notebooks.tar.xz" repl lib shared fullsize

du -b "$out"/* | awk '{ printf "%-28s %6.1f MiB\n", $2, $1 / 1048576 }'
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb | tail -1 | cut -f1)
packed=$(du -cb "$out"/* | tail -1 | cut -f1)
total=$((tracked + ${untracked:-0} + packed))
awk -v t="$tracked" -v u="${untracked:-0}" -v p="$packed" 'BEGIN { m = 1048576;
  printf "travels: %.1f MiB (tracked %.1f + untracked %.1f + .gpu-nb %.1f) of 64 MiB\n", (t + u + p) / m, t / m, u / m, p / m }'
[ "$total" -lt $((64 * 1048576)) ] || { echo "over 64 MiB: it will not travel" >&2; exit 1; }
echo 'then: run(command: "bash environment/gpu-notebooks.sh", carry: [".gpu-nb"])'
