"""Account-side handlers: deposits, the one-hop bet decision, quotas, settlement.

Everything about one customer lives on the partition of its ``account_id``: one wallet per
currency (balance and reserved stake; key ``"a1|GBP"``) and every bet it placed (request,
progress, decision, leg settlements; key ``"bet:a1|b1"``: a bet id is scoped to its
account, and so is every id derived from it). Balances change only through the domain's
wallet transitions. A bet request is decided in one step by ``domain.decide.decide``
against the worker's market view (``processors.market_view``) and the partition's liability
quotas (table ``quotas``, one record per market: key ``"quota:<partition>|<currency>|<market>"``):

* **accepted** / **rejected**: the decision, its ledger transaction(s) and the table writes
  go out in the input's transaction; each accepted leg is sent to its event partition
  (``accepted_legs``: open leg for settlement, the quota spend of a single);
* **held** (in-play delay): the stake is reserved and the bet stored; ``bet_delays`` brings
  it back when it is due (``on_bet_delay``) and it is decided again against the view then;
* **needs authoritative**: a single its quota cannot cover; the stake is reserved and the
  event partition decides its liability exactly (``leg_commands`` -> ``leg_verdicts``).

Quota grants and recalls arrive on ``quota_grants``; a recall is answered with the unspent
quota on ``accepted_legs``, after the spends this partition sent (one ordered channel).

Settlement: each event partition emits its open legs' outcomes at their bound odds, batched
per account partition (``leg_settlements``); when a bet's last leg is in, the wallet computes
the return and credits it. A corrected result (higher revision) recomputes it and posts only the
difference. A provider-settled leg may also come back ``open`` (a rollback): a settled bet is
then reopened (its settlement reversed) until every leg is settled again.

Every transition is idempotent by id (bet id, leg index, revision), so a redelivery after
a crash is harmless whether or not the transaction that produced it was committed.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from oddsflow.domain import ledger
from oddsflow.domain.acceptance import (
    BetRequest,
    Limits,
    PricePolicy,
    RejectReason,
    Wallet,
    commit,
    credit,
    potential_return,
    release,
)
from oddsflow.domain.decide import VIEW_AGE_MS_MAX_IN_PLAY, MarketLookup, Outcome, decide
from oddsflow.domain.errors import DomainError
from oddsflow.domain.ledger import ID_SEPARATOR, scoped_id
from oddsflow.domain.quota import Grant, Quotas, Recall, on_recall, receive_grant
from oddsflow.domain.settlement import LegSettlement, combine, resettlement_delta
from oddsflow.domain.settlement import Outcome as LegOutcome
from oddsflow.metrics import (
    DECISION_LATENCY_SECONDS,
    DECISION_PATHS,
    DECISIONS,
    SETTLEMENTS,
    STALE_UPDATES,
)
from oddsflow.processors.emit import key_partition
from oddsflow.processors.markets import ODDS_Q, InputError, leg_from_record, leg_json
from oddsflow.processors.quota_records import (
    account_seq_key,
    is_fresh,
    legacy_quotas_key,
    quotas_from_record,
    quotas_key,
    quotas_record,
    split_legacy_record,
)
from oddsflow.processors.state import Effects, Store

# A leg outcome (leg_settlement_batch v2) and a settlement outcome (settlement v2) that is not
# a settlement: the provider rolled the leg's settlement or cancel back, the bet is open again.
REOPENED = "open"


def wallet_key(account_id: str, currency: str) -> str:
    """The wallets table key: one wallet per (account, currency), ``"a1|GBP"``. Money in one
    currency never funds a bet in another."""
    return scoped_id(account_id, currency)


def bet_key(account_id: str, bet_id: str) -> str:
    """The bets table key: a bet id is scoped to its account (``"bet:a1|b1"``), so another
    account reusing the id places its own bet and never sees this one's decision."""
    return f"bet:{scoped_id(account_id, bet_id)}"


def _wallet(rec: dict[str, Any] | None) -> Wallet:
    if rec is None:
        return Wallet()
    return Wallet(
        balance_minor=int(rec["balance_minor"]), reserved_minor=int(rec["reserved_minor"])
    )


def _wallet_record(account_id: str, currency: str, w: Wallet) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "currency": currency,
        "balance_minor": w.balance_minor,
        "reserved_minor": w.reserved_minor,
    }


def tx_record(tx: ledger.Transaction, account_id: str, now_ms: int) -> dict[str, Any]:
    return {
        "tx_id": tx.tx_id,
        "kind": tx.kind,
        "bet_id": tx.bet_id,
        "account_id": account_id,
        "postings": [
            {
                "posting_id": p.posting_id,
                "account": p.account,
                "amount_minor": p.amount_minor,
                "currency": p.currency,
            }
            for p in tx.postings
        ],
        "created_at": now_ms,
    }


class WalletHandler:
    """Every balance change goes through the domain's wallet transitions (``reserve``,
    ``commit``, ``release``, ``credit``): one state machine, bounded to 64-bit sums."""

    def __init__(
        self,
        wallets: Store,
        bets: Store,
        limits: Limits,
        *,
        view: MarketLookup,
        quotas: Store,
        account_partitions: int = 1,
        view_age_ms_max_in_play: int = VIEW_AGE_MS_MAX_IN_PLAY,
    ) -> None:
        self.wallets = wallets
        self.bets = bets
        self.limits = limits
        self.view = view
        self.quotas = quotas
        self.account_partitions = account_partitions
        self.view_age_ms_max_in_play = view_age_ms_max_in_play

    # A wallet is read and written by every bet and settlement of its account (a result
    # settles an account's bets one after another): the Wallet written is the one the next
    # read returns, not decoded again (Store.get_frozen; Wallet is frozen).
    def _get_wallet(self, account_id: str, currency: str) -> Wallet:
        return self.wallets.get_frozen(wallet_key(account_id, currency), _wallet)

    def _put_wallet(self, account_id: str, currency: str, w: Wallet) -> None:
        self.wallets.put_frozen(
            wallet_key(account_id, currency), _wallet_record(account_id, currency, w), _wallet, w
        )

    # ------------------------------------------------------------------ money in

    def on_deposit(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        acct, ccy = rec["account_id"], rec["currency"]
        try:
            key = f"dep:{scoped_id(acct, rec['ref'])}"
            if self.bets.get(key) is not None:
                return  # idempotent by the deposit's reference (scoped to its account)
            if rec["amount_minor"] <= 0:
                raise InputError("deposit amount must be positive")
            w = credit(self._get_wallet(acct, ccy), rec["amount_minor"])
            tx = ledger.deposit(rec["ref"], acct, rec["amount_minor"], ccy)
        except DomainError as exc:
            raise InputError(f"deposit {rec['ref']!r} refused: {exc}") from exc
        self._put_wallet(acct, ccy, w)
        self.bets.put(key, {"amount_minor": rec["amount_minor"], "currency": ccy})
        fx.emit("ledger", acct, tx_record(tx, acct, now_ms))

    # ------------------------------------------------------------------ one hop

    def _quotas(self, partition: int, currency: str, market_id: str) -> Quotas:
        """The partition's quota on one market (the only market a single or a quota message
        concerns): a :class:`Quotas` holding that market's amounts alone."""
        key = quotas_key(partition, currency, market_id)
        rec = self.quotas.get(key)
        if rec is None and self._split_legacy(partition, currency):
            rec = self.quotas.get(key)
        q: Quotas = quotas_from_record(rec, partition, market_id)
        return q

    def _put_quotas(self, currency: str, market_id: str, q: Quotas) -> None:
        key = quotas_key(q.partition, currency, market_id)
        rec = quotas_record(q, market_id)
        if rec["amounts"]:
            self.quotas.put(key, rec)
        else:
            self.quotas.delete(key)  # nothing held: no record (a recalled or spent-out market)

    def _split_legacy(self, partition: int, currency: str) -> bool:
        """A table written before the per-market records holds one record for every market of
        (partition, currency): split it into per-market records and drop it, in the same
        transaction as the write that follows, so no quota is lost or counted twice. Every
        per-market write is preceded by a read (a miss comes here first), so the split
        happens before any per-market record of that (partition, currency) exists."""
        legacy = self.quotas.get(legacy_quotas_key(partition, currency))
        if legacy is None:
            return False
        for market_id, rec in split_legacy_record(legacy).items():
            self.quotas.put(quotas_key(partition, currency, market_id), rec)
        self.quotas.delete(legacy_quotas_key(partition, currency))
        return True

    def partition_of(self, account_id: str) -> int:
        p: int = key_partition(account_id.encode(), self.account_partitions)
        return p

    def on_bet_request(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        acct = rec["account_id"]
        if not acct or ID_SEPARATOR in acct:
            # No key can hold this bet unambiguously: refuse it without remembering it
            # (a repeat gets the same refusal again).
            self._decide(rec, None, fx, now_ms, RejectReason.INVALID_REQUEST, [], store=False)
            return
        key = bet_key(acct, rec["bet_id"])
        bet = self.bets.get(key)
        if bet is not None:
            if bet.get("decision") is not None:
                # A duplicate bet id gets the original decision again, unchanged.
                fx.emit("bet_decisions", acct, _decision_avro(bet["decision"]))
            return
        try:
            legs = tuple(leg_from_record(leg) for leg in rec["legs"])
            if not legs:
                raise InputError("a bet needs at least one leg")
            if len({leg.event_id for leg in legs}) != len(legs):
                raise InputError("an accumulator takes at most one leg per event")
            request = BetRequest(
                bet_id=rec["bet_id"],
                account_id=acct,
                stake_minor=rec["stake_minor"],
                currency=rec["currency"],
                legs=legs,
                price_policy=PricePolicy(rec["price_policy"]),
                placed_at_ms=rec["placed_at"],
            )
        except (InputError, ValueError):
            self._decide(rec, None, fx, now_ms, RejectReason.INVALID_REQUEST, [])
            return
        req = _request_json(rec)
        bet = {
            "request": req,
            "state": "deciding",
            "decision": None,
            "legs_settled": {},
            "settled_return": None,
            "settle_revision": -1,
            "settle_sig": None,
        }
        self._one_hop(key, bet, request, fx, now_ms, held=False)

    def on_bet_delay(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        """A held bet is due (the bet_delay agent waited for ``hold_until_ms``): decide it again
        against the view as it is now; a suspension or price move during the delay rejects it."""
        key = bet_key(rec["account_id"], rec["bet_id"])
        bet = self.bets.get(key)
        if bet is None or bet["state"] != "held":
            return  # redelivery: already re-checked
        self._one_hop(key, bet, _request_from_json(bet["request"]), fx, now_ms, held=True)

    def _one_hop(
        self,
        key: str,
        bet: dict[str, Any],
        request: BetRequest,
        fx: Effects,
        now_ms: int,
        *,
        held: bool,
    ) -> None:
        acct, ccy = request.account_id, request.currency
        partition = self.partition_of(acct)
        # Only a single spends quota, and only on its own market: an accumulator needs none.
        quota_market = request.legs[0].market_id if request.is_single else None
        quotas = (
            Quotas(partition)
            if quota_market is None
            else self._quotas(partition, ccy, quota_market)
        )
        try:
            d = decide(
                self._get_wallet(acct, ccy),  # only the bet's currency funds it
                request,
                self.view,
                quotas,
                self.limits,
                now_ms,
                held=held,
                view_age_ms_max_in_play=self.view_age_ms_max_in_play,
            )
        except DomainError as exc:
            raise InputError(f"bet {request.bet_id!r}: {exc}") from exc
        req = bet["request"]
        if d.outcome is Outcome.REJECTED and not held:
            # Rejected before any reservation: remember only the decision.
            self._decide(req, None, fx, now_ms, d.reason, [])
            DECISION_PATHS.labels("fast").inc()
            return
        self._put_wallet(acct, ccy, d.wallet)
        if d.quotas != quotas and quota_market is not None:
            self._put_quotas(ccy, quota_market, d.quotas)
        for tx in d.transactions:
            fx.emit("ledger", acct, tx_record(tx, acct, now_ms))
        bet["bound_odds"] = [str(o) for o in d.bound_odds]
        bet["return_minor"] = d.potential_return_minor
        if d.outcome is Outcome.HELD:
            assert d.hold_until_ms is not None
            bet["state"] = "held"
            self.bets.put(key, bet)
            fx.emit(
                "bet_delays",
                acct,
                {"bet_id": request.bet_id, "account_id": acct, "hold_until_ms": d.hold_until_ms},
            )
            return
        if d.outcome is Outcome.NEEDS_AUTHORITATIVE:
            assert d.authoritative is not None
            bet["state"] = "checking"
            self.bets.put(key, bet)
            leg = req["legs"][0]
            fx.emit(
                "leg_commands",
                leg["event_id"],
                {
                    "action": "check",
                    "bet_id": request.bet_id,
                    "account_id": acct,
                    "leg_index": 0,
                    "leg_count": 1,
                    "leg": _leg_avro(leg),
                    "stake_minor": request.stake_minor,
                    "currency": ccy,
                    "price_policy": req["price_policy"],
                    "partition": d.authoritative.partition,
                    "bound_odds": d.bound_odds[0].quantize(ODDS_Q),
                    "return_minor": d.potential_return_minor,
                    "requested_at": req["placed_at"],
                },
            )
            DECISION_PATHS.labels("authoritative").inc()
            return
        accepted = d.outcome is Outcome.ACCEPTED
        bet["state"] = "accepted" if accepted else "rejected"
        bet["decision"] = self._decide(req, bet, fx, now_ms, d.reason, list(d.bound_odds))
        self.bets.put(key, bet)
        DECISION_PATHS.labels("fast").inc()
        if accepted:
            self._send_legs(bet, quota_spend=bool(d.spends), fx=fx, now_ms=now_ms)

    def _send_legs(
        self, bet: dict[str, Any], *, quota_spend: bool, fx: Effects, now_ms: int
    ) -> None:
        """Off the decision path: every accepted leg to its event partition (open legs for
        settlement at the bound odds; a single taken on a quota is the spend it learns)."""
        req = bet["request"]
        acct = req["account_id"]
        partition = self.partition_of(acct)
        for i, leg in enumerate(req["legs"]):
            odds = Decimal(bet["bound_odds"][i])
            fx.emit(
                "accepted_legs",
                leg["event_id"],
                {
                    "kind": "leg",
                    "bet_id": req["bet_id"],
                    "account_id": acct,
                    "partition": partition,
                    "leg_index": i,
                    "leg_count": len(req["legs"]),
                    "leg": _leg_avro(leg),
                    "market_id": leg_from_record(leg).market_id,
                    "selection": leg["selection"],
                    "stake_minor": req["stake_minor"],
                    "currency": req["currency"],
                    "bound_odds": odds.quantize(ODDS_Q),
                    "return_minor": bet["return_minor"] if len(req["legs"]) == 1 else 0,
                    "quota_spend": quota_spend,
                    "amount_minor": 0,
                    "accepted_at": now_ms,
                    "placed_at": req["placed_at"],
                },
            )

    def on_leg_verdict(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        """The event partition's exact liability verdict on a single sent the authoritative way."""
        key = bet_key(rec["account_id"], rec["bet_id"])
        bet = self.bets.get(key)
        if bet is None or bet["state"] != "checking":
            return  # late or duplicate verdict: the decision is already made
        req = bet["request"]
        acct, stake, ccy = req["account_id"], req["stake_minor"], req["currency"]
        reason = None if rec["reason"] is None else RejectReason[rec["reason"]]
        w = self._get_wallet(acct, ccy)
        try:
            w = commit(w, stake) if reason is None else release(w, stake)
        except DomainError as exc:
            raise InputError(f"bet {req['bet_id']!r}: {exc}") from exc
        self._put_wallet(acct, ccy, w)
        posting = ledger.accept_stake if reason is None else ledger.release_stake
        fx.emit("ledger", acct, tx_record(posting(req["bet_id"], acct, stake, ccy), acct, now_ms))
        bet["state"] = "accepted" if reason is None else "rejected"
        odds = [Decimal(o) for o in bet["bound_odds"]] if reason is None else []
        bet["decision"] = self._decide(req, bet, fx, now_ms, reason, odds)
        self.bets.put(key, bet)
        if reason is None:
            self._send_legs(bet, quota_spend=False, fx=fx, now_ms=now_ms)
            self._maybe_settle(key, bet, fx, now_ms)

    def on_quota_message(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        """A grant adds to this partition's quota; a recall gives back all of a market's.
        Each applies once: a redelivered message (its seq not above the last applied, see
        ``quota_records``) is dropped and counted."""
        ccy, mid = rec["currency"], rec["market_id"]
        seq_key = account_seq_key(rec["partition"], ccy, mid)
        seqs = self.quotas.get(seq_key) or {"applied": 0, "sent": 0}
        seq = rec.get("seq")
        if not is_fresh(seq, seqs["applied"]):
            STALE_UPDATES.labels("quota_message").inc()
            return
        if seq is not None:
            seqs["applied"] = seq
            self.quotas.put(seq_key, seqs)  # a refused message rolls this back with the rest
        quotas = self._quotas(rec["partition"], ccy, mid)
        try:
            if rec["kind"] == "grant":
                self._put_quotas(
                    ccy,
                    mid,
                    receive_grant(
                        quotas,
                        Grant(
                            rec["market_id"],
                            rec["selection"],
                            rec["partition"],
                            rec["amount_minor"],
                        ),
                    ),
                )
                return
            quotas, returns = on_recall(quotas, Recall(rec["market_id"], rec["partition"]))
        except DomainError as exc:
            raise InputError(f"quota message for {rec['market_id']!r} refused: {exc}") from exc
        self._put_quotas(ccy, mid, quotas)
        first = seqs["sent"] + 1
        if returns:
            seqs["sent"] += len(returns)
            self.quotas.put(seq_key, seqs)
        for return_seq, r in enumerate(returns, start=first):
            fx.emit(
                "accepted_legs",
                rec["event_id"],
                {
                    "kind": "return",
                    "bet_id": "",
                    "account_id": "",
                    "partition": r.partition,
                    "leg_index": 0,
                    "leg_count": 1,
                    "leg": None,
                    "market_id": r.market_id,
                    "selection": r.selection,
                    "stake_minor": 0,
                    "currency": ccy,
                    "bound_odds": None,
                    "return_minor": 0,
                    "quota_spend": False,
                    "amount_minor": r.amount_minor,
                    "accepted_at": now_ms,
                    "placed_at": 0,
                    "seq": return_seq,
                },
            )

    def _decide(
        self,
        req: dict[str, Any],
        bet: dict[str, Any] | None,
        fx: Effects,
        now_ms: int,
        reason: RejectReason | None,
        odds: list[Decimal],
        store: bool = True,
    ) -> dict[str, Any]:
        decision = {
            "bet_id": req["bet_id"],
            "account_id": req["account_id"],
            "accepted": reason is None,
            "reason": None if reason is None else reason.name,
            "bound_odds": [str(o) for o in odds],
            "stake_minor": req["stake_minor"],
            # The domain's exact product and the one rounding rule, as settlement uses.
            "potential_return_minor": potential_return(req["stake_minor"], odds)
            if reason is None
            else 0,
            "currency": req["currency"],
            "requested_at": req["placed_at"],
            "decided_at": now_ms,
        }
        if bet is None and store:
            # Rejected before any reservation: remember the decision for duplicate requests.
            self.bets.put(
                bet_key(req["account_id"], req["bet_id"]),
                {"request": None, "state": "rejected", "decision": decision},
            )
        fx.emit("bet_decisions", req["account_id"], _decision_avro(decision))
        DECISIONS.labels(
            "accepted" if reason is None else "rejected", "" if reason is None else reason.name
        ).inc()
        DECISION_LATENCY_SECONDS.observe(max(0, now_ms - req["placed_at"]) / 1000)
        return decision

    # ------------------------------------------------------------------ settlement

    def on_leg_settlements(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        """A batch of leg outcomes from one result (see ``MarketsHandler.on_result``)."""
        try:
            for leg in rec["legs"]:
                self.on_leg_settlement(leg, rec["revision"], fx, now_ms)
        except DomainError as exc:
            raise InputError(f"settlement of {rec['event_id']!r} refused: {exc}") from exc

    def on_leg_settlement(
        self, rec: dict[str, Any], revision: int, fx: Effects, now_ms: int
    ) -> None:
        key = bet_key(rec["account_id"], rec["bet_id"])
        bet = self.bets.get(key)
        if bet is None or bet.get("request") is None:
            return  # a leg of a bet rejected before reservation, or unknown: nothing to settle
        idx = str(rec["leg_index"])
        prev = bet["legs_settled"].get(idx)
        if prev is not None and prev["revision"] >= revision:
            return  # duplicate
        bet["legs_settled"][idx] = {
            "outcome": rec["outcome"],
            "factor": str(rec["factor"]),
            "revision": revision,
        }
        if bet["state"] != "accepted" or not self._maybe_settle(key, bet, fx, now_ms):
            self.bets.put(key, bet)

    def _maybe_settle(self, key: str, bet: dict[str, Any], fx: Effects, now_ms: int) -> bool:
        """Settle the bet if its last leg is in; True if it did (and stored ``bet``).

        A leg reported ``open`` (a provider rolled its settlement or cancel back) makes a
        settled bet open again: the settlement is reversed (ledger ``reopen``) and a settlement
        record with outcome ``open``, return 0 and the previous return shows it. When every leg
        is settled again, the bet settles again (ledger ``resettle``, under the next revision).
        """
        req = bet["request"]
        n = len(req["legs"])
        legs_in = bet["legs_settled"]
        if len(legs_in) < n:
            return False
        entries = [legs_in[str(i)] for i in range(n)]
        sig = [e["revision"] for e in entries]
        if bet["settle_sig"] == sig:
            return False
        acct, stake, ccy = req["account_id"], req["stake_minor"], req["currency"]
        previous = bet["settled_return"]
        revision = bet["settle_revision"] + 1
        tx: ledger.Transaction | None
        if any(e["outcome"] == REOPENED for e in entries):
            if previous is None:
                return False  # not settled (yet, or already reopened): nothing to reverse
            tx = ledger.reopen(req["bet_id"], acct, stake, previous, revision, ccy)
            outcome, return_minor, delta = REOPENED, 0, resettlement_delta(previous, 0)
        else:
            legs = [LegSettlement(LegOutcome(e["outcome"]), _factor(e["factor"])) for e in entries]
            settled = combine(stake, legs)
            outcome, return_minor = settled.outcome.value, settled.return_minor
            if previous is None and revision == 0:
                tx = ledger.settle_payout(req["bet_id"], acct, stake, return_minor, ccy)
                delta = return_minor
            elif previous is None:  # reopened, now settled again: an open bet's return was 0
                tx = ledger.resettle_reopened(
                    req["bet_id"], acct, stake, return_minor, revision, ccy
                )
                delta = return_minor
            else:
                delta = resettlement_delta(previous, return_minor)
                tx = ledger.resettle(req["bet_id"], acct, delta, revision, ccy)
        self._put_wallet(acct, ccy, credit(self._get_wallet(acct, ccy), delta))
        if tx is not None:
            fx.emit("ledger", acct, tx_record(tx, acct, now_ms))
        bet.update(
            settled_return=None if outcome == REOPENED else return_minor,
            settle_revision=revision,
            settle_sig=sig,
        )
        self.bets.put(key, bet)
        fx.emit(
            "settlements",
            acct,
            {
                "bet_id": req["bet_id"],
                "account_id": acct,
                "outcome": outcome,
                "stake_minor": stake,
                "return_minor": return_minor,
                "previous_return_minor": previous or 0,
                "revision": revision,
                "currency": ccy,
                "settled_at": now_ms,
            },
        )
        _settlements_counter(outcome, revision == 0).inc()
        return True


@lru_cache(maxsize=1024)
def _factor(text: str) -> Decimal:
    # A result settles every leg of a market with one of a handful of factors (the odds, 0,
    # 1, a half): each text is parsed once. Decimals are immutable, so sharing one is safe.
    return Decimal(text)


@cache
def _settlements_counter(outcome: str, first: bool) -> Any:
    # prometheus_client's labels() costs more than a settlement's arithmetic: look up once.
    return SETTLEMENTS.labels(outcome, "settle" if first else "resettle")


def _leg_avro(leg: dict[str, Any]) -> dict[str, Any]:
    return {**leg, "odds": Decimal(leg["odds"]).quantize(ODDS_Q)}


def _request_json(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "bet_id": rec["bet_id"],
        "account_id": rec["account_id"],
        "stake_minor": rec["stake_minor"],
        "currency": rec["currency"],
        "price_policy": rec["price_policy"],
        "placed_at": rec["placed_at"],
        "legs": [leg_json(leg) for leg in rec["legs"]],
    }


def _request_from_json(req: dict[str, Any]) -> BetRequest:
    return BetRequest(
        bet_id=req["bet_id"],
        account_id=req["account_id"],
        stake_minor=req["stake_minor"],
        currency=req["currency"],
        legs=tuple(leg_from_record(leg) for leg in req["legs"]),
        price_policy=PricePolicy(req["price_policy"]),
        placed_at_ms=req["placed_at"],
    )


def _decision_avro(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, "bound_odds": [Decimal(o).quantize(ODDS_Q) for o in d["bound_odds"]]}
