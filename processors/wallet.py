"""Account-side handlers: deposits, the bet acceptance saga's wallet steps, settlement.

Everything about one customer lives on the partition of its ``account_id``: one wallet per
currency (balance and reserved stake; key ``"a1|GBP"``) and every bet it placed (request,
saga progress, decision, leg settlements; key ``"bet:a1|b1"``: a bet id is scoped to its
account, and so is every id derived from it). Balances change only through the domain's
wallet transitions. The saga for a bet request:

1. the wallet checks the bet id (a duplicate returns the original decision), stake limits
   and funds, reserves the stake and sends one ``check`` command per leg to the leg's event
   partition (``leg_commands``);
2. each event partition checks status, price policy, in-play delay and liability, binds
   the price and answers with a ``leg_verdict``;
3. when every leg has answered, the wallet commits the stake (accepted) or releases it
   (rejected, with the lowest-valued reason) and emits exactly one decision; released legs
   are told to drop their liability.

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
from functools import cache
from typing import Any

from oddsflow.domain import ledger
from oddsflow.domain.acceptance import (
    BetRequest,
    Limits,
    PricePolicy,
    RejectReason,
    Wallet,
    check_payout,
    check_request,
    check_wallet,
    commit,
    credit,
    potential_return,
    release,
    reserve,
)
from oddsflow.domain.errors import DomainError
from oddsflow.domain.ledger import ID_SEPARATOR, scoped_id
from oddsflow.domain.settlement import LegSettlement, Outcome, combine, resettlement_delta
from oddsflow.metrics import DECISION_LATENCY_SECONDS, DECISIONS, SETTLEMENTS
from oddsflow.processors.markets import ODDS_Q, InputError, leg_from_record, leg_json
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

    def __init__(self, wallets: Store, bets: Store, limits: Limits) -> None:
        self.wallets = wallets
        self.bets = bets
        self.limits = limits

    def _get_wallet(self, account_id: str, currency: str) -> Wallet:
        return _wallet(self.wallets.get(wallet_key(account_id, currency)))

    def _put_wallet(self, account_id: str, currency: str, w: Wallet) -> None:
        self.wallets.put(wallet_key(account_id, currency), _wallet_record(account_id, currency, w))

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

    # ------------------------------------------------------------------ saga

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
        stake = rec["stake_minor"]
        try:
            legs = tuple(leg_from_record(leg) for leg in rec["legs"])
            if not legs:
                raise InputError("a bet needs at least one leg")
            if len({leg.event_id for leg in legs}) != len(legs):
                raise InputError("an accumulator takes at most one leg per event")
            request = BetRequest(
                bet_id=rec["bet_id"],
                account_id=acct,
                stake_minor=stake,
                currency=rec["currency"],
                legs=legs,
                price_policy=PricePolicy(rec["price_policy"]),
                placed_at_ms=rec["placed_at"],
            )
        except (InputError, ValueError):
            self._decide(rec, None, fx, now_ms, RejectReason.INVALID_REQUEST, [])
            return
        ccy = rec["currency"]
        wallet = self._get_wallet(acct, ccy)  # only the bet's currency funds it
        reason = check_request(request) or check_wallet(wallet, request, self.limits)
        if reason is not None:
            self._decide(rec, None, fx, now_ms, reason, [])
            return
        try:
            reserved = reserve(wallet, stake)
        except DomainError as exc:
            raise InputError(f"bet {rec['bet_id']!r}: {exc}") from exc
        self._put_wallet(acct, ccy, reserved)
        fx.emit(
            "ledger",
            acct,
            tx_record(ledger.reserve_stake(rec["bet_id"], acct, stake, ccy), acct, now_ms),
        )
        bet = {
            "request": _request_json(rec),
            "state": "checking",
            "verdicts": {},
            "decision": None,
            "legs_settled": {},
            "settled_return": None,
            "settle_revision": -1,
            "settle_sig": None,
        }
        self.bets.put(key, bet)
        for i, leg in enumerate(rec["legs"]):
            fx.emit(
                "leg_commands",
                leg["event_id"],
                {
                    "action": "check",
                    "bet_id": rec["bet_id"],
                    "account_id": acct,
                    "leg_index": i,
                    "leg_count": len(rec["legs"]),
                    "leg": leg,
                    "stake_minor": stake,
                    "currency": ccy,
                    "price_policy": rec["price_policy"],
                    "hold_until_ms": None,
                    "requested_at": rec["placed_at"],
                },
            )

    def on_leg_verdict(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        key = bet_key(rec["account_id"], rec["bet_id"])
        bet = self.bets.get(key)
        if bet is None or bet["state"] != "checking":
            return  # late or duplicate verdict: the decision is already made
        idx = str(rec["leg_index"])
        if idx in bet["verdicts"]:
            return
        bet["verdicts"][idx] = {
            "reason": rec["reason"],
            "odds": None if rec["bound_odds"] is None else str(rec["bound_odds"]),
        }
        req = bet["request"]
        if len(bet["verdicts"]) < len(req["legs"]):
            self.bets.put(key, bet)
            return
        reasons = [RejectReason[v["reason"]] for v in bet["verdicts"].values() if v["reason"]]
        odds = [
            Decimal(bet["verdicts"][str(i)]["odds"])
            for i in range(len(req["legs"]))
            if bet["verdicts"][str(i)]["odds"]
        ]
        reason = min(reasons) if reasons else None
        if reason is None:
            request = _request_from_json(req)
            reason = check_payout(request, odds, self.limits)
        acct, stake, ccy = req["account_id"], req["stake_minor"], req["currency"]
        w = self._get_wallet(acct, ccy)
        try:
            w = commit(w, stake) if reason is None else release(w, stake)
        except DomainError as exc:
            raise InputError(f"bet {req['bet_id']!r}: {exc}") from exc
        self._put_wallet(acct, ccy, w)
        if reason is None:
            fx.emit(
                "ledger",
                acct,
                tx_record(ledger.accept_stake(req["bet_id"], acct, stake, ccy), acct, now_ms),
            )
            bet["state"] = "accepted"
        else:
            fx.emit(
                "ledger",
                acct,
                tx_record(ledger.release_stake(req["bet_id"], acct, stake, ccy), acct, now_ms),
            )
            bet["state"] = "rejected"
            for i, v in sorted(bet["verdicts"].items()):
                if v["reason"] is None:  # this leg holds liability on its market: give it back
                    leg = req["legs"][int(i)]
                    fx.emit(
                        "leg_commands",
                        leg["event_id"],
                        {
                            "action": "release",
                            "bet_id": req["bet_id"],
                            "account_id": acct,
                            "leg_index": int(i),
                            "leg_count": len(req["legs"]),
                            "leg": _leg_avro(leg),
                            "stake_minor": stake,
                            "currency": ccy,
                            "price_policy": req["price_policy"],
                            "hold_until_ms": None,
                            "requested_at": req["placed_at"],
                        },
                    )
        bet["decision"] = self._decide(req, bet, fx, now_ms, reason, odds if reason is None else [])
        self.bets.put(key, bet)
        if bet["state"] == "accepted":
            self._maybe_settle(key, bet, fx, now_ms)

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
        sig = [legs_in[str(i)]["revision"] for i in range(n)]
        if bet["settle_sig"] == sig:
            return False
        acct, stake, ccy = req["account_id"], req["stake_minor"], req["currency"]
        previous = bet["settled_return"]
        revision = bet["settle_revision"] + 1
        tx: ledger.Transaction | None
        if any(legs_in[str(i)]["outcome"] == REOPENED for i in range(n)):
            if previous is None:
                return False  # not settled (yet, or already reopened): nothing to reverse
            tx = ledger.reopen(req["bet_id"], acct, stake, previous, revision, ccy)
            outcome, return_minor, delta = REOPENED, 0, resettlement_delta(previous, 0)
        else:
            legs = [
                LegSettlement(
                    Outcome(legs_in[str(i)]["outcome"]), Decimal(legs_in[str(i)]["factor"])
                )
                for i in range(n)
            ]
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
