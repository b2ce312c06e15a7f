"""Kill workers with SIGKILL mid-stream: no decision, settlement or posting is lost or doubled.

Inputs are plain lists; the checks read the output topics with read_committed and the
engine's own wallet table from its changelog.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict

import pytest

from oddsflow import services
from oddsflow.demo import read_changelog
from oddsflow.domain.money import payout_minor
from oddsflow.kafka import EventProducer, consume_all
from tests.conftest import wait_for
from tests.processors import records as r
from tests.processors.test_worker_metrics import _free_port, _scrape, _value

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = [f"e{i}" for i in range(12)]
ACCOUNTS = [f"a{i}" for i in range(60)]
# Low enough that busy selections fill up: the recall and authoritative paths run under the
# crashes too, and "no liability limit exceeded" is a check that can fail.
LIABILITY_MINOR_MAX_SELECTION = 60_000


def crash_settings(s):
    return s.model_copy(
        update={
            "liability_minor_max_selection": LIABILITY_MINOR_MAX_SELECTION,
            "liability_minor_max_market": 100 * LIABILITY_MINOR_MAX_SELECTION,
        }
    )


def feed_and_bets(n_bets: int, seed: int = 1):
    rng = random.Random(seed)
    inputs = []
    for i, e in enumerate(EVENTS):
        inputs += [
            ("fixtures", e, r.fixture(e)),
            ("market_status", e, r.status(e, "open", 1)),
            (
                "price_updates",
                e,
                r.prices(e, ("2.10", "3.40", "3.60") if i % 2 else ("1.80", "3.80", "4.50")),
            ),
        ]
    inputs += [("deposits", a, r.deposit(a, 1_000_00)) for a in ACCOUNTS]
    for n in range(n_bets):
        a = rng.choice(ACCOUNTS)
        if n % 10 == 0:  # accumulators across two events
            e1, e2 = rng.sample(EVENTS, 2)
            legs = [r.leg(e1, "home", "1.5"), r.leg(e2, "away", "1.5")]
        else:
            legs = [r.leg(rng.choice(EVENTS), rng.choice(["home", "draw", "away"]), "1.5")]
        inputs.append(
            ("bet_requests", a, r.bet(f"bet{n}", a, rng.choice([100, 250, 1000, 2500]), legs))
        )
    return inputs


def results():
    rng = random.Random(2)
    return [
        ("results", e, r.result(e, (rng.randint(0, 3), rng.randint(0, 3)), (0, 0))) for e in EVENTS
    ]


def produce(s, inputs, rate_per_s: float = 0.0):
    """Produce the inputs, paced at rate_per_s (0: as fast as possible)."""
    p = EventProducer(s)
    t0 = time.monotonic()
    for n, (topic, key, rec) in enumerate(inputs):
        p.send(topic, key, rec)
        if rate_per_s and n % 50 == 0:
            p.producer.flush()
            ahead = n / rate_per_s - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    p.flush()


def produce_in_background(s, inputs, rate_per_s):
    t = threading.Thread(target=produce, args=(s, inputs, rate_per_s), daemon=True)
    t.start()
    return t


def count(s, topic):
    return len(consume_all(topic, s, idle_s=0.3, timeout_s=30))


def written(s, topic):
    """Records written to a topic so far, from its high watermarks (an upper bound: it counts
    transaction markers and open transactions too). Instant, unlike ``count``, which reads until
    the topic goes quiet: a trigger for "mid-stream" while outputs still flow."""
    from confluent_kafka import Consumer, TopicPartition

    from oddsflow import topology

    spec = topology.load(settings=s).topic(topic)
    c = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": "watermarks"})
    try:
        return sum(
            c.get_watermark_offsets(TopicPartition(spec.name, p), timeout=10)[1]
            for p in range(spec.partitions)
        )
    finally:
        c.close()


def steady(s):
    """A predicate that holds once two consecutive reads of the outputs are equal: the
    workers have nothing left to do, so anything doubled has shown up."""
    last: list[tuple[int, int, int]] = []

    def check() -> bool:
        now = (count(s, "bet_decisions"), count(s, "settlements"), count(s, "ledger"))
        same = bool(last) and last[-1] == now
        last.append(now)
        return same

    return check


def check_liability(decisions, requests, limit_minor=LIABILITY_MINOR_MAX_SELECTION):
    """No selection's liability from accepted singles passed its limit."""
    legs = {v["bet_id"]: v["legs"] for _, v in requests}
    liability: dict[tuple[str, str], int] = defaultdict(int)
    stakes: dict[str, int] = defaultdict(int)
    for d in decisions:
        if not d["accepted"] or len(legs[d["bet_id"]]) != 1:
            continue
        [leg] = legs[d["bet_id"]]
        market = leg["event_id"]
        liability[(market, leg["selection"])] += payout_minor(d["stake_minor"], d["bound_odds"][0])
        stakes[market] += d["stake_minor"]
    worst = max(ret - stakes[m] for (m, _), ret in liability.items())
    assert worst <= limit_minor, f"liability {worst} over the limit"
    return worst


def check_books(s, n_bets):
    decisions = [v for _, v in consume_all("bet_decisions", s, idle_s=2)]
    per_bet = Counter(d["bet_id"] for d in decisions)
    assert len(per_bet) == n_bets, "a bet request has no decision"
    assert max(per_bet.values()) == 1, (
        f"duplicated decisions: {[b for b, c in per_bet.items() if c > 1][:5]}"
    )
    accepted = {d["bet_id"] for d in decisions if d["accepted"]}
    assert len(accepted) > n_bets // 2
    settlements = [v for _, v in consume_all("settlements", s, idle_s=2)]
    per_settled = Counter(x["bet_id"] for x in settlements)
    assert set(per_settled) == accepted, "an accepted bet has no settlement"
    assert max(per_settled.values()) == 1, "a bet was settled twice"
    txs = [v for _, v in consume_all("ledger", s, idle_s=2)]
    ids = Counter(t["tx_id"] for t in txs)
    assert max(ids.values()) == 1, (
        f"duplicated postings: {[i for i, c in ids.items() if c > 1][:5]}"
    )
    balances: dict[str, int] = defaultdict(int)
    for t in txs:
        assert sum(p["amount_minor"] for p in t["postings"]) == 0
        for p in t["postings"]:
            balances[p["account"]] += p["amount_minor"]
    assert sum(balances.values()) == 0
    assert len([t for t in txs if t["kind"] == "settle"]) == len(accepted)
    wallets = {w["account_id"]: w for w in read_changelog(s, "wallets").values()}  # one currency
    assert set(wallets) == set(ACCOUNTS)
    for a, w in wallets.items():
        assert w["reserved_minor"] == 0
        assert w["balance_minor"] == balances[f"player:{a}:available"], a
    stakes = sum(d["stake_minor"] for d in decisions if d["accepted"])
    returns = sum(x["return_minor"] for x in settlements)
    assert balances["book:ggr"] == stakes - returns
    limit = s.liability_minor_max_selection
    check_liability(decisions, consume_all("bet_requests", s, idle_s=1), limit or 10**18)
    if limit == LIABILITY_MINOR_MAX_SELECTION:  # crash_settings: the limit is reached
        refused = Counter(d["reason"] for d in decisions if not d["accepted"])
        assert refused["LIABILITY_SELECTION"] > 0, f"no selection filled up: {refused}"


def test_sigkill_mid_stream_loses_and_doubles_nothing(kafka_settings, worker_factory):
    s = crash_settings(kafka_settings)
    n_bets = 3000
    w = worker_factory(s).start()
    inputs = feed_and_bets(n_bets)
    n_setup = len(EVENTS) * 3 + len(ACCOUNTS)
    produce(s, inputs[:n_setup])
    wait_for(lambda: count(s, "priced_markets") >= len(EVENTS), 120, 0.5, "markets priced")
    feeder = produce_in_background(s, inputs[n_setup:], rate_per_s=300)  # ~10 s of bets
    wait_for(lambda: written(s, "bet_decisions") >= 300, 120, 0.2, "decisions flowing")
    w.kill()  # mid-stream, with transactions open
    before = count(s, "bet_decisions")
    assert 0 < before < n_bets
    requests = written(s, "bet_requests")  # plain (not transactional) writes: exact
    assert requests < n_bets
    # Bets keep arriving while no worker runs.
    wait_for(lambda: written(s, "bet_requests") >= requests + 200, 60, 0.2, "bets while down")
    w.start()
    feeder.join()
    wait_for(lambda: count(s, "bet_decisions") >= n_bets, 240, 2, "all decisions after restart")
    feeder = produce_in_background(s, results(), rate_per_s=0)
    wait_for(lambda: written(s, "settlements") > 0, 120, 0.1, "settling")
    w.kill()  # in the middle of settling
    w.start()
    feeder.join()
    accepted = {v["bet_id"] for _, v in consume_all("bet_decisions", s, idle_s=1) if v["accepted"]}
    wait_for(
        lambda: count(s, "settlements") >= len(accepted), 240, 2, "all settlements after restart"
    )
    wait_for(steady(s), 120, 3, "outputs steady")
    check_books(s, n_bets)
    assert "Traceback" not in w.log_text()


# The rerun stays (2026-12-01 late evening): with the resume offsets asked as stable offsets
# the test passed 8 of 8 runs alone at a 0.02 s commit interval, but the first attempt failed in
# a CI rehearsal under the full suite's load (its message was not kept; it now names the dead
# letters), so the default interval went back to 0.05 s.
@pytest.mark.flaky(reruns=1)
def test_scale_out_two_workers_and_failover(kafka_settings, worker_factory):
    """Was flaky on a loaded machine (2 of 4 full runs): after a rebalance the surviving
    worker stalled on partitions that had no committed offset yet, because aiokafka's
    seek_to_committed leaves those at their fetch position, after the records Faust dropped
    during the rebalance (fixed in processors.transport.WorkerConsumerThread). One rerun
    stays as a hedge until full runs under load have shown it steady."""
    s = crash_settings(kafka_settings)
    n_bets = 3000
    ports = [_free_port(), _free_port()]
    w1 = worker_factory(s.model_copy(update={"metrics_port": ports[0]}), "w1").start()
    # w2 emits every event of a batch on its own (a zero batch budget): the split path of
    # processors.app.handle_batch must keep the same books.
    w2 = worker_factory(
        s.model_copy(update={"metrics_port": ports[1], "agent_batch_budget_ms": 0}), "w2"
    ).start()
    inputs = feed_and_bets(n_bets, seed=3)
    n_setup = len(EVENTS) * 3 + len(ACCOUNTS)
    produce(s, inputs[:n_setup])
    wait_for(lambda: count(s, "priced_markets") >= len(EVENTS), 120, 0.5, "markets priced")
    feeder = produce_in_background(s, inputs[n_setup:], rate_per_s=300)
    # Both workers are in the group and each has handled events of its own partitions.
    wait_for(
        lambda: all(
            _value(_scrape(p), "oddsflow_events_in_total", agent="wallet") > 0 for p in ports
        ),
        120,
        0.5,
        "both workers deciding",
    )
    w2.kill()  # its partitions and table state move to w1 (changelog recovery)
    assert count(s, "bet_decisions") < n_bets
    feeder.join()
    try:
        wait_for(
            lambda: count(s, "bet_decisions") >= n_bets, 240, 2, "all decisions after failover"
        )
        produce(s, results())
        accepted = {
            v["bet_id"] for _, v in consume_all("bet_decisions", s, idle_s=1) if v["accepted"]
        }
        wait_for(lambda: count(s, "settlements") >= len(accepted), 240, 2, "all settlements")
    except AssertionError as exc:
        # The topics go with the test: what the failure needs to be diagnosed goes with it.
        dls = [v.get("error", "")[:200] for _, v in consume_all("dead_letters", s, idle_s=1)]
        raise AssertionError(
            f"{exc}; {count(s, 'bet_decisions')} of {n_bets} decided; dead letters {dls[:5]}"
        ) from exc
    wait_for(steady(s), 120, 3, "outputs steady")
    check_books(s, n_bets)
    assert w1.alive()


# One rerun as a hedge (2026-12-01, one CI rehearsal of several): the worker, fenced after the
# broker came back, crashed by design but its process never exited (Faust's consumer thread did
# not stop and the interpreter waited on it), so the supervisor never restarted it. Fixed in
# processors.app._exit_past_stuck_threads; the rerun stays until runs show the fix holds.
# 2026-12-02 (CI, then 2 of 6 runs here): librdkafka's send_offsets_to_transaction blocked for
# good after the broker came back (librdkafka#5456) and the worker decided nothing more; its
# calls are now bounded (processors.txn_producer), and a wedged one stops the worker for its
# supervisor, seen in 1 of 6 runs after the fix, all 6 green. The rerun of that CI run then
# failed at once on "Kafka to die": the broker, restarted by this test, was a zombie child of
# pytest (services._is_zombie).
@pytest.mark.flaky(reruns=1)
def test_broker_sigkilled_mid_stream_and_restarted_loses_and_doubles_nothing(
    kafka_settings, worker_factory
):
    """The shared broker is SIGKILLed with the worker's transactions open and started again.

    A short outage the worker rides out (its clients reconnect). A longer one outlasts the
    transaction timeout: the restarted broker aborts the open transaction and fences its
    producer, and the worker stops (by design: it never resumes on a state it cannot trust)
    for a supervisor to restart it. Which of the two happens depends on how fast the broker
    comes back on a loaded machine, so the test supervises the worker like systemd or
    Kubernetes would, and requires the books to be exact either way, and a stopped worker to
    have stopped for the fencing, not for anything else.
    """
    s = crash_settings(kafka_settings)
    broker = services.Kafka(s)
    n_bets = 2000
    w = worker_factory(s).start()
    inputs = feed_and_bets(n_bets, seed=5)
    n_setup = len(EVENTS) * 3 + len(ACCOUNTS)
    produce(s, inputs[:n_setup])
    wait_for(lambda: count(s, "priced_markets") >= len(EVENTS), 120, 0.5, "markets priced")
    feeder = produce_in_background(s, inputs[n_setup:], rate_per_s=200)
    wait_for(lambda: written(s, "bet_decisions") >= 200, 120, 0.2, "decisions flowing")
    try:
        broker.kill()  # SIGKILL, with the worker's transactions open
        assert not broker.status().running
    finally:
        # the same data directory: what was acknowledged (acks=all, fsync'd) is kept. Also on a
        # failed kill: the rest of the suite shares this broker.
        broker.up()
    wait_for(lambda: broker.status().running, 120, 1, "broker back")
    restarts = [0]

    def supervised(done):
        def check():
            if not w.alive():  # a supervisor restarts a worker that stopped
                restarts[0] += 1
                w.start()
            return done()

        return check

    feeder.join()  # its producer retried through the outage (idempotent: no duplicates)
    wait_for(supervised(lambda: count(s, "bet_decisions") >= n_bets), 300, 2, "all decisions after")
    produce(s, results())
    accepted = {v["bet_id"] for _, v in consume_all("bet_decisions", s, idle_s=1) if v["accepted"]}
    wait_for(
        supervised(lambda: count(s, "settlements") >= len(accepted)), 300, 2, "all settlements"
    )
    wait_for(supervised(steady(s)), 120, 3, "outputs steady")
    check_books(s, n_bets)
    if restarts[0]:
        assert "transaction aborted; stopping the worker" in w.log_text()


def test_a_restarted_worker_decides_nothing_before_its_view_caught_up(
    kafka_settings, worker_factory
):
    s = kafka_settings
    w = worker_factory(s).start()
    p = EventProducer(s)
    p.send("fixtures", "e1", r.fixture("e1"))
    p.send("market_status", "e1", r.status("e1", "open", 1))
    p.send("price_updates", "e1", r.prices("e1"))
    p.send("deposits", "a1", r.deposit("a1", 100_00))
    p.send("bet_requests", "a1", r.bet("b0", "a1", 10_00, [r.leg("e1", "home", "1.5")]))
    p.flush()
    wait_for(lambda: count(s, "bet_decisions") >= 1, 120, 0.5, "first decision")
    priced = consume_all("priced_markets", s, idle_s=1)[-1][1]  # status and price: maybe two
    w.kill()
    # A transaction left open on markets.priced (a pricer mid-commit): the restarted worker's
    # view cannot reach the end offsets it sees at start until this transaction ends.
    hanging = EventProducer(
        s, **{"transactional.id": f"{s.topic_prefix}hanging", "transaction.timeout.ms": 300_000}
    )
    hanging.producer.init_transactions(30)
    hanging.producer.begin_transaction()
    hanging.send(
        "priced_markets", priced["market_id"], {**priced, "version": priced["version"] + 1}
    )
    hanging.producer.flush(30)
    port = _free_port()
    w = worker_factory(s.model_copy(update={"metrics_port": port}), "w-restarted").start()
    p.send("bet_requests", "a1", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", "1.5")]))
    p.send("price_updates", "e2", r.prices("e2"))
    p.flush()
    # The restarted worker runs (it priced e2) and its view is still behind...
    wait_for(
        lambda: _value(_scrape(port), "oddsflow_events_in_total", agent="pricing") >= 1,
        120,
        0.5,
        "restarted worker pricing",
    )
    text = _scrape(port)
    assert _value(text, "oddsflow_market_view_caught_up") == 0
    assert _value(text, "oddsflow_bet_decisions_total") == 0, "decided before the view caught up"
    released_ms = time.time_ns() // 1_000_000
    hanging.producer.commit_transaction(30)
    # ...and decides b1 only once the view has caught up: after the transaction ended.
    decisions = wait_for(
        lambda: [v for _, v in consume_all("bet_decisions", s, idle_s=1) if v["bet_id"] == "b1"],
        120,
        0.5,
        "b1 decided",
    )
    [d] = decisions
    assert d["accepted"], d
    assert d["decided_at"] >= released_ms
    assert count(s, "dead_letters") == 0
