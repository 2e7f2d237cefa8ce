"""Peak memory of a command's whole process tree, per labelled program inside it.

    python scripts/peak_memory.py --out FILE [--interval 0.25] -- COMMAND [ARGS...]

Runs COMMAND (its stdout and stderr pass through untouched), and every ``--interval`` seconds
reads ``/proc`` for every process descended from it. Each process is given the label of the
nearest process, itself or an ancestor, whose command line names one of the programs below
(``crossmodal index``, ``crossmodal serve``, ``clip-retrieval inference`` / ``index`` /
``back``); wrappers (``time``, ``timeout``, shells) and unlabelled processes are left out.
For each label it reports:

- ``peak_pss_mb``: the largest sampled sum of PSS (``/proc/PID/smaps_rollup``) over the label's
  processes. PSS divides each shared page among the processes that map it, so forked workers
  that share the parent's model are not counted twice: this is the memory the program tree
  really occupied. The figure to compare.
- ``peak_rss_sum_mb``: the largest sampled sum of RSS (counts shared pages once per process).
- ``max_process_hwm_mb``: the largest ``VmHWM`` (the kernel's exact peak RSS) of any one of
  its processes: what ``/usr/bin/time -v`` reports as "Maximum resident set size".
- ``max_processes``: the most processes seen under the label at once; ``seconds``: how long
  the label was seen.

Sums are sampled, so a spike shorter than the interval can be missed; ``VmHWM`` is not.
Writes one JSON object to FILE (stdout belongs to COMMAND) and exits with COMMAND's status.
Linux only (reads /proc).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WRAPPERS = {"time", "timeout", "bash", "sh", "dash", "env"}


def label_of(argv: list[str]) -> str | None:
    """The program a command line runs, when it is one of those measured."""
    for i, arg in enumerate(argv[:-1]):
        name, sub = os.path.basename(arg), argv[i + 1]
        if name == "crossmodal" and sub in ("index", "serve"):
            return f"crossmodal {sub}"
        if name == "clip-retrieval" and sub in ("inference", "index", "back"):
            return f"clip-retrieval {sub}"
    if "--indices_paths" in argv:  # the peer's back, started through a python -c launcher
        return "clip-retrieval back"
    return None


def read_tree(root: int) -> dict[int, tuple[int, str, list[str]]]:
    """pid -> (ppid, comm, argv) for root and every process descended from it."""
    procs: dict[int, tuple[int, str, list[str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        procs[int(entry)] = (ppid, comm, argv)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            tree[pid] = procs[pid]
            todo.extend(children.get(pid, []))
    return tree


def tree_labels(tree: dict[int, tuple[int, str, list[str]]], root: int) -> dict[int, str | None]:
    """Each process's label: its own, else its nearest labelled ancestor's (within the tree)."""
    labels: dict[int, str | None] = {}

    def label(pid: int) -> str | None:
        if pid not in labels:
            ppid, comm, argv = tree[pid]
            own = None if comm in WRAPPERS else label_of(argv)
            labels[pid] = own or (label(ppid) if ppid in tree and pid != root else None)
        return labels[pid]

    for pid in tree:
        label(pid)
    return labels


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM from status, Pss from smaps_rollup, in kB (missing when the process went)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1])
                    break
    except (OSError, ValueError):
        pass
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="write the JSON object here")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    started = time.monotonic()
    proc = subprocess.Popen(command)
    peaks: dict[str, dict] = {}
    samples = 0
    while True:
        done = proc.poll() is not None
        tree = read_tree(proc.pid)
        labels = tree_labels(tree, proc.pid)
        sums: dict[str, dict[str, int]] = {}
        for pid, (_, comm, _) in tree.items():
            name = labels[pid]
            if name is None or comm in WRAPPERS:
                continue
            mem = memory_kb(pid)
            if not mem:
                continue
            s = sums.setdefault(name, {"pss": 0, "rss": 0, "n": 0})
            s["pss"] += mem.get("Pss", 0)
            s["rss"] += mem.get("VmRSS", 0)
            s["n"] += 1
            p = peaks.setdefault(name, {"pss": 0, "rss": 0, "hwm": 0, "n": 0, "first": None, "last": None})
            p["hwm"] = max(p["hwm"], mem.get("VmHWM", 0))
        now = time.monotonic() - started
        for name, s in sums.items():
            p = peaks[name]
            p["pss"], p["rss"], p["n"] = max(p["pss"], s["pss"]), max(p["rss"], s["rss"]), max(p["n"], s["n"])
            p["first"] = now if p["first"] is None else p["first"]
            p["last"] = now
        samples += 1
        if done:
            break
        time.sleep(args.interval)
    result = {
        "command": command, "returncode": proc.returncode, "interval_s": args.interval, "samples": samples,
        "programs": {name: {"peak_pss_mb": round(p["pss"] / 1024, 1), "peak_rss_sum_mb": round(p["rss"] / 1024, 1),
                            "max_process_hwm_mb": round(p["hwm"] / 1024, 1), "max_processes": p["n"],
                            "seconds": round(p["last"] - p["first"], 1)}
                     for name, p in sorted(peaks.items())},
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
