"""Targets met/missed and the printed / Markdown tables (the figures and their ratios to the
baselines are ``bench.rows``')."""

from __future__ import annotations

from typing import Any

from oddsflow.bench import rows as _rows_mod
from oddsflow.bench.rows import GUARANTEE_BASELINE, dig, fmt_ratio, med
from oddsflow.bench.rows import fmt as _fmt
from oddsflow.bench.stats import ratio

__all__ = [
    "GUARANTEE_BASELINE",
    "dig",
    "markdown",
    "med",
    "ratios",
    "rebuild",
    "table_rows",
    "targets",
    "text_table",
]


def ratios(sc: dict[str, Any]) -> list[dict[str, Any]]:
    return _rows_mod.ratios(sc)


def table_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return _rows_mod.rows(doc["scenarios"])


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
        # The box's figure: one worker, or two sharing the partitions (the best of the two,
        # as for the settlement burst); both are in the note.
        one_w = med(bets, "exactly_once", "closed_loop", "throughput_per_s")
        two_w = med(bets, "exactly_once", "closed_loop_two_workers", "throughput_per_s")
        # ...and with the requests framed as the API sends them (many per message)
        one_f = med(bets, "exactly_once", "batched", "closed_loop", "throughput_per_s")
        two_f = med(bets, "exactly_once", "batched", "closed_loop_two_workers", "throughput_per_s")
        t(
            "bet decisions/s sustained, exactly_once",
            max((v for v in (one_w, two_w, one_f, two_f) if v is not None), default=None),
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
            + f"; one worker: {_fmt(one_w)} dec/s, two workers: {_fmt(two_w)} dec/s (closed loop)"
            + (
                f"; framed as the API sends them, one worker: {_fmt(one_f)} dec/s, "
                f"two workers: {_fmt(two_f)} dec/s"
                if one_f is not None
                else ""
            )
            + (
                f"; two workers placing the burst: {_fmt(two_p)} dec/s"
                if (two_p := med(sc, "settlement_burst", "two_workers", "placement_per_s"))
                else ""
            ),
        )
        t(
            "decision p50 @100 bets/s offered (exactly_once)",
            med(bets, "exactly_once", "open_100", "p50_ms"),
            "<=",
            25,
            "ms",
            f"at_least_once: {_fmt(med(bets, 'at_least_once', 'open_100', 'p50_ms'))} ms",
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
        # The feed as the ingestors write it (batched, conflation on) where it was measured;
        # one update per message beside it.
        fed = (
            dig(prices, "batched", "on")
            if dig(prices, "batched", "guarantee") == "exactly_once"
            else None
        )
        one = med(prices, "exactly_once", "closed_loop", "throughput_per_s")
        one_lag = med(prices, "exactly_once", "open_5000", "p99_ms")
        t(
            "price updates/s priced (exactly_once)",
            med(fed, "closed_loop", "throughput_per_s") if fed else one,
            ">=",
            20000,
            "upd/s",
            (
                f"batched feed, conflation on; one update per message: {_fmt(one)} upd/s; "
                if fed
                else ""
            )
            + f"one core's in-process ceiling: {_fmt(med(b, 'ceiling', 'prices_per_s'))} upd/s",
        )
        t(
            "publish lag p99 @5,000/s (exactly_once)",
            med(fed, "open_5000", "p99_ms") if fed else one_lag,
            "<=",
            20,
            "ms",
            (
                f"batched feed, conflation on; one update per message: {_fmt(one_lag)} ms; "
                if fed
                else ""
            )
            + f"at_least_once: {_fmt(med(prices, 'at_least_once', 'open_5000', 'p99_ms'))} ms",
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
            5,
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
    head = ("scenario", "metric", "median", "min-max", "unit", "x baseline", "x faust")
    body = [
        (
            r["scenario"],
            r["metric"],
            _fmt(r["median"]),
            r["spread"],
            r["unit"],
            fmt_ratio(r["ratio"]),
            fmt_ratio(r.get("faust_ratio")),
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
        "many times the baseline's): the librdkafka passthrough (transactional for exactly_once, plain "
        'for at_least_once); "x faust" is engine / the Faust passthrough (the worker\'s framework and '
        "transport, exactly_once, forwarding each event unchanged), both measured in the same run at "
        "the same commit interval. Latency = consume time of the output minus the produce-time stamp "
        "in the input record (`placed_at`, `provider_ts`); throughput = N / (last output consumed - first "
        "input produced).",
        "",
        "| scenario | metric | median | min-max | unit | baseline | x baseline "
        "| faust passthrough | x faust |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in doc["table"]:
        out.append(
            f"| {r['scenario']} | {r['metric']} | {_fmt(r['median'])} | {r['spread']} | {r['unit']} | "
            f"{_fmt(r['baseline'])} | {fmt_ratio(r['ratio'])} | {_fmt(r.get('faust_baseline'))} | "
            f"{fmt_ratio(r.get('faust_ratio'))} |"
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
