#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine with the .NET 10 SDK lacks (apt-get, only what is missing):
#   ffmpeg, ffprobe      video decoding, test videos
#   chromium             the chart test draws every chart kind in headless Chromium
#   tmux                 the terminal in which a test watches `evaluate`'s progress at 80 columns
#   jupyter nbconvert    the notebook test runs notebooks in real Jupyter (with the .NET Interactive kernel, a dotnet tool)
set -euo pipefail
missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v jupyter-nbconvert >/dev/null 2>&1 || missing+=(jupyter-nbconvert python3-nbconvert jupyter-client python3-ipykernel)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
echo "installing ${missing[*]} (apt-get)..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
