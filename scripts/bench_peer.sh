#!/usr/bin/env bash
# usage: scripts/bench_peer.sh [CROSSMODAL_BIN] [N_QUERIES] [OUT_JSON]
#   defaults: .venv/bin/crossmodal 100 build/bench_peer.json
#
# Issue 20's figures in one run, written to ONE JSON file (and printed):
#  1. ../shared/peers/compare_clip_retrieval.sh CROSSMODAL_BIN N_QUERIES: indexing throughput and
#     text->image query p50/p99 of crossmodal against clip-retrieval (same ViT-B-32 file, same
#     2,000 JPEGs), run under scripts/peak_memory.py, which samples the process trees for the peak
#     memory of `crossmodal index` / `serve` and of the peer's `inference` / `index` / `back`;
#  2. scripts/bench_image_forward.py: the bare image-tower forward of the same model (fp32 and
#     int8, the indexer's process layout, images decoded in memory), so that indexing's share
#     of what the model allows is visible;
#  3. scripts/bench_cli.py: the one-shot `crossmodal search` against `python -c "import torch"`;
#  4. scripts/bench_query_latency.py --skip-tower: 1/4/8 concurrent HTTP clients against
#     `crossmodal serve` on the collection step 1 built.
# The load averages (/proc/loadavg) before and after each step are recorded: the ratios are
# measured in the same run, the absolute times depend on what else the machine runs.
# Needs the shared peer scripts beside the clone (../shared/peers, or BENCH_PEERS=DIR) and
# /usr/bin/time. Knobs (env): BENCH_CLI_RUNS=5 BENCH_CLI_SERVE_RUNS=0 BENCH_QL_MODES=int8
# BENCH_QL_ROUNDS=3 BENCH_QL_REQUESTS=40
# BENCH_FWD_COUNT=160. Logs and each step's own JSON go to OUT_JSON's folder,
# under bench_peer.d/.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CM=$(realpath -m "${1:-$ROOT/.venv/bin/crossmodal}")
NQ=${2:-100}
OUT=$(realpath -m "${3:-$ROOT/build/bench_peer.json}")
PEERS=$(realpath -m "${BENCH_PEERS:-$ROOT/../shared/peers}")
PY=$(dirname "$CM")/python

if [ ! -f "$PEERS/compare_clip_retrieval.sh" ]; then
  echo "bench_peer: the shared peer scripts are missing: no $PEERS/compare_clip_retrieval.sh." >&2
  echo "  They live in ../shared/peers beside the clone (or set BENCH_PEERS=DIR); without them the" >&2
  echo "  clip-retrieval comparison cannot run. Nothing was measured." >&2
  exit 2
fi
[ -x "$CM" ] || { echo "bench_peer: $CM is not an executable crossmodal command" >&2; exit 2; }
[ -x "$PY" ] || { echo "bench_peer: no python beside $CM ($PY)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench_peer: /usr/bin/time missing (apt-get install time)" >&2; exit 2; }
[[ "$NQ" =~ ^[0-9]+$ ]] || { echo "bench_peer: N_QUERIES must be a number, got $NQ" >&2; exit 2; }

WORK=$(dirname "$OUT")/bench_peer.d
mkdir -p "$WORK"
rm -f "$WORK"/*.json "$WORK"/*.log "$WORK"/loadavg
cd "$ROOT" || exit 2
load() { echo "$1 $(date -u +%FT%TZ) $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/loadavg"; }
INDEX=/tmp/peers/cm-idx/perf   # where compare_clip_retrieval.sh puts crossmodal's collection

load start
echo "== 1/4 compare_clip_retrieval.sh (peak memory sampled)" >&2
"$PY" scripts/peak_memory.py --out "$WORK/memory.json" -- \
  "$PEERS/compare_clip_retrieval.sh" "$CM" "$NQ" 2>&1 | tee "$WORK/compare.log" >&2
rc_compare=${PIPESTATUS[0]}
load after_compare

echo "== 2/4 bench_image_forward.py (bare forward)" >&2
rc_fwd=1
if [ -f "$INDEX/manifest.json" ]; then
  MODEL=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["model"]["ref"])' "$INDEX/manifest.json")
  "$PY" scripts/bench_image_forward.py --model "$MODEL" --images /tmp/peers/images-only \
    --count "${BENCH_FWD_COUNT:-160}" --out "$WORK/forward.json" >/dev/null 2>"$WORK/forward.log"
  rc_fwd=$?
fi
load after_forward

echo "== 3/4 bench_cli.py" >&2
"$PY" scripts/bench_cli.py --runs "${BENCH_CLI_RUNS:-5}" --serve-runs "${BENCH_CLI_SERVE_RUNS:-0}" \
  >"$WORK/cli.json" 2>"$WORK/cli.log"
rc_cli=$?
load after_cli

echo "== 4/4 bench_query_latency.py (concurrency)" >&2
rc_ql=1
if [ -f "$INDEX/manifest.json" ]; then
  "$PY" scripts/bench_query_latency.py --index "$INDEX" --cm "$CM" --skip-tower \
    --modes "${BENCH_QL_MODES:-int8}" --rounds "${BENCH_QL_ROUNDS:-3}" --requests "${BENCH_QL_REQUESTS:-40}" \
    --out "$WORK/query_latency.json" >/dev/null 2>"$WORK/query_latency.log"
  rc_ql=$?
else
  echo "no collection at $INDEX (step 1 failed?); concurrency skipped" >&2
fi
load end

"$PY" - "$WORK" "$OUT" "$CM" "$NQ" "$PEERS" "$rc_compare" "$rc_cli" "$rc_ql" "$rc_fwd" <<'PY'
import json, os, re, subprocess, sys
work, out, cm, nq, peers, rc_compare, rc_cli, rc_ql, rc_fwd = sys.argv[1:]

def load_json(name):
    try:
        with open(os.path.join(work, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def ratio(a, b, nd=2):
    return round(a / b, nd) if a is not None and b else None

compare = {}
try:
    for line in open(os.path.join(work, "compare.log")):
        m = re.match(r"(peer|crossmodal) (indexing|query): (\{.*\})\s*$", line)
        if m:
            compare[f"{m.group(1)}_{m.group(2)}"] = json.loads(m.group(3))
        elif line.startswith("indexing x"):
            compare["ratio_line"] = line.strip()
except OSError:
    pass
mem = (load_json("memory.json") or {}).get("programs", {})
cli, ql = load_json("cli.json"), load_json("query_latency.json")
pi, ci = compare.get("peer_indexing", {}), compare.get("crossmodal_indexing", {})
pq, cq = compare.get("peer_query", {}), compare.get("crossmodal_query", {})

def peak(name, key="max_process_hwm_mb"):
    return mem.get(name, {}).get(key)

summary = {}
idx = ratio(ci.get("images_per_s"), pi.get("images_per_s"))
summary["indexing"] = {"peer_images_per_s": pi.get("images_per_s"), "crossmodal_images_per_s": ci.get("images_per_s"),
                       "ratio": idx, "target": ">= 2.0", "target_met": idx is not None and idx >= 2.0}
fwd = load_json("forward.json")
if fwd:
    bare = fwd["images_per_s_median"]
    summary["indexing"]["bare_forward_images_per_s"] = bare
    summary["indexing"]["bare_forward_int8_over_fp32"] = fwd.get("int8_over_fp32")
    summary["indexing"]["whole_command_over_bare_int8_forward"] = ratio(ci.get("images_per_s"), bare.get("int8"))
    summary["indexing"]["whole_command_over_bare_fp32_forward"] = ratio(ci.get("images_per_s"), bare.get("fp32"))
p50, p99 = ratio(cq.get("p50_ms"), pq.get("p50_ms")), ratio(cq.get("p99_ms"), pq.get("p99_ms"))
summary["query"] = {"peer_p50_ms": pq.get("p50_ms"), "peer_p99_ms": pq.get("p99_ms"),
                    "crossmodal_p50_ms": cq.get("p50_ms"), "crossmodal_p99_ms": cq.get("p99_ms"),
                    "p50_ratio": p50, "p99_ratio": p99, "target": "p50 <= 0.4, p99 <= 0.5",
                    "target_met": p50 is not None and p50 <= 0.4 and p99 is not None and p99 <= 0.5}
memory = {"how": "max_process_hwm_mb: the largest VmHWM of one process (what /usr/bin/time -v reports); "
                 "peak_pss_mb: the largest sampled sum of PSS over the program's process tree "
                 "(shared pages divided among the processes that map them)"}
for side, cm_name, peer_names in (("index", "crossmodal index", ["clip-retrieval inference", "clip-retrieval index"]),
                                  ("serve", "crossmodal serve", ["clip-retrieval back"])):
    row = {"crossmodal": mem.get(cm_name), "peer": {n: mem.get(n) for n in peer_names}}
    for key in ("max_process_hwm_mb", "peak_pss_mb"):
        c = peak(cm_name, key)
        p = max((peak(n, key) or 0) for n in peer_names) or None
        row[f"{key}_crossmodal"], row[f"{key}_peer"] = c, p
        row[f"{key}_ratio"] = ratio(c, p)
    row["target"] = "crossmodal not above the peer"
    pairs = [(row[f"{k}_crossmodal"], row[f"{k}_peer"]) for k in ("max_process_hwm_mb", "peak_pss_mb")]
    row["target_met"] = None if None in sum(pairs, ()) else all(c <= p for c, p in pairs)
    memory[side] = row
memory["index"]["peer_note"] = "the peer builds in two commands, one after the other; its peak is the larger"
memory["usr_bin_time_mb"] = {"crossmodal_index": ci.get("peak_rss_mb"), "peer_inference": pi.get("inference_peak_rss_mb"),
                             "peer_index": pi.get("index_peak_rss_mb"), "crossmodal_serve_VmHWM": cq.get("VmHWM"),
                             "peer_back_VmHWM": pq.get("back_peak_rss_mb")}
summary["memory"] = memory
if cli and "one_shot" in cli:
    o = cli["one_shot"]
    summary["one_shot_cli"] = {k: o.get(k) for k in ("command", "search_median_s", "import_torch_median_s", "ratio",
                                                      "target_ratio", "target_met", "heavy_modules_imported")}
if ql and "http" in ql:
    conc = {}
    for mode, r in ql["http"].items():
        conc[mode] = {"levels": {n: {k: v for k, v in lv.items() if k != "throughput_rps_rounds"}
                                 for n, lv in r["levels"].items()},
                      "p99_8_over_p50_1": r.get("p99_8_over_p50_1"), "target": r.get("target_p99_8_over_p50_1"),
                      "target_met": r.get("target_met")}
    summary["concurrency"] = conc

loads = []
try:
    for line in open(os.path.join(work, "loadavg")):
        stage, when, *la = line.split()
        loads.append({"at": stage, "utc": when, "load_average_1_5_15": [float(x) for x in la]})
except OSError:
    pass
try:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "crossmodal"],
                                capture_output=True, text=True).stdout.strip())
except OSError:
    head, dirty = None, None
result = {
    "crossmodal": cm, "commit": head, "crossmodal_tree_modified": dirty, "queries": int(nq), "cpus": os.cpu_count(),
    "load_average": loads,
    "note": "a shared machine: the two sides of each comparison run one after the other in this run, so the ratios "
            "are the figures to quote, not the absolute times",
    "commands": {
        "compare": f"scripts/peak_memory.py --out MEM -- {peers}/compare_clip_retrieval.sh {cm} {nq}",
        "bare_forward": "scripts/bench_image_forward.py --model REF --images /tmp/peers/images-only --count {}".format(
            os.environ.get("BENCH_FWD_COUNT", "160")),
        "one_shot_cli": "scripts/bench_cli.py --runs {} --serve-runs {}".format(
            os.environ.get("BENCH_CLI_RUNS", "5"), os.environ.get("BENCH_CLI_SERVE_RUNS", "0")),
        "concurrency": "scripts/bench_query_latency.py --index /tmp/peers/cm-idx/perf --skip-tower --modes {} "
                       "--rounds {} --requests {}".format(os.environ.get("BENCH_QL_MODES", "int8"),
                                                          os.environ.get("BENCH_QL_ROUNDS", "3"),
                                                          os.environ.get("BENCH_QL_REQUESTS", "40")),
    },
    "returncodes": {"compare": int(rc_compare), "bench_image_forward": int(rc_fwd), "bench_cli": int(rc_cli),
                    "bench_query_latency": int(rc_ql)},
    "summary": summary,
    "raw": {"compare": compare, "memory": load_json("memory.json"), "bare_forward": fwd, "bench_cli": cli,
            "bench_query_latency": ql},
}
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print(json.dumps(result, indent=2))
print(f"written to {out}", file=sys.stderr)
PY
