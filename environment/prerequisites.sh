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
# Another apt-get or dpkg (unattended upgrades, a second terminal) may hold apt's locks: wait for it instead of failing at
# once. install waits on the dpkg lock itself (DPkg::Lock::Timeout, apt >= 1.9.11); update is retried, 10 minutes at most.
wait_for_lock=(-o DPkg::Lock::Timeout=600)
for attempt in $(seq 60); do
  $sudo apt-get "${wait_for_lock[@]}" update -qq && break
  [ "$attempt" -lt 60 ] || { echo "apt-get update kept failing for 10 minutes; see its message above" >&2; exit 1; }
  echo "apt-get update failed (another apt-get holding its lock?); trying again in 10 s" >&2
  sleep 10
done
$sudo env DEBIAN_FRONTEND=noninteractive apt-get "${wait_for_lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
