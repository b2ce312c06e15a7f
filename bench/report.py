"""Ratios to the baseline, targets met/missed, and the printed / Markdown tables."""

from __future__ import annotations

from typing import Any

from oddsflow.bench.stats import ratio

GUARANTEE_BASELINE = {
    "exactly_once": "passthrough_transactional",
    "at_least_once": "passthrough_plain",
}


def dig(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def med(d: Any, *path: str) -> float | None:
    v = dig(d, *path)
    if isinstance(v, dict):
        v = v.get("median")
    return None if v is None else float(v)


def _sp(d: Any, *path: str) -> str:
    v = dig(d, *path)
    if not isinstance(v, dict) or v.get("min") is None or v.get("n", 0) < 2:
        return ""
    return f"{_fmt(v['min'])}-{_fmt(v['max'])}"


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:,.1f}" if abs(x) >= 10 else f"{x:,.2f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


# ------------------------------------------------------------------------------------- rows
def _rows(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every reported figure: scenario, metric, median, spread, unit, baseline figure, ratio."""
    rows: list[dict[str, Any]] = []
    b = sc.get("baseline") or {}

    def add(
        scn: str,
        metric: str,
        src: Any,
        path: tuple[str, ...],
        unit: str,
        base: tuple[Any, tuple[str, ...], str] | None = None,
    ) -> None:
        v = med(src, *path)
        if v is None and dig(src, *path) is None:
            return
        row = {
            "scenario": scn,
            "metric": metric,
            "median": v,
            "spread": _sp(src, *path),
            "unit": unit,
            "baseline": None,
            "baseline_name": None,
            "ratio": None,
        }
        if base is not None:
            bsrc, bpath, bname = base
            bv = med(bsrc, *bpath)
            row.update(baseline=bv, baseline_name=bname, ratio=ratio(v, bv))
        rows.append(row)

    if b:
        add(
            "baseline",
            "in-process ceiling (handlers + Avro, no Kafka): bets decided",
            b,
            ("ceiling", "bets_per_s"),
            "dec/s",
        )
        add(
            "baseline",
            "in-process ceiling (handlers + Avro, no Kafka): prices",
            b,
            ("ceiling", "prices_per_s"),
            "upd/s",
        )
        add("baseline", "raw producer", b, ("raw_producer", "msgs_per_s"), "msgs/s")
        for mode in ("transactional", "plain"):
            g = b.get(f"passthrough_{mode}") or {}
            add(
                "baseline",
                f"passthrough {mode}: bets copied (closed loop)",
                g,
                ("bets_closed_loop", "throughput_per_s"),
                "msgs/s",
            )
            add(
                "baseline",
                f"passthrough {mode}: bet p99 @1,000/s",
                g,
                ("bets_open_1000", "p99_ms"),
                "ms",
            )
            add(
                "baseline",
                f"passthrough {mode}: prices copied (closed loop)",
                g,
                ("prices_closed_loop", "throughput_per_s"),
                "msgs/s",
            )
            add(
                "baseline",
                f"passthrough {mode}: price p99 @5,000/s",
                g,
                ("prices_open_5000", "p99_ms"),
                "ms",
            )

    for guarantee, g in (sc.get("prices") or {}).items():
        bk = GUARANTEE_BASELINE[guarantee]
        bg = b.get(bk)
        add(
            "prices",
            f"{guarantee}: updates/s (closed loop)",
            g,
            ("closed_loop", "throughput_per_s"),
            "upd/s",
            (bg, ("prices_closed_loop", "throughput_per_s"), bk),
        )
        for key in sorted((k for k in g if k.startswith("open_")), key=lambda k: int(k[5:])):
            rt = int(key[5:])
            for q in ("p50", "p95", "p99"):
                base = (bg, ("prices_open_5000", f"{q}_ms"), bk) if rt == 5000 else None
                add(
                    "prices",
                    f"{guarantee}: publish lag {q} @{rt:,}/s",
                    g,
                    (key, f"{q}_ms"),
                    "ms",
                    base,
                )

    for guarantee, g in (sc.get("bets") or {}).items():
        bk = GUARANTEE_BASELINE[guarantee]
        bg = b.get(bk)
        for key in sorted((k for k in g if k.startswith("open_")), key=lambda k: int(k[5:])):
            rt = int(key[5:])
            add(
                "bets",
                f"{guarantee}: decisions/s @{rt:,}/s offered",
                g,
                (key, "throughput_per_s"),
                "dec/s",
            )
            for q in ("p50", "p95", "p99"):
                base = (bg, ("bets_open_1000", f"{q}_ms"), bk) if rt == 1000 else None
                add("bets", f"{guarantee}: decision {q} @{rt:,}/s", g, (key, f"{q}_ms"), "ms", base)
        add(
            "bets",
            f"{guarantee}: max decisions/s (closed loop)",
            g,
            ("closed_loop", "throughput_per_s"),
            "dec/s",
            (bg, ("bets_closed_loop", "throughput_per_s"), bk),
        )

    st = sc.get("settlement_burst")
    if st:
        bg = b.get("passthrough_transactional")
        add(
            "settlement_burst",
            f"burst of {st.get('n'):,} bets: all settled + posted",
            st,
            ("burst_s",),
            "s",
        )
        add(
            "settlement_burst",
            "settlements/s in the burst",
            st,
            ("settlements_per_s",),
            "bets/s",
            (bg, ("bets_closed_loop", "throughput_per_s"), "passthrough_transactional"),
        )
        if st.get("n") != 100_000:
            add(
                "settlement_burst",
                "100,000-bet burst (extrapolated)",
                st,
                ("extrapolated_100k_s",),
                "s",
            )
        add(
            "settlement_burst",
            f"two workers: burst of {st.get('n'):,} bets",
            st,
            ("two_workers", "burst_s"),
            "s",
        )
        add(
            "settlement_burst",
            "two workers: bets placed/s (exactly_once, closed loop)",
            st,
            ("two_workers", "placement_per_s"),
            "dec/s",
        )

    sk = sc.get("sinks")
    if sk:
        bg = b.get("passthrough_plain")
        base = (bg, ("bets_closed_loop", "throughput_per_s"), "passthrough_plain")
        add(
            "sinks", "postgres: ledger transactions/s", sk, ("postgres", "msgs_per_s"), "tx/s", base
        )
        add("sinks", "postgres: postings/s", sk, ("postgres", "postings_per_s"), "postings/s")
        if sk.get("postgres_two_processes"):
            add(
                "sinks",
                "postgres, two sink processes: postings/s",
                sk,
                ("postgres_two_processes", "postings_per_s"),
                "postings/s",
            )
        add(
            "sinks",
            "clickhouse (chdb): messages/s",
            sk,
            ("clickhouse_chdb", "msgs_per_s"),
            "msgs/s",
            base,
        )
        add("sinks", "clickhouse (chdb): rows/s", sk, ("clickhouse_chdb", "rows_per_s"), "rows/s")
        if "msgs_per_s" in (sk.get("clickhouse_server") or {}):
            add(
                "sinks",
                "clickhouse (server): messages/s",
                sk,
                ("clickhouse_server", "msgs_per_s"),
                "msgs/s",
                base,
            )
            add(
                "sinks",
                "clickhouse (server): rows/s",
                sk,
                ("clickhouse_server", "rows_per_s"),
                "rows/s",
            )
    return rows


def ratios(sc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: r[k] for k in ("scenario", "metric", "median", "baseline", "baseline_name", "ratio")}
        for r in _rows(sc)
        if r["ratio"] is not None
    ]


def table_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return _rows(doc["scenarios"])


# ----------------------------------------------------------------------------------- targets
def targets(
    sc: dict[str, Any], _ratios: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    b = sc.get("baseline") or {}

    def t(name: str, value: float | None, op: str, bound: float, unit: str, note: str = "") -> None:
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out.append(
            {
                "target": name,
                "value": value,
                "op": op,
                "bound": bound,
                "unit": unit,
                "status": "not measured" if met is None else ("met" if met else "missed"),
                "note": note,
            }
        )

    bets = sc.get("bets") or {}
    prices = sc.get("prices") or {}
    if bets:
        alive = dig(bets, "exactly_once", "worker_alive_at_end")
        t(
            "bet decisions/s sustained, exactly_once",
            med(bets, "exactly_once", "closed_loop", "throughput_per_s"),
            ">=",
            5000,
            "dec/s",
            (
                ""
                if alive is not False
                else "the exactly_once worker exited during the run; "
                f"at_least_once max: {_fmt(med(bets, 'at_least_once', 'closed_loop', 'throughput_per_s'))} dec/s; "
            )
            + f"one core's in-process ceiling: {_fmt(med(b, 'ceiling', 'bets_per_s'))} dec/s"
            + (
                f"; two workers: {_fmt(two_w)} dec/s (settlement scenario's placement)"
                if (two_w := med(sc, "settlement_burst", "two_workers", "placement_per_s"))
                else ""
            ),
        )
        t(
            "decision p99 @1,000 bets/s offered (exactly_once)",
            med(bets, "exactly_once", "open_1000", "p99_ms"),
            "<=",
            50,
            "ms",
            f"at_least_once: {_fmt(med(bets, 'at_least_once', 'open_1000', 'p99_ms'))} ms",
        )
    if prices:
        t(
            "price updates/s priced (exactly_once)",
            med(prices, "exactly_once", "closed_loop", "throughput_per_s"),
            ">=",
            20000,
            "upd/s",
            f"one core's in-process ceiling: {_fmt(med(b, 'ceiling', 'prices_per_s'))} upd/s",
        )
        t(
            "publish lag p99 @5,000/s (exactly_once)",
            med(prices, "exactly_once", "open_5000", "p99_ms"),
            "<=",
            20,
            "ms",
            f"at_least_once: {_fmt(med(prices, 'at_least_once', 'open_5000', 'p99_ms'))} ms",
        )
    st = sc.get("settlement_burst")
    if st:
        measured = st.get("n") == 100_000
        key = "burst_s" if measured else "extrapolated_100k_s"
        one, two = med(st, key), med(st, "two_workers", key)
        best = min((v for v in (one, two) if v is not None), default=None)
        t(
            "100,000-bet settlement burst",
            best,
            "<=",
            10,
            "s",
            ("measured" if measured else f"extrapolated from {st.get('n'):,} bets")
            + f"; one worker {_fmt(one)} s, two workers {_fmt(two)} s",
        )
    if sk := sc.get("sinks"):
        one, two = (
            med(sk, "postgres", "postings_per_s"),
            med(sk, "postgres_two_processes", "postings_per_s"),
        )
        t(
            "postings/s into Postgres",
            max((v for v in (one, two) if v is not None), default=None),
            ">=",
            50000,
            "postings/s",
            f"one sink process {_fmt(one)}, two {_fmt(two)}",
        )
    if b and bets:
        t(
            "engine / passthrough (bets, exactly_once vs transactional)",
            ratio(
                med(bets, "exactly_once", "closed_loop", "throughput_per_s"),
                med(b, "passthrough_transactional", "bets_closed_loop", "throughput_per_s"),
            ),
            ">=",
            0.5,
            "x",
        )
    if b and prices:
        t(
            "engine / passthrough (prices, exactly_once vs transactional)",
            ratio(
                med(prices, "exactly_once", "closed_loop", "throughput_per_s"),
                med(b, "passthrough_transactional", "prices_closed_loop", "throughput_per_s"),
            ),
            ">=",
            0.5,
            "x",
        )
    return out


# ------------------------------------------------------------------------------------ output
def text_table(doc: dict[str, Any]) -> str:
    rows = doc["table"]
    head = ("scenario", "metric", "median", "min-max", "unit", "x baseline")
    body = [
        (
            r["scenario"],
            r["metric"],
            _fmt(r["median"]),
            r["spread"],
            r["unit"],
            "" if r["ratio"] is None else f"{r['ratio']:.3f}",
        )
        for r in rows
    ]
    widths = (
        [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
        if body
        else [len(x) for x in head]
    )
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    lines.append("")
    for tg in doc["targets"]:
        lines.append(
            f"[{tg['status']:>12}] {tg['target']}: {_fmt(tg['value'])} {tg['unit']} "
            f"(target {tg['op']} {_fmt(tg['bound'])}) {tg['note']}"
        )
    for name, err in doc.get("errors", {}).items():
        lines.append(f"[      error ] {name}: {err.strip().splitlines()[-1]}")
    return "\n".join(lines)


def _profile_md(doc: dict[str, Any]) -> list[str]:
    p = dig(doc, "scenarios", "bets", "exactly_once", "profile")
    if not p:
        return []
    if "error" in p:
        return ["", f"Profile: not taken ({p['error']})."]
    out = [
        "",
        "## Worker profile under the bets load (exactly_once, closed loop)",
        "",
        *([p["note"], ""] if p.get("note") else []),
        f"{p.get('tool')}, {p.get('rate_hz')} Hz for {p.get('seconds')} s: {p['samples']} samples "
        f"(worker busy {100 * p.get('busy_fraction', 0):.0f}% of one core).",
        "",
        "| self time by package | % |",
        "|---|---:|",
    ]
    out += [f"| {x['name']} | {x['pct']} |" for x in p["by_package"][:12]]
    out += ["", "| top functions, self time | % |", "|---|---:|"]
    out += [f"| `{x['name']}` | {x['pct']} |" for x in p["self"][:12]]
    out += ["", "| top functions, inclusive | % |", "|---|---:|"]
    out += [f"| `{x['name']}` | {x['pct']} |" for x in p["inclusive"][:20]]
    return out


def markdown(doc: dict[str, Any], json_name: str) -> str:
    m = doc["machine"]
    out = [
        "# oddsflow benchmark: latest results",
        "",
        f"Run {doc['started_at']} ({'quick' if doc['quick'] else 'full'}; {doc['wall_s']} s wall) on "
        f"`{m.get('hostname')}`: {m.get('cores')} cores ({m.get('cpu')}), {m.get('memory_gib')} GiB, "
        f"Python {m.get('python')}, Kafka {m.get('kafka_broker')} (broker on the same machine: "
        f"{m.get('broker_on_same_machine')}), faust {m.get('faust')}, aiokafka {m.get('aiokafka')}, "
        f"confluent-kafka {m.get('confluent_kafka')} (librdkafka {m.get('librdkafka')}), "
        f"commit `{(m.get('git_commit') or '')[:10]}`{' (dirty)' if m.get('git_dirty') else ''}.",
        "",
        f"Generated by `python -m oddsflow.bench{' --quick' if doc['quick'] else ''}`; full data in "
        f"[`{json_name}`]({json_name}). Medians over {doc['plan']['reps']} repetition(s) after a warm-up; "
        'min-max is the spread of the repetitions; "x baseline" is engine / baseline (for latencies: how '
        "many times the baseline's). Latency = consume time of the output minus the produce-time stamp "
        "in the input record (`placed_at`, `provider_ts`); throughput = N / (last output consumed - first "
        "input produced).",
        "",
        "| scenario | metric | median | min-max | unit | baseline | x baseline |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for r in doc["table"]:
        rt = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        out.append(
            f"| {r['scenario']} | {r['metric']} | {_fmt(r['median'])} | {r['spread']} | {r['unit']} | "
            f"{_fmt(r['baseline'])} | {rt} |"
        )
    out += [
        "",
        "## Targets (issue 6)",
        "",
        "| target | measured | bound | status | note |",
        "|---|---:|---:|---|---|",
    ]
    for tg in doc["targets"]:
        out.append(
            f"| {tg['target']} | {_fmt(tg['value'])} {tg['unit']} | {tg['op']} {_fmt(tg['bound'])} | "
            f"**{tg['status']}** | {tg['note']} |"
        )
    if doc.get("errors"):
        out += ["", "## Errors", ""]
        out += [f"- `{k}`: {v.strip().splitlines()[-1]}" for k, v in doc["errors"].items()]
    out += _profile_md(doc)
    return "\n".join(out) + "\n"


def rebuild(path: Any, profile_file: Any = None, profile_note: str = "") -> dict[str, Any]:
    """Recompute summaries, ratios, targets and LATEST.md from a results file's stored
    repetitions (after a fix to the summarising code), optionally attaching a py-spy profile
    taken by `oddsflow.bench.profile` in a separate run (recorded as such)."""
    from pathlib import Path

    import orjson

    from oddsflow.bench.profile import summarize_collapsed
    from oddsflow.bench.scenarios.common import reps_summary

    path = Path(path)
    doc = orjson.loads(path.read_bytes())

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                isinstance(node.get("reps"), list)
                and node["reps"]
                and "complete" in node["reps"][0]
            ):
                node.update(reps_summary(node["reps"]))
            for v in node.values():
                walk(v)

    walk(doc["scenarios"])
    if profile_file is not None:
        prof = summarize_collapsed(Path(profile_file).read_text(errors="replace"))
        prof.update(
            tool="py-spy record --nonblocking",
            rate_hz=100,
            seconds=15,
            collapsed_file=str(profile_file),
            busy_fraction=round(prof["samples"] / 1500, 3),
            note=profile_note,
        )
        eo = doc["scenarios"].setdefault("bets", {}).setdefault("exactly_once", {})
        eo["profile_in_run"] = eo.get("profile")
        eo["profile"] = prof
    doc["ratios"] = ratios(doc["scenarios"])
    doc["targets"] = targets(doc["scenarios"], doc["ratios"])
    doc["table"] = table_rows(doc)
    doc["rebuilt"] = "summaries recomputed from the stored repetitions by bench.report.rebuild"
    path.write_bytes(
        orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str)
    )
    (path.parent / "LATEST.md").write_text(markdown(doc, path.name))
    rebuilt: dict[str, Any] = doc
    return rebuilt
