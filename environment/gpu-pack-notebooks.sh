#!/usr/bin/env bash
# Here (the CPU machine): prepares .gpu-nb/ for running every notebook on the GPU machine (environment/gpu-notebooks.sh).
# That machine has no .NET, no NuGet, no ffmpeg and no internet, so this packs with xz:
#   .gpu-nb/dotnet.tar.xz      the .NET runtime (no SDK: the notebooks reference the library by `#r` of its build
#                              output, never `#r "nuget: …"`, which would need the SDK to restore)
#   .gpu-nb/notebooks.tar.xz   repl/    dotnet-repl (the notebook tests' kernel, framework-dependent) without its
#                                       Playwright node, its other platforms' natives and its translations
#                              lib/     the library's Release build output without libtorch (the GPU machine's
#                                       PyTorch brings it: two copies in one process abort) and without .pdb
#                              shared/  the VSI-Bench annotations and scored predictions notebook 04 reads
#   .gpu-nb/fullsize.tar.xz    what makes the full-size random-weight checkpoint there: the seed's reference source,
#                              make_fullsize_fixture.py, the real Qwen2.5-VL-3B config and tokenizer
#   .gpu-nb/ffmpeg.tar.xz      static ffmpeg 4.1 + ffprobe from npm (37 MB: too big to travel with the rest, so it goes
#                              in an earlier call, which also makes the checkpoint; see benchmarks/README.md)
# dotnet.tar.xz and ffmpeg.tar.xz are kept when present (delete them to remake). A call carries at most 64 MiB with
# the tracked files; the script prints what each of the two calls carries and fails if one is over:
#   1. run(command: "STEP=prepare bash environment/gpu-notebooks.sh", carry: [".gpu-nb/ffmpeg.tar.xz", ".gpu-nb/fullsize.tar.xz"])
#   2. run(command: "bash environment/gpu-notebooks.sh",
#          carry: [".gpu-nb/dotnet.tar.xz", ".gpu-nb/notebooks.tar.xz", ".gpu-nb/fullsize.tar.xz"])
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

mkdir -p "$out"
rm -f "$out/notebooks.tar.xz" "$out/fullsize.tar.xz"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

dn=$(dirname "$(readlink -f "$(command -v dotnet)")")
[ -f "$out/dotnet.tar.xz" ] || tar -C "$dn" -cJf "$out/dotnet.tar.xz" dotnet host shared/Microsoft.NETCore.App

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
tar -C "$stage" -cJf "$out/notebooks.tar.xz" repl lib shared
tar -C "$stage" -cJf "$out/fullsize.tar.xz" fullsize

# the static ffmpeg from npm, as benchmarks/README.md fetches it (unpacked there into /tmp/ffmpeg/@ffmpeg-installer/…)
if [ ! -f "$out/ffmpeg.tar.xz" ]; then
  npm_dir=${FFMPEG_NPM_DIR:-/tmp/ffmpeg-npm}
  if [ ! -x "$npm_dir/node_modules/@ffmpeg-installer/linux-x64/ffmpeg" ] || [ ! -x "$npm_dir/node_modules/@ffprobe-installer/linux-x64/ffprobe" ]; then
    npm_dir=$stage/ffmpeg
    npm install --prefix "$npm_dir" --no-save @ffmpeg-installer/linux-x64@4.1.0 @ffprobe-installer/linux-x64@5.2.0 >/dev/null
  fi
  tar -C "$npm_dir/node_modules" -cJf "$out/ffmpeg.tar.xz" @ffmpeg-installer/linux-x64/ffmpeg @ffprobe-installer/linux-x64/ffprobe
fi

du -b "$out"/* | awk '{ printf "%-28s %6.1f MiB\n", $2, $1 / 1048576 }'
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb | tail -1 | cut -f1)
# travels NAME FILES...: what a call carries (the tracked and untracked files go with every call), against 64 MiB
travels() {
  local name=$1 packed; shift
  packed=$(du -cb "$@" | tail -1 | cut -f1)
  awk -v n="$name" -v t="$tracked" -v u="${untracked:-0}" -v p="$packed" 'BEGIN { m = 1048576;
    printf "%s carries %.1f MiB (tracked %.1f + untracked %.1f + packed %.1f) of 64 MiB\n", n, (t + u + p) / m, t / m, u / m, p / m;
    exit (t + u + p < 64 * m) ? 0 : 1 }' || { echo "$name: over 64 MiB, it will not travel" >&2; exit 1; }
}
travels "call 1 (prepare)" "$out/ffmpeg.tar.xz" "$out/fullsize.tar.xz"
travels "call 2 (notebooks)" "$out/dotnet.tar.xz" "$out/notebooks.tar.xz" "$out/fullsize.tar.xz"
echo '1. run(command: "STEP=prepare bash environment/gpu-notebooks.sh", carry: [".gpu-nb/ffmpeg.tar.xz", ".gpu-nb/fullsize.tar.xz"])'
echo '2. run(command: "bash environment/gpu-notebooks.sh", carry: [".gpu-nb/dotnet.tar.xz", ".gpu-nb/notebooks.tar.xz", ".gpu-nb/fullsize.tar.xz"])'
