"""Every reported figure as a row: its median and spread, and its ratio to each baseline
measured in the same run. Two baselines: the librdkafka passthrough (``passthrough_transactional``
for exactly_once, ``passthrough_plain`` for at_least_once: the physical floor of Kafka and the
client) and the Faust passthrough (``passthrough_faust``, exactly_once: the worker's framework
and transport forwarding only), so framework cost and engine logic are told apart."""

from __future__ import annotations

from typing import Any

from oddsflow.bench.stats import ratio
from oddsflow.metrics import TRANSACTION_PHASES

GUARANTEE_BASELINE = {
    "exactly_once": "passthrough_transactional",
    "at_least_once": "passthrough_plain",
}
FAUST_BASELINE = "passthrough_faust"
# TRANSACTION_PHASES as the table names them
PHASE_LABELS = (
    "pending sends acknowledged",
    "AddOffsetsToTxn + TxnOffsetCommit",
    "membership Heartbeat (aiokafka only; librdkafka: none, KIP-447)",
    "EndTxn",
)
NA = "n/a"  # a figure the run could not read (e.g. a metric the worker does not export)


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
    return float(v) if isinstance(v, int | float) else None


def fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:,.1f}" if abs(x) >= 10 else f"{x:,.2f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def fmt_ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _sp(d: Any, *path: str) -> str:
    v = dig(d, *path)
    if not isinstance(v, dict) or v.get("min") is None or v.get("n", 0) < 2:
        return ""
    return f"{fmt(v['min'])}-{fmt(v['max'])}"


def _open_keys(g: dict[str, Any], prefix: str = "open_") -> list[str]:
    """``g``'s open-loop results (``{prefix}{rate}``), lowest offered rate first."""
    keys = (k for k in g if k.startswith(prefix) and k[len(prefix) :].isdigit())
    return sorted(keys, key=lambda k: int(k[len(prefix) :]))


class _Rows:
    def __init__(self, sc: dict[str, Any]) -> None:
        self.rows: list[dict[str, Any]] = []
        self.b: dict[str, Any] = sc.get("baseline") or {}
        self.faust: dict[str, Any] = self.b.get(FAUST_BASELINE) or {}

    def add(
        self,
        scn: str,
        metric: str,
        src: Any,
        path: tuple[str, ...],
        unit: str,
        base: tuple[Any, tuple[str, ...], str] | None = None,
        faust: tuple[str, ...] | None = None,
        faust_src: dict[str, Any] | None = None,
    ) -> None:
        """One row; ``base`` (source, path, name) is its librdkafka passthrough figure and
        ``faust`` the path of its Faust passthrough figure (in the baseline scenario's, or in
        ``faust_src``). A missing figure is no row; a figure recorded as "n/a" is a row that
        says so."""
        raw = dig(src, *path)
        if raw is None:
            return
        v = med(src, *path)
        row: dict[str, Any] = {
            "scenario": scn,
            "metric": metric,
            "median": v if v is not None else (raw if isinstance(raw, str) else None),
            "spread": _sp(src, *path),
            "unit": unit,
            "baseline": None,
            "baseline_name": None,
            "ratio": None,
            "faust_baseline": None,
            "faust_ratio": None,
        }
        if base is not None:
            bsrc, bpath, bname = base
            bv = med(bsrc, *bpath)
            row.update(baseline=bv, baseline_name=bname, ratio=ratio(v, bv))
        if faust is not None:
            fv = med(self.faust if faust_src is None else faust_src, *faust)
            row.update(faust_baseline=fv, faust_ratio=ratio(v, fv))
        self.rows.append(row)

    def baseline(self) -> None:
        b = self.b
        if not b:
            return
        for what, label, unit in (("bets", "bets decided", "dec/s"), ("prices", "prices", "upd/s")):
            self.add(
                "baseline",
                f"in-process ceiling (handlers + Avro, no Kafka): {label}",
                b,
                ("ceiling", f"{what}_per_s"),
                unit,
            )
        self.add("baseline", "raw producer", b, ("raw_producer", "msgs_per_s"), "msgs/s")
        for name in ("passthrough_transactional", "passthrough_plain", FAUST_BASELINE):
            g = b.get(name) or {}
            label = name.replace("_", " ", 1)
            for what in ("bets", "prices"):
                self.add(
                    "baseline",
                    f"{label}: {what} copied (closed loop)",
                    g,
                    (f"{what}_closed_loop", "throughput_per_s"),
                    "msgs/s",
                )
                for key in _open_keys(g, f"{what}_open_"):
                    rt = int(key.rsplit("_", 1)[1])
                    for q in ("p50", "p99"):
                        self.add(
                            "baseline", f"{label}: {what} {q} @{rt:,}/s", g, (key, f"{q}_ms"), "ms"
                        )

    def _open(self, scn: str, what: str, guarantee: str, g: dict[str, Any], label: str) -> None:
        """Latency at each offered rate, against each passthrough's at the same rate."""
        bk = GUARANTEE_BASELINE[guarantee]
        bg = self.b.get(bk) or {}
        for key in (k for k in g if k.startswith("open_")):
            rt = int(key[5:])
            pkey = f"{what}_open_{rt}"
            if scn == "bets":
                self.add(
                    scn,
                    f"{guarantee}: decisions/s @{rt:,}/s offered",
                    g,
                    (key, "throughput_per_s"),
                    "dec/s",
                )
            for q in ("p50", "p95", "p99"):
                self.add(
                    scn,
                    f"{guarantee}: {label} {q} @{rt:,}/s",
                    g,
                    (key, f"{q}_ms"),
                    "ms",
                    (bg, (pkey, f"{q}_ms"), bk) if pkey in bg else None,
                    (pkey, f"{q}_ms")
                    if guarantee == "exactly_once" and pkey in self.faust
                    else None,
                )

    def _closed(self, scn: str, what: str, guarantee: str, g: dict[str, Any], metric: str) -> None:
        bk = GUARANTEE_BASELINE[guarantee]
        self.add(
            scn,
            f"{guarantee}: {metric}",
            g,
            ("closed_loop", "throughput_per_s"),
            "upd/s" if what == "prices" else "dec/s",
            (self.b.get(bk), (f"{what}_closed_loop", "throughput_per_s"), bk),
            (f"{what}_closed_loop", "throughput_per_s") if guarantee == "exactly_once" else None,
        )

    def _view(self, scn: str, guarantee: str, g: dict[str, Any], when: str) -> None:
        mv = g.get("market_view")
        if mv is None:
            return
        self.add(scn, f"{guarantee}: market view lag p50 ({when})", mv, ("lag_ms_p50",), "ms")
        self.add(scn, f"{guarantee}: market view lag max ({when})", mv, ("lag_ms_max",), "ms")
        self.add(
            scn,
            f"{guarantee}: market view lag, offsets max ({when})",
            mv,
            ("lag_offsets_max",),
            "msgs",
        )

    def prices(self, sc: dict[str, Any]) -> None:
        p = sc.get("prices") or {}
        for guarantee, g in p.items():
            if guarantee not in GUARANTEE_BASELINE:
                continue
            self._closed("prices", "prices", guarantee, g, "updates/s (closed loop)")
            self._open_sorted("prices", "prices", guarantee, g, "publish lag")
            self._view("prices", guarantee, g, "open loop")
        self._price_variants(p.get("conflation") or {}, "")
        self._price_variants(p.get("batched") or {}, "batched feed, ")

    def _price_variants(self, cf: dict[str, Any], feed: str) -> None:
        """Rows of conflation off and on (under ``cf["guarantee"]``), for one kind of feed."""
        guarantee = cf.get("guarantee")
        bk = GUARANTEE_BASELINE.get(guarantee or "")
        for state in ("off", "on"):
            g = cf.get(state)
            if not g or bk is None:
                continue
            label = f"{guarantee}, {feed}conflation {state}"
            self.add(
                "prices",
                f"{label}: updates/s (closed loop)",
                g,
                ("closed_loop", "throughput_per_s"),
                "upd/s",
                (self.b.get(bk), ("prices_closed_loop", "throughput_per_s"), bk),
                ("prices_closed_loop", "throughput_per_s") if guarantee == "exactly_once" else None,
            )
            for key in _open_keys(g):
                rt = int(key[5:])
                pkey = f"prices_open_{rt}"
                self.add(
                    "prices",
                    f"{label}: publish lag p99 @{rt:,}/s",
                    g,
                    (key, "p99_ms"),
                    "ms",
                    (self.b.get(bk), (pkey, "p99_ms"), bk),
                    (pkey, "p99_ms") if guarantee == "exactly_once" else None,
                )
                self.add(
                    "prices",
                    f"{label}: update lag p99 @{rt:,}/s",
                    g,
                    (key, "update_lag_p99_ms"),
                    "ms",
                )
                self.add("prices", f"{label}: published @{rt:,}/s", g, (key, "published"), "msgs")

    def _open_sorted(self, scn: str, what: str, guarantee: str, g: dict[str, Any], lb: str) -> None:
        self._open(scn, what, guarantee, {k: g[k] for k in _open_keys(g)}, lb)

    def bets(self, sc: dict[str, Any]) -> None:
        for guarantee, g in (sc.get("bets") or {}).items():
            self._open_sorted("bets", "bets", guarantee, g, "decision")
            self._closed("bets", "bets", guarantee, g, "max decisions/s (closed loop)")
            if "closed_loop_two_workers" in g:
                self._closed(
                    "bets",
                    "bets",
                    guarantee,
                    {"closed_loop": g["closed_loop_two_workers"]},
                    "max decisions/s (closed loop), two workers",
                )
            if "decision_paths" in g:
                self.add(
                    "bets",
                    f"{guarantee}: share of bets decided on the fast path",
                    g,
                    ("decision_paths", "fast_share_pct"),
                    "%",
                )
            self._view("bets", guarantee, g, "closed loop")
            self._commit_phases(guarantee, g)
            if "batched" in g:
                self._bets_batched(guarantee, g["batched"])

    def _bets_batched(self, guarantee: str, bt: dict[str, Any]) -> None:
        """The bet requests framed many per message, as the API sends them."""
        bk = GUARANTEE_BASELINE[guarantee]
        lb = f"{guarantee}, requests framed as the API sends them"
        for key, workers in (("closed_loop", ""), ("closed_loop_two_workers", ", two workers")):
            self.add(
                "bets",
                f"{lb}: max decisions/s (closed loop){workers}",
                bt,
                (key, "throughput_per_s"),
                "dec/s",
                (self.b.get(bk), ("bets_closed_loop", "throughput_per_s"), bk),
                ("bets_closed_loop", "throughput_per_s") if guarantee == "exactly_once" else None,
            )
        bg = self.b.get(bk) or {}
        for key in _open_keys(bt):
            rt, pkey = int(key[5:]), f"bets_{key}"
            for q in ("p50", "p99"):
                self.add(
                    "bets",
                    f"{lb}: decision {q} @{rt:,}/s",
                    bt,
                    (key, f"{q}_ms"),
                    "ms",
                    (bg, (pkey, f"{q}_ms"), bk) if pkey in bg else None,
                    (pkey, f"{q}_ms")
                    if guarantee == "exactly_once" and pkey in self.faust
                    else None,
                )

    def _commit_phases(self, guarantee: str, g: dict[str, Any]) -> None:
        """What a commit spends, phase by phase, at the lowest offered rate (what bounds a
        decision's latency there) and in the closed loop (what a commit costs under load)."""
        opens = _open_keys(g)
        if opens and isinstance(dig(g, opens[0], "commit_phases", "commit_ms_mean"), float):
            rt = int(opens[0][5:])
            src = g[opens[0]]["commit_phases"]
            self.add("bets", f"{guarantee}: commits/s @{rt:,}/s", src, ("commits_per_s",), "/s")
            for phase, label in zip(TRANSACTION_PHASES, PHASE_LABELS, strict=True):
                self.add(
                    "bets",
                    f"{guarantee}: commit phase @{rt:,}/s: {label}",
                    src,
                    (f"{phase}_ms_mean",),
                    "ms",
                )
        closed = dig(g, "closed_loop", "commit_phases")
        if isinstance(dig(closed, "commit_ms_mean"), float):
            self.add("bets", f"{guarantee}: commit, closed loop", closed, ("commit_ms_mean",), "ms")
            self.add(
                "bets",
                f"{guarantee}: agents' wait for the commit's lock, closed loop",
                closed,
                ("emit_wait_ms_mean",),
                "ms",
            )

    def settlement(self, sc: dict[str, Any]) -> None:
        st = sc.get("settlement_burst")
        if not st:
            return
        bk = "passthrough_transactional"
        n = st.get("n")
        self.add(
            "settlement_burst", f"burst of {n:,} bets: all settled + posted", st, ("burst_s",), "s"
        )
        self.add(
            "settlement_burst",
            "settlements/s in the burst",
            st,
            ("settlements_per_s",),
            "bets/s",
            (self.b.get(bk), ("bets_closed_loop", "throughput_per_s"), bk),
            ("bets_closed_loop", "throughput_per_s"),
        )
        if n != 100_000:
            self.add(
                "settlement_burst",
                "100,000-bet burst (extrapolated)",
                st,
                ("extrapolated_100k_s",),
                "s",
            )
        for label, src in (("", st), ("two workers: ", st.get("two_workers"))):
            self.add(
                "settlement_burst",
                f"{label}first settlement after the result",
                src,
                ("first_settlement_ms",),
                "ms",
            )
            self.add(
                "settlement_burst",
                f"{label}settlement p50 after the result (bet by bet)",
                src,
                ("settlement_p50_ms",),
                "ms",
            )
        self.add(
            "settlement_burst",
            f"two workers: burst of {n:,} bets",
            st,
            ("two_workers", "burst_s"),
            "s",
        )
        self.add(
            "settlement_burst",
            "two workers: bets placed/s (exactly_once, closed loop)",
            st,
            ("two_workers", "placement_per_s"),
            "dec/s",
        )

    def sinks(self, sc: dict[str, Any]) -> None:
        sk = sc.get("sinks")
        if not sk:
            return
        bk = "passthrough_plain"
        base = (self.b.get(bk), ("bets_closed_loop", "throughput_per_s"), bk)
        self.add(
            "sinks", "postgres: ledger transactions/s", sk, ("postgres", "msgs_per_s"), "tx/s", base
        )
        self.add("sinks", "postgres: postings/s", sk, ("postgres", "postings_per_s"), "postings/s")
        self.add(
            "sinks",
            "postgres, two sink processes: postings/s",
            sk,
            ("postgres_two_processes", "postings_per_s"),
            "postings/s",
        )
        for kind in ("chdb", "server"):
            key = f"clickhouse_{kind}"
            if "msgs_per_s" not in (sk.get(key) or {}):
                continue
            self.add(
                "sinks", f"clickhouse ({kind}): messages/s", sk, (key, "msgs_per_s"), "msgs/s", base
            )
            self.add("sinks", f"clickhouse ({kind}): rows/s", sk, (key, "rows_per_s"), "rows/s")

    def commit_path(self, sc: dict[str, Any]) -> None:
        """Decision p50/p99 per (commit interval, retry backoff), beside the two passthroughs
        measured in the same scenario at the same commit interval (and backoff, for Faust's)."""
        cp = sc.get("commit_path") or {}
        rt = cp.get("rate_per_s")
        for ci_key, g in cp.items():
            if not ci_key.startswith("commit_") or not isinstance(g, dict):
                continue
            lib = g.get("passthrough_transactional")
            ci = g.get("commit_interval_s")
            for rb_key, rb in g.items():
                if not rb_key.startswith("backoff_"):
                    continue
                label = f"commit {ci:g} s, retry backoff {rb_key[8:]}"
                self.add(
                    "commit_path",
                    f"{label}: decisions/s (closed loop)",
                    rb,
                    ("worker", "closed_loop", "throughput_per_s"),
                    "dec/s",
                )
                for q in ("p50", "p99"):
                    self.add(
                        "commit_path",
                        f"{label}: decision {q} @{rt}/s",
                        rb,
                        ("worker", f"{q}_ms"),
                        "ms",
                        (lib, (f"{q}_ms",), "passthrough_transactional"),
                        (f"{q}_ms",),
                        rb.get("passthrough_faust") or {},
                    )


def rows(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every reported figure: scenario, metric, median, spread, unit, and per baseline its
    figure and the ratio engine / baseline (for latencies: how many times the baseline's)."""
    r = _Rows(sc)
    r.baseline()
    r.prices(sc)
    r.bets(sc)
    r.settlement(sc)
    r.sinks(sc)
    r.commit_path(sc)
    return r.rows


def ratios(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (figure, baseline) that has a ratio."""
    out: list[dict[str, Any]] = []
    for r in rows(sc):
        common = {k: r[k] for k in ("scenario", "metric", "median")}
        if r["ratio"] is not None:
            out.append(
                {
                    **common,
                    "baseline": r["baseline"],
                    "baseline_name": r["baseline_name"],
                    "ratio": r["ratio"],
                }
            )
        if r["faust_ratio"] is not None:
            out.append(
                {
                    **common,
                    "baseline": r["faust_baseline"],
                    "baseline_name": FAUST_BASELINE,
                    "ratio": r["faust_ratio"],
                }
            )
    return out
