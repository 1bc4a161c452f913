#!/usr/bin/env bash
# Replaces the plotly.js that the library embeds (src/SpatialMllm.Research/Resources/plotly/*.tgz) with another
# version of npm's plotly.js-dist-min, kept as npm serves it (its shasum is npm's `dist.shasum`).
# Usage: build/update-plotly.sh 2.35.3   (then change PlotlyVersion in Display/PlotlyScript.cs)
set -euo pipefail
version=${1:?plotly.js version, e.g. 2.35.3}
folder="$(dirname "$0")/../src/SpatialMllm.Research/Resources/plotly"
rm -f "$folder"/plotly.js-dist-min-*.tgz
npm pack "plotly.js-dist-min@$version" --pack-destination "$folder"
echo "expected shasum: $(npm view "plotly.js-dist-min@$version" dist.shasum)"
sha1sum "$folder/plotly.js-dist-min-$version.tgz"
