#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine with the .NET 10 SDK lacks: ffmpeg (video decoding, test videos).
set -euo pipefail
if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then exit 0; fi
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
echo "installing ffmpeg (apt-get)..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
