"""How the command line presents things: JSON on stdout, tables and result lines for people,
problems on stderr, and the exit codes.

Exit codes: 0 success; 1 error (message on stderr); 2 usage error; 3 finished, but some
inputs were skipped (each reported on stderr); 130 interrupted.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SKIPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def emit_json(obj: Any) -> None:
    """One JSON document on stdout (NaN becomes null, which JSON has and NaN is not)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    json.dump(clean(obj), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def warn(message: str) -> None:
    print(f"crossmodal: {message}", file=sys.stderr)


def report_skipped(skipped: list[tuple[str, str]]) -> int:
    """Each skipped input on stderr; the exit code that says whether anything was."""
    for source, reason in skipped:
        warn(f"skipped {source}: {reason}")
    if skipped:
        warn(f"{len(skipped)} input(s) skipped")
        return EXIT_SKIPPED
    return EXIT_OK


def program() -> str:
    """How to run crossmodal again as it was run now: ``crossmodal`` when that is on PATH and is
    this program, else the path it was started by (``.venv/bin/crossmodal`` after the quick
    start), else ``python -m crossmodal``."""
    started = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(started) == "crossmodal":
        on_path = shutil.which("crossmodal")
        if on_path and os.path.realpath(on_path) == os.path.realpath(started):
            return "crossmodal"
        relative = os.path.relpath(started)
        if relative.startswith(".."):
            return os.path.abspath(started)
        return relative if relative.startswith(".") or os.sep in relative else f"./{relative}"
    return f"{os.path.basename(sys.executable) or 'python'} -m crossmodal"


def what(result: Any) -> str:
    """A result as a person reads it: the text itself for text, else where the file is."""
    if result.modality == "text" and result.text:
        snippet = " ".join(result.text.split())
        return repr(snippet if len(snippet) <= 70 else snippet[:67] + "...")
    return result.uri


def print_results(results: list[Any], notice: str | None = None, best: float | None = None) -> None:
    """One line per result: its score (calibrated relevance, personalised), raw cosine, what it is;
    first, when even the best match is weak, the notice that says so."""
    if notice:
        print(f"{notice} (best calibrated relevance {best:.3f})" if best is not None else notice)
    if not results:
        print("no results")
    for rank, r in enumerate(results, 1):
        span = f" [{r.start:.2f}-{r.end:.2f} s]" if r.start is not None else ""
        label = f" label {r.label}" if r.label is not None else ""
        cosine = f" cos {r.cosine:6.3f}" if r.cosine is not None else ""
        print(f"{rank:>3}. {r.score:6.3f}{cosine}  #{r.id:<6} {r.modality:<5} via {r.matched:<5}{label} "
              f"{what(r)}{span}")
        if getattr(r, "copies", None):
            print(f"       + {len(r.copies)} {'copy' if len(r.copies) == 1 else 'copies'}: "
                  + ", ".join(f"#{c['id']} {c['uri']}" for c in r.copies))
        if r.explanation:
            e = r.explanation
            parts = ", ".join(f"{p['modality']} cos {p['cosine']:.3f}" + (f" z {p['z']:+.2f}" if p["z"] is not None
                                                                          else "") for p in e["parts"])
            taste = f"taste {e['taste']:.3f}, " if e.get("taste") is not None else ""
            personal = (f", {taste}personal cos {e['personal']:.3f} (beta {e['beta']:.2f})" if e["personal"] is not None
                        else "")
            relevance = f"relevance {e['relevance']:.3f}" if e["relevance"] is not None else "relevance n/a"
            print(f"       {relevance}, cosine {e['cosine']:.3f} in the {e['index']} index [{parts}]{personal}")


def print_plan(plan: Any) -> None:
    print(f"plan: {len(plan.parts)} part(s) " + ", ".join(
        f"{p['modality']} {p['query']} (weight {p['weight']:.2f})" for p in plan.parts))
    print(f"      targets {', '.join(f'{t} [{k}]' for t, k in plan.indexes.items())}; fetch {plan.fetch} per "
          f"target; fusion {plan.fusion}{f' ({plan.late_merge})' if plan.late_merge else ''}")
    if plan.filters:
        print(f"      filters {plan.filters}: {plan.allowed} vectors allowed, applied {plan.filter_mode}")
    if plan.user:
        print(f"      user {plan.user}: {plan.user_events} feedback event(s), beta {plan.beta:.2f}")
    anchors = ", ".join(f"{d} best {a['best']:.3f} spread {a['spread']:.4f}" for d, a in (plan.anchors or {}).items()
                        if a is not None)
    print(f"      calibration {plan.calibration}" + (f": {anchors}" if anchors else ""))
    if plan.min_relevance is not None:
        print(f"      results under relevance {plan.min_relevance:g} dropped")
    print(f"      {plan.merge}")


def print_index_report(report: Any, folder: Any) -> None:
    print(f"collection {report.collection} at {folder}: {report.added} added, {report.updated} updated, "
          f"{report.duplicates} duplicate(s) linked, {report.unchanged} unchanged, {report.removed} removed, "
          f"{len(report.skipped)} skipped")
    for name, entry in report.indexes.items():
        recall = entry.get("recall@10")
        extra = f", recall@10 vs exact {recall:.3f}" if recall is not None else ""
        print(f"  {name:<6} {entry['kind']:<9} {entry['ntotal']:>8} vectors{extra}")


def print_metrics(metrics: dict[str, dict[str, Any]]) -> None:
    print(f"{'direction':<16}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'mAP':>8}{'queries':>9}")
    for direction, m in metrics.items():
        print(f"{direction:<16}{m['recall@1']:>8.4f}{m['recall@5']:>8.4f}{m['recall@10']:>8.4f}"
              f"{m['mAP']:>8.4f}{m['queries']:>9}")


def print_fold_summary(folds: int, summary: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"{folds}-fold cross-validation (mean ± std)")
    for direction, m in summary.items():
        cells = "  ".join(f"{k} {v['mean']:.4f}±{v['std']:.4f}" for k, v in m.items())
        print(f"{direction:<16}{cells}")
