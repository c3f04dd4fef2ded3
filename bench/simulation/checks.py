"""The invariants, each a function that returns what it found wrong (empty: it holds).

After every step (cheap, incremental where they can be):

- ledger_entries_balance: each new entry's postings sum to zero per currency (so the
  trial balance of every marketplace and currency stays zero).
- account_balance_is_its_postings: every account a step touched holds exactly the sum of
  all its postings (its shards' sum for system accounts).
- no_negative_user_balance: no user account below zero.
- entry_has_one_event: each new journal entry has exactly one event (balance.updated, or
  ledger.entry_posted between system accounts) naming it, and no ledger event names
  anything else.
- reserved_is_open_holds: each user's reserved balance is the sum of their active holds.
- clearing_is_airtm_facts: a marketplace's Airtm clearing account is minus its succeeded
  top-ups plus its completed withdrawals; withdrawal_pending is its in-flight withdrawals.
- provider_at_most_once: at Airtm, one payin per top-up code and one payout per
  withdrawal code, each code ours; on chain, per escrow contract at most one deploy,
  funding, release, dispute and resolution (per milestone for multi-release contracts),
  and at most one contract per order.

At checkpoints and at the end (all of the above, plus):

- verify_ledger: every balance recomputed from postings, the trial balance, the hash chain
  of every marketplace (ledger.integrity.ledger_verify).
- events_per_change: every top-up, withdrawal and order has one event per status it took
  (a chain previous_status -> status ending at its current status, as many as its audit
  rows); disputes, escrows and milestones one event per transition that publishes one;
  holds one `placed` and one resolution; users one `created`; every event of a
  marketplace one outbound delivery; outbound signatures all valid.

After the drain at the end (nothing in flight any more):

- nothing_stuck: no top-up or withdrawal left unfinished, no order in a state only the
  machinery leaves, no chain step pending, no inbound webhook unprocessed, no outbound
  delivery pending or failed, no task queued.
- airtm_reconciles: every payin and payout agrees with its top-up or withdrawal, and the
  Airtm account's balance moved by exactly minus the clearing accounts.
- chain_reconciles: each escrow account of the ledger holds what its contract holds on
  chain, each chain action applied as many times as its step is done, and the
  marketplaces' endpoint received every event.
"""

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum

from bench.simulation.world import ENTERPRISE_FLOAT, World
from escrow.models import ChainStep, Dispute, Escrow, Milestone, Order
from ledger.integrity import exact_total, ledger_verify
from ledger.models import Account, AccountShard, Hold, JournalEntry, Posting
from orchestrator.models import AuditLog, Event, MarketplaceUser
from providers.models import TopUp, Withdrawal
from providers.services.topups import CLEARING
from webhooks.models import InboundWebhook, WebhookDelivery

LEDGER_EVENTS = ("balance.updated", "ledger.entry_posted")
SINGLE_OPS = ("deploy", "fund_escrow", "release_funds", "dispute_escrow", "resolve_dispute")
PER_MILESTONE_OPS = (
    "change_milestone_status",
    "approve_milestone",
    "release_milestone_funds",
    "dispute_milestone",
    "resolve_milestone_dispute",
)
STEP_OPS = {
    ChainStep.Action.FUND: ("fund_escrow",),
    ChainStep.Action.COMPLETE: ("change_milestone_status",),
    ChainStep.Action.APPROVE: ("approve_milestone",),
    ChainStep.Action.RELEASE: ("release_funds", "release_milestone_funds"),
    ChainStep.Action.DISPUTE: ("dispute_escrow", "dispute_milestone"),
    ChainStep.Action.RESOLVE: ("resolve_dispute", "resolve_milestone_dispute"),
}
# Order states that only the machinery (tasks, janitors) moves on. (ESCROW_CREATING also
# rests there once deployed, until the marketplace funds: its pending step is checked.)
ORDER_IN_FLIGHT = (
    Order.Status.ESCROW_FUNDING,
    Order.Status.ESCROW_FUNDED,
    Order.Status.RELEASE_REQUESTED,
    Order.Status.REFUND_REQUESTED,
    Order.Status.RELEASED,
    Order.Status.REFUNDED,
)
# Escrow events and the transition (before, after) each one stands for (None: any before).
ESCROW_EVENT_MOVES: dict[str, tuple[str | None, str]] = {
    "escrow.created": (Escrow.Status.CREATING, Escrow.Status.CREATED),
    "escrow.funded": (Escrow.Status.FUNDING, Escrow.Status.FUNDED),
    "escrow.disputed": (Escrow.Status.FUNDED, Escrow.Status.DISPUTED),
    "escrow.released": (Escrow.Status.RELEASING, Escrow.Status.RELEASED),
    "escrow.refunded": (None, Escrow.Status.REFUNDED),
    "escrow.resolved": (Escrow.Status.DISPUTED, Escrow.Status.RESOLVED),
}
MILESTONE_EVENTS = {
    "escrow.milestone_completed": Milestone.Status.COMPLETED,
    "escrow.milestone_approved": Milestone.Status.APPROVED,
    "escrow.milestone_released": Milestone.Status.RELEASED,
}
Failures = list[str]


def _first(items: Iterable[str], limit: int = 5) -> Failures:
    found = list(items)
    return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit else [])


@dataclass
class Checks:
    world: World
    last_posting: int = 0
    last_entry: int = 0
    last_event: int = 0
    contracts: dict[str, tuple[str, int]] = field(default_factory=dict)  # -> (engagement, parts)
    our_codes: set[str] = field(default_factory=set)  # Airtm codes known to be ours
    counts: Counter[str] = field(default_factory=Counter)

    def _markets(self) -> list[int]:
        return [m.marketplace.pk for m in self.world.markets]

    def run(self, names: Iterable[str]) -> list[tuple[str, Failures]]:
        """Run the named checks; returns the failing ones with what they found."""
        failing = []
        for name in names:
            self.counts[name] += 1
            found = getattr(self, name)()
            if found:
                failing.append((name, found))
        return failing

    # --- after every step ---------------------------------------------------------------------

    STEP = (
        "ledger_entries_balance",
        "account_balance_is_its_postings",
        "no_negative_user_balance",
        "entry_has_one_event",
        "reserved_is_open_holds",
        "clearing_is_airtm_facts",
        "provider_at_most_once",
    )
    FULL = (*STEP, "verify_ledger", "events_per_change")
    FINAL = (*FULL, "nothing_stuck", "airtm_reconciles", "chain_reconciles")

    def ledger_entries_balance(self) -> Failures:
        rows = (
            Posting.objects.filter(pk__gt=self.last_posting)
            .values("entry_id", "currency")
            .annotate(total=Sum("amount"))
            .exclude(total=0)
            .values_list("entry__reference", "currency", "total")
        )
        return _first(
            f"entry {ref}: {cur} postings sum to {total}"
            for ref, cur, total in rows
            if exact_total(total)
        )

    def account_balance_is_its_postings(self) -> Failures:
        new = Posting.objects.filter(pk__gt=self.last_posting)
        touched = set(new.values_list("account_id", flat=True))
        self.last_posting = max([self.last_posting, *new.values_list("pk", flat=True)])
        return _first(self._replay(touched))

    def _replay(self, accounts: set[int] | None) -> Iterable[str]:
        postings = Posting.objects.all()
        rows = Account.objects.all()
        shards = AccountShard.objects.all()
        if accounts is not None:
            postings = postings.filter(account_id__in=accounts)
            rows = rows.filter(pk__in=accounts)
            shards = shards.filter(account_id__in=accounts)
        replay = dict(
            postings.values("account_id").annotate(t=Sum("amount")).values_list("account_id", "t")
        )
        shard = dict(
            shards.values("account_id").annotate(t=Sum("balance")).values_list("account_id", "t")
        )
        for pk, code, kind, bounded_balance, unbounded in rows.values_list(
            "pk", "code", "kind", "balance", "allow_negative"
        ):
            stored = exact_total(shard.get(pk, Decimal(0)) if unbounded else bounded_balance)
            expected = exact_total(replay.get(pk, Decimal(0)))
            if stored != expected:
                yield f"account {code or kind} #{pk}: stored {stored} != postings {expected}"

    def no_negative_user_balance(self) -> Failures:
        rows = Account.objects.filter(allow_negative=False, balance__lt=0)
        return _first(f"{a.kind} of user {a.user_public_id}: {a.balance}" for a in rows)

    def entry_has_one_event(self) -> Failures:
        entries = dict(
            JournalEntry.objects.filter(pk__gt=self.last_entry).values_list("public_id", "pk")
        )
        events = Event.objects.filter(pk__gt=self.last_event, aggregate_type="ledger_entry")
        named = Counter(events.values_list("aggregate_id", flat=True))
        wrong_type = events.exclude(type__in=LEDGER_EVENTS).count()
        found = [f"entry {e}: {named[e]} events" for e in entries if named[e] != 1]
        found += [f"event names entry {a} of no new entry" for a in named if a not in entries]
        if wrong_type:
            found.append(f"{wrong_type} ledger events of an unexpected type")
        self.last_entry = max([self.last_entry, *entries.values()])
        newest = Event.objects.order_by("-pk").values_list("pk", flat=True).first()
        self.last_event = max(self.last_event, newest or 0)
        return _first(found)

    def reserved_is_open_holds(self) -> Failures:
        active = Hold.objects.filter(status=Hold.Status.ACTIVE).values("user_id", "currency")
        holds = {
            (user, cur): exact_total(total)
            for user, cur, total in active.annotate(t=Sum("amount")).values_list(
                "user_id", "currency", "t"
            )
        }
        accounts = Account.objects.filter(kind=Account.Kind.RESERVED).exclude(balance=0)
        reserved = {
            (user, cur): balance
            for user, cur, balance in accounts.values_list("user_id", "currency", "balance")
        }
        keys = sorted(set(holds) | set(reserved), key=str)
        return _first(
            f"user #{k[0]} {k[1]}: reserved {reserved.get(k, 0)} != active holds {holds.get(k, 0)}"
            for k in keys
            if reserved.get(k, Decimal(0)) != holds.get(k, Decimal(0))
        )

    def clearing_is_airtm_facts(self) -> Failures:
        found = []
        for mkt in self._markets():
            topped = TopUp.objects.filter(marketplace_id=mkt, status=TopUp.Status.SUCCEEDED)
            paid = Withdrawal.objects.filter(marketplace_id=mkt, status=Withdrawal.Status.COMPLETED)
            flying = Withdrawal.objects.filter(marketplace_id=mkt, status__in=Withdrawal.IN_FLIGHT)
            expected = _sum(paid, "amount") - _sum(topped, "amount")
            clearing = _sum(
                AccountShard.objects.filter(
                    account__marketplace_id=mkt, account__code=CLEARING, account__currency="USD"
                ),
                "balance",
            )
            if clearing != expected:
                found.append(f"marketplace #{mkt}: clearing {clearing} != facts {expected}")
            pending = _sum(
                Account.objects.filter(
                    marketplace_id=mkt, kind=Account.Kind.WITHDRAWAL_PENDING, currency="USD"
                ),
                "balance",
            )
            if pending != _sum(flying, "amount"):
                found.append(
                    f"marketplace #{mkt}: withdrawal_pending {pending} != in-flight "
                    f"withdrawals {_sum(flying, 'amount')}"
                )
        return found

    def provider_at_most_once(self) -> Failures:
        stats = self.world.airtm.stats()
        found = [
            f"Airtm {kind} {code}: {n}"
            for kind in ("payoutsCreatedPerCode", "payinsCreatedPerCode")
            for code, n in stats[kind].items()
            if n > 1
        ]
        codes = set(stats["payoutsCreatedPerCode"]) | set(stats["payinsCreatedPerCode"])
        new = codes - self.our_codes
        ours = set(Withdrawal.objects.filter(public_id__in=new).values_list("public_id", flat=True))
        ours |= set(TopUp.objects.filter(public_id__in=new).values_list("public_id", flat=True))
        self.our_codes |= ours
        found += [f"Airtm object with code {c} that is none of ours" for c in sorted(new - ours)]
        deploys: Counter[str] = Counter()
        for contract, ops in self.world.tw.stats()["applied"].items():
            engagement, parts = self._contract(contract)
            deploys[engagement] += ops.get("deploy", 0)
            found += [
                f"{op} {n}x on {engagement}" for op in SINGLE_OPS if (n := ops.get(op, 0)) > 1
            ]
            found += [
                f"{op} {n}x on {engagement} ({parts} milestones)"
                for op in PER_MILESTONE_OPS
                if (n := ops.get(op, 0)) > parts
            ]
        found += [f"{n} contracts deployed for {e}" for e, n in deploys.items() if n > 1]
        return _first(found)

    def _contract(self, contract_id: str) -> tuple[str, int]:
        if contract_id not in self.contracts:
            state = self.world.tw.escrow_state(contract_id) or {}
            parts = len(state.get("milestones", []))
            self.contracts[contract_id] = (str(state.get("engagementId", "?")), parts)
        return self.contracts[contract_id]

    # --- at checkpoints -----------------------------------------------------------------------

    def verify_ledger(self) -> Failures:
        report = ledger_verify()
        return _first([*report.problems, *self._replay(None)])

    def events_per_change(self) -> Failures:
        found: Failures = []
        found += self._ledger_events()
        found += self._status_chains("topup", TopUp)
        found += self._status_chains("withdrawal", Withdrawal)
        found += self._status_chains("order", Order)
        found += self._hold_events()
        found += self._escrow_events()
        found += self._milestone_events()
        found += self._dispute_events()
        found += self._user_events()
        found += self._deliveries()
        if self.world.receiver.bad_signatures:
            found.append(f"{self.world.receiver.bad_signatures} badly signed outbound webhooks")
        return _first(found, 8)

    def _events(self, aggregate_type: str) -> dict[str, list[Event]]:
        grouped: dict[str, list[Event]] = defaultdict(list)
        rows = Event.objects.filter(aggregate_type=aggregate_type).order_by("pk")
        for event in rows.only("aggregate_id", "type", "payload"):
            grouped[event.aggregate_id].append(event)
        return grouped

    def _ledger_events(self) -> Failures:
        named = Counter(
            Event.objects.filter(aggregate_type="ledger_entry").values_list(
                "aggregate_id", flat=True
            )
        )
        entries = set(JournalEntry.objects.values_list("public_id", flat=True))
        found = [f"entry {e}: {named[e]} events" for e in entries if named[e] != 1]
        return found + [f"ledger event for no entry {a}" for a in named if a not in entries]

    def _status_chains(self, kind: str, model: Any) -> Failures:
        events = self._events(kind)
        audits = Counter(
            AuditLog.objects.filter(
                object_type=kind, action__in=[f"{kind}.created", f"{kind}.status_changed"]
            ).values_list("object_id", flat=True)
        )
        found = []
        current = dict(model.objects.values_list("public_id", "status"))
        for public_id, status in current.items():
            chain = [
                (e.payload.get("previous_status"), e.payload.get("status"))
                for e in events[public_id]
            ]
            ok = bool(chain) and chain[0][0] == "" and chain[-1][1] == status
            ok = ok and all(chain[i][0] == chain[i - 1][1] for i in range(1, len(chain)))
            if not ok or len(chain) != audits[public_id]:
                found.append(
                    f"{kind} {public_id} ({status}): events {chain}, {audits[public_id]} audit rows"
                )
        found += [f"{kind} event for unknown {a}" for a in events if a not in current]
        return found

    def _hold_events(self) -> Failures:
        events = self._events("hold")
        resolution: dict[str, str] = {
            Hold.Status.CAPTURED: "hold.captured",
            Hold.Status.VOIDED: "hold.voided",
            Hold.Status.EXPIRED: "hold.expired",
        }
        found = []
        for public_id, status in Hold.objects.values_list("public_id", "status"):
            types = [e.type for e in events.get(public_id, [])]
            expected = ["hold.placed"] + ([resolution[status]] if status in resolution else [])
            if types != expected:
                found.append(f"hold {public_id} ({status}): events {types}")
        return found

    def _moves(self, object_type: str) -> dict[str, Counter[tuple[str, str]]]:
        moves: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
        rows = AuditLog.objects.filter(object_type=object_type, action__endswith="status_changed")
        for object_id, before, after in rows.values_list("object_id", "before", "after"):
            moves[object_id][
                ((before or {}).get("status", ""), (after or {}).get("status", ""))
            ] += 1
        return moves

    def _escrow_events(self) -> Failures:
        events = self._events("escrow")
        moves = self._moves("escrow")
        step_failures = Counter(
            AuditLog.objects.filter(action="escrow.step_failed").values_list("object_id", flat=True)
        )
        found = []
        for public_id in Escrow.objects.values_list("public_id", flat=True):
            types = Counter(e.type for e in events.get(public_id, []))
            for event_type, (before, after) in ESCROW_EVENT_MOVES.items():
                made = sum(
                    n
                    for (b, a), n in moves[public_id].items()
                    if a == after and before in (None, b)
                )
                if types[event_type] != made:
                    found.append(
                        f"escrow {public_id}: {types[event_type]} {event_type}, "
                        f"{made} moves to {after}"
                    )
            if types["escrow.step_failed"] != step_failures[public_id]:
                found.append(
                    f"escrow {public_id}: {types['escrow.step_failed']} escrow.step_failed, "
                    f"{step_failures[public_id]} failed steps"
                )
        return found

    def _milestone_events(self) -> Failures:
        moves = self._moves("milestone")
        by_ref: Counter[tuple[str, str, str]] = Counter()
        for events in self._events("escrow").values():
            for e in events:
                if e.type in MILESTONE_EVENTS:
                    by_ref[(e.payload["order_id"], e.payload["milestone_ref"], e.type)] += 1
        found = []
        for public_id, ref, order_id in Milestone.objects.values_list(
            "public_id", "ref", "order__public_id"
        ):
            reached = Counter(after for (_, after), n in moves[public_id].items() for _ in range(n))
            for event_type, status in MILESTONE_EVENTS.items():
                if by_ref[(order_id, ref, event_type)] != reached[status]:
                    found.append(
                        f"milestone {ref} of {order_id}: {by_ref[(order_id, ref, event_type)]} "
                        f"{event_type}, reached {status} {reached[status]}x"
                    )
        return found

    def _dispute_events(self) -> Failures:
        events = self._events("dispute")
        found = []
        for public_id, status, decision in Dispute.objects.values_list(
            "public_id", "status", "decision"
        ):
            types = [e.type for e in events.get(public_id, [])]
            expected = ["dispute.opened"]
            if status != Dispute.Status.OPEN:
                expected.append("dispute.under_review")
            if decision:
                expected.append("dispute.decided")
            if status == Dispute.Status.RESOLVED:
                expected.append("dispute.resolved")
            if types != expected:
                found.append(f"dispute {public_id} ({status} {decision}): events {types}")
        return found

    def _user_events(self) -> Failures:
        created = Counter(
            Event.objects.filter(type="user.created").values_list("aggregate_id", flat=True)
        )
        return [
            f"user {u}: {created[u]} user.created events"
            for u in MarketplaceUser.objects.values_list("public_id", flat=True)
            if created[u] != 1
        ]

    def _deliveries(self) -> Failures:
        per_event = dict(
            WebhookDelivery.objects.filter(endpoint__marketplace_id__in=self._markets())
            .values("event_id")
            .annotate(n=Count("pk"))
            .values_list("event_id", "n")
        )
        events = Event.objects.filter(marketplace_id__in=self._markets())
        return [
            f"event {public_id} ({kind}): {per_event.get(pk, 0)} deliveries"
            for pk, public_id, kind in events.values_list("pk", "public_id", "type")
            if per_event.get(pk, 0) != 1
        ]

    # --- after the drain ----------------------------------------------------------------------

    def nothing_stuck(self) -> Failures:
        found = [
            f"top-up {t.public_id} {t.status}"
            for t in TopUp.objects.exclude(status__in=TopUp.FINAL)
        ]
        found += [
            f"withdrawal {w.public_id} {w.status}"
            for w in Withdrawal.objects.exclude(status__in=Withdrawal.FINAL)
        ]
        found += [
            f"order {o.public_id} {o.status}"
            for o in Order.objects.filter(
                Q(status__in=ORDER_IN_FLIGHT)
                | Q(status=Order.Status.DISPUTED, disputes__decision__gt="")
            ).distinct()
        ]
        found += [
            f"chain step {s.key} of {s.escrow.order.public_id}: {s.last_error}"
            for s in ChainStep.objects.filter(status=ChainStep.Status.PENDING).select_related(
                "escrow__order"
            )
        ]
        found += [
            f"inbound webhook {w.event_type} {w.status}"
            for w in InboundWebhook.objects.filter(
                status__in=[InboundWebhook.Status.RECEIVED, InboundWebhook.Status.FAILED]
            )
        ]
        found += [
            f"delivery {d.public_id} {d.event_type} {d.status} ({d.last_error})"
            for d in WebhookDelivery.objects.exclude(status=WebhookDelivery.Status.SUCCEEDED)
        ]
        found += [f"task {job.name} still queued" for job in self.world.celery.queue]
        return _first(found, 10)

    def airtm_reconciles(self) -> Failures:
        airtm = self.world.airtm
        found = _disagreements(
            "withdrawal",
            Withdrawal.objects.all(),
            lambda code: airtm.payout(code=code),
            {
                Withdrawal.Status.COMPLETED: {"COMPLETED"},
                Withdrawal.Status.FAILED: {"FAILED", None},
                Withdrawal.Status.CANCELED: {"CANCELED", None},
            },
        )
        found += _disagreements(
            "top-up",
            TopUp.objects.all(),
            lambda code: airtm.payin(code=code),
            {
                TopUp.Status.SUCCEEDED: {"CONFIRMED"},
                TopUp.Status.FAILED: {"FAILED", None},
                TopUp.Status.CANCELED: {"CANCELED", None},
            },
        )
        clearing = _sum(
            AccountShard.objects.filter(
                account__code=CLEARING, account__marketplace_id__in=self._markets()
            ),
            "balance",
        )
        moved = Decimal(airtm.stats()["enterprise"]["available"]) - ENTERPRISE_FLOAT
        if moved != -clearing:
            found.append(f"Airtm balance moved {moved}, the clearing accounts {clearing}")
        return _first(found)

    def chain_reconciles(self) -> Failures:
        tw = self.world.tw
        applied = tw.stats()["applied"]
        found = []
        for escrow in Escrow.objects.exclude(contract_id="").select_related("order"):
            order_id = escrow.order.public_id
            account = Account.objects.filter(
                marketplace_id=escrow.marketplace_id, code=f"escrow:{order_id}", currency="USDC"
            ).first()
            held = Decimal(0)
            if account is not None:
                held = _sum(AccountShard.objects.filter(account=account), "balance")
            on_chain = Decimal(tw.stroops(escrow.contract_id)).scaleb(-7)
            if held != on_chain:
                found.append(f"escrow of {order_id}: ledger {held}, chain {on_chain}")
            ops = applied.get(escrow.contract_id, {})
            done = Counter(
                ChainStep.objects.filter(escrow=escrow, status=ChainStep.Status.DONE).values_list(
                    "action", flat=True
                )
            )
            for action, names in STEP_OPS.items():
                landed = sum(ops.get(name, 0) for name in names)
                if landed != done[action]:
                    found.append(f"{action} of {order_id}: {landed} on chain, {done[action]} done")
        for market in self.world.markets:
            events = set(
                Event.objects.filter(marketplace=market.marketplace).values_list(
                    "public_id", flat=True
                )
            )
            missing = events - self.world.receiver.received.get(market.endpoint_path, set())
            found += [
                f"marketplace {market.index}: event {e} never received" for e in sorted(missing)
            ]
        return _first(found)


def _disagreements(
    kind: str,
    rows: Iterable[TopUp | Withdrawal],
    read: Callable[[str], dict[str, Any] | None],
    agrees: dict[str, set[str | None]],
) -> Failures:
    """Ours against Airtm's (found by our id, its `code`): final statuses must agree."""
    found = []
    for row in rows:
        theirs = read(row.public_id)
        status = theirs["status"] if theirs else None
        if status not in agrees.get(row.status, set()):
            found.append(f"{kind} {row.public_id} {row.status}, at Airtm {status}")
    return found


def _sum(queryset: Any, field_name: str) -> Decimal:
    return exact_total(queryset.aggregate(t=Sum(field_name))["t"] or Decimal(0))
