"""The bench result as Markdown (tables) and JSON (everything, machine-readable)."""

from __future__ import annotations

import json

__all__ = ["to_markdown", "to_json", "BASELINE"]

#: the row the speed-ups are relative to: today's ONNX Runtime FP32 path
BASELINE = ("DSLNet", "onnxruntime", "fp32")


def _f(value, fmt: str = "{:.1f}", none: str = "") -> str:
    return none if value is None else fmt.format(value)


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2, sort_keys=False, default=str)


def to_markdown(result: dict) -> str:
    """The side-by-side tables: machine line, models (speed + accuracy), peak, gallery, video, notes."""
    m = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    lines = [
        f"**Machine**: {m.get('cpu')} ({m.get('logical_cpus')} logical CPUs; {', '.join(m.get('cpu_flags', [])) or 'flags n/a'}), "
        f"threads: {m.get('threads')}, load average {m.get('load_average_1m', 'n/a')} at start; {m.get('date_utc')}.  ",
        f"**Versions**: Python {m.get('python')}, {versions}.",
        "",
    ]
    rows = result.get("rows")
    if rows:
        lines += _model_table(rows, result.get("accuracy", []), result.get("eval_set"))
    peak = result.get("peak")
    if peak:
        lines += ["", "FP32 peak (square MatMul, best of 4):"]
        for runtime, p in peak.items():
            lines.append(f"- {runtime}: " + (f"{p['gflops']:.0f} GFLOP/s (n={p['n']}, {p['best_ms']:.1f} ms)" if "gflops" in p else p.get("note", "n/a")))
    gallery = result.get("gallery")
    if gallery:
        lines += ["", "| gallery exemplars | queries | numpy ms | faiss ms | faiss first search (index build) ms |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        for g in gallery:
            if "note" in g:
                lines.append(f"| {g['exemplars']:,} | {g['queries']} | {g['note']} | | |")
            else:
                lines.append(f"| {g['exemplars']:,} | {g['queries']} | {_f(g.get('numpy_ms'), '{:.2f}')} | "
                             f"{_f(g.get('faiss_ms'), '{:.2f}', 'n/a')} | {_f(g.get('faiss_first_search_ms'), '{:.0f}', 'n/a')} |")
    video = result.get("video")
    if video:
        st = video["stages_ms_per_frame"]
        lines += ["", f"End to end on `{video['video']}` ({video['frames']} frames, {video['crops']} crops; "
                      f"{video['detector']}; {video.get('engine', '')}): **{video['fps']:.1f} frames/s**",
                  "", "| stage | ms per frame |", "| --- | ---: |"]
        lines += [f"| {k} | {v:.1f} |" for k, v in st.items()]
    if result.get("notes"):
        lines += ["", "Notes:"] + [f"- {n}" for n in result["notes"]]
    lines.append("")
    return "\n".join(lines)


def _model_table(rows: list[dict], accuracy: list[dict], eval_set: dict | None) -> list[str]:
    batches = sorted({r["batch"] for r in rows})
    base = {r["batch"]: r["crops_per_s"] for r in rows if (r["model"], r["runtime"], r["precision"]) == BASELINE}
    acc = {(a["model"], a["runtime"], a["precision"]): a for a in accuracy}
    fp32_rank1 = next((a.get("rank1") for a in accuracy if (a["model"], a["runtime"], a["precision"]) == BASELINE), None)
    header = ["model", "runtime", "precision"]
    for b in batches:
        header += [f"b{b} crops/s", f"b{b} p50/p99 ms"]
    header += [f"x ORT FP32 (b{batches[0]})", f"% FP32 peak (b{batches[0]})", "GFLOP/crop", "Rank-1", "mAP", "check cos"]
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * 3 + " ---: |" * (len(header) - 3)]
    seen: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        seen.setdefault((r["model"], r["runtime"], r["precision"]), {})[r["batch"]] = r
    for key, by_batch in seen.items():
        cells = list(key)
        for b in batches:
            r = by_batch.get(b)
            cells += [_f(r and r["crops_per_s"], "{:.0f}"), f"{r['p50_ms']:.1f}/{r['p99_ms']:.1f}" if r else ""]
        first = by_batch.get(batches[0], {})
        speedup = first.get("crops_per_s") / base[batches[0]] if first and base.get(batches[0]) else None
        a = acc.get(key, {})
        rank1 = a.get("rank1")
        rank1_text = _f(rank1, "{:.3f}")
        if rank1 is not None and fp32_rank1 is not None and key[0] == "DSLNet" and key != BASELINE:
            rank1_text += f" ({100 * (rank1 - fp32_rank1):+.1f} pt)"
        cells += [_f(speedup, "{:.2f}x"), _f(first.get("fraction_of_fp32_peak"), "{:.0%}"),
                  _f(first.get("gflop_per_crop"), "{:.2f}"), rank1_text, _f(a.get("mAP"), "{:.3f}"),
                  _f(a.get("check_cosine"), "{:.5f}")]
        out.append("| " + " | ".join(cells) + " |")
    if eval_set:
        out += ["", f"Rank-1/mAP: {eval_set['queries']} queries vs {eval_set['gallery']} gallery crops "
                    f"({eval_set['identities']} identities) of `{eval_set['root']}`, cosine distance, Market-1501 protocol."]
    notes = sorted({r["note"] for r in rows if r.get("note")})
    out += [f"- {n}" for n in notes]
    return out
