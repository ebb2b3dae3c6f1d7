#!/usr/bin/env bash
# Draws the curves of BENCHMARKS.md from the CSV that
# `CURVE_CSV=FILE scripts/bench-http.sh sqlite|postgres` records, as SVG
# beside it: rate, p99 and server CPU per request against concurrency, one
# line per backend and scenario. Needs gnuplot (Debian's gnuplot-nox;
# installed here when missing).
#
#   scripts/plot-benchmarks.sh bench/curves.csv     # writes bench/curves-{rate,p99,cpu}.svg
#
# Given the CSV of `scripts/bench-growth.sh` (its second column is
# `sessions`), it draws instead refresh rate, p99 and the server's resident
# memory against the number of sessions in the database, one line per
# backend and concurrency: bench/growth-{rate,p99,memory}.svg.
set -euo pipefail
cd "$(dirname "$0")/.."

csv=${1:-bench/curves.csv}
out=${csv%.csv}
if ! command -v gnuplot >/dev/null; then
  apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
fi

# One data block per backend and scenario, for gnuplot's `index`.
blocks=$(mktemp)
trap 'rm -f "$blocks"' EXIT
titles=()

if [ "$(head -n 1 "$csv" | cut -d, -f2)" = sessions ]; then
  for backend in $(tail -n +2 "$csv" | cut -d, -f1 | sort -u); do
    for clients in 16 64; do
      rows=$(awk -F, -v b="$backend" -v c="$clients" 'NR > 1 && $1 == b && $3 == "refresh" && $4 == c' "$csv" | sort -t, -k2 -n)
      [ -n "$rows" ] || continue
      printf '%s\n\n\n' "$rows" >>"$blocks"
      titles+=("$backend, $clients clients")
    done
  done
  growth() { # column, label, file, y range
    local column=$1 label=$2 file=$3 range=$4 i=0 parts=()
    for title in "${titles[@]}"; do
      parts+=("'$blocks' index $i using 2:($column) with linespoints title '$title'")
      i=$((i + 1))
    done
    gnuplot <<GP
set terminal svg size 720,420 dynamic font "sans,12" background rgb "white"
set output "$file"
set datafile separator ","
set logscale x 10
set format x "10^{%L}"
set yrange $range
set xlabel "sessions in the database"
set ylabel "$label"
set key outside right
set grid
plot $(IFS=,; echo "${parts[*]}")
GP
    echo "wrote $file"
  }
  growth '$5' "refreshes per second" "$out-rate.svg" "[0:*]"
  growth '$7' "p99 latency (ms)" "$out-p99.svg" "[0:*]"
  growth '$9 / 1024' "server resident memory (MiB)" "$out-memory.svg" "[0:*]"
  exit 0
fi

for backend in $(tail -n +2 "$csv" | cut -d, -f1 | sort -u); do
  for scenario in healthz me refresh; do
    rows=$(awk -F, -v b="$backend" -v s="$scenario" 'NR > 1 && $1 == b && $2 == s' "$csv" | sort -t, -k3 -n)
    [ -n "$rows" ] || continue
    printf '%s\n\n\n' "$rows" >>"$blocks"
    titles+=("$backend $scenario")
  done
done

plot() { # column, label, file, logscale-y
  local column=$1 label=$2 file=$3 logy=$4 i=0 parts=()
  for title in "${titles[@]}"; do
    parts+=("'$blocks' index $i using 3:$column with linespoints title '$title'")
    i=$((i + 1))
  done
  gnuplot <<GP
set terminal svg size 720,420 dynamic font "sans,12" background rgb "white"
set output "$file"
set datafile separator ","
set logscale x 2
$( [ "$logy" = yes ] && echo 'set logscale y 10' )
set xlabel "concurrent clients"
set ylabel "$label"
set key outside right
set grid
plot $(IFS=,; echo "${parts[*]}")
GP
  echo "wrote $file"
}
plot 4 "requests per second" "$out-rate.svg" yes
plot 6 "p99 latency (ms)" "$out-p99.svg" yes
plot 7 "server CPU per request (µs)" "$out-cpu.svg" yes
