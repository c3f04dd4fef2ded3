"""What the marketplaces, their users and support staff do: one random operation per step.

Every operation goes through the public REST API with the marketplace's API key and an
Idempotency-Key (the payer's checkout page and the Airtm user's identity check go to the
Airtm simulator, as a browser or a person would). Targets are picked among the objects in
a suitable state most of the time, and among any object sometimes, so that refusals
(409 INVALID_STATE, 422 INSUFFICIENT_FUNDS) are exercised too.

`retry` sends a recent request again with the same key and body: the answer must be the
first one, byte for byte, marked `Idempotency-Replayed`, with no side effect; a request
whose process died mid-way must find its key still in progress. `reuse_key` sends
another body with a used key: 409 IDEMPOTENCY_KEY_REUSED.

Each operation returns one line for the step log. The log names objects by aliases
given in creation order (u3, t7, w2, o5, d1), never by their random public ids, so that
two runs of a seed write the same log.
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from django.db.models import QuerySet

from bench.simulation.net import SANDBOX_URL
from bench.simulation.world import PAYER, POOR_PAYER, Answer, Market, World
from escrow.models import Dispute, Milestone, Order
from ledger.models import Account, JournalEntry
from orchestrator.models import Event, MarketplaceUser
from providers.models import AirtmLink, TopUp, Withdrawal

CENT = Decimal("0.01")
MAX_USERS_PER_MARKET = 12
REPLAY_WINDOW_SECONDS = 6 * 3600  # retries well inside the 24 h the keys are kept


class InvariantError(AssertionError):
    """A check failed while an operation ran (e.g. an idempotent replay that differed)."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


@dataclass
class Sent:
    market: Market
    method: str
    path: str
    body: Any
    key: str
    answer: Answer
    at: float
    label: str


def _usd(cents: int) -> str:
    return str((Decimal(cents) * CENT).quantize(CENT))


class Operations:
    def __init__(self, world: World) -> None:
        self.world = world
        self.rng = world.rng
        self.aliases: dict[str, str] = {}
        self.counters: dict[str, int] = {}
        self.recent: deque[Sent] = deque(maxlen=40)
        self.emails: dict[str, str] = {}  # user public id -> Airtm email
        self.table: dict[str, tuple[int, Callable[[], str | None]]] = {
            "user_create": (4, self.user_create),
            "airtm_link": (3, self.airtm_link),
            "topup_create": (9, self.topup_create),
            "topup_pay": (8, self.topup_pay),
            "topup_refresh": (2, self.topup_refresh),
            "topup_cancel": (2, self.topup_cancel),
            "withdrawal_create": (6, self.withdrawal_create),
            "withdrawal_commit": (3, self.withdrawal_commit),
            "withdrawal_cancel": (2, self.withdrawal_cancel),
            "withdrawal_refresh": (2, self.withdrawal_refresh),
            "payout_outcome": (2, self.payout_outcome),
            "airtm_user_action": (2, self.airtm_user_action),
            "order_create": (8, self.order_create),
            "order_reserve": (7, self.order_reserve),
            "order_cancel": (2, self.order_cancel),
            "escrow_deploy": (2, self.escrow_deploy),
            "escrow_fund": (6, self.escrow_fund),
            "milestone_complete": (6, self.milestone_complete),
            "milestone_approve": (6, self.milestone_approve),
            "release": (6, self.release),
            "refund": (2, self.refund),
            "dispute_open": (2, self.dispute_open),
            "dispute_assign": (2, self.dispute_assign),
            "dispute_resolve": (2, self.dispute_resolve),
            "balance_read": (2, self.balance_read),
            "retry": (6, self.retry),
            "reuse_key": (1, self.reuse_key),
        }

    # --- choosing -----------------------------------------------------------------------------

    def pick_operation(self) -> str:
        names = list(self.table)
        return self.rng.choices(names, weights=[self.table[n][0] for n in names])[0]

    def alias(self, public_id: str, prefix: str) -> str:
        if public_id not in self.aliases:
            self.counters[prefix] = self.counters.get(prefix, 0) + 1
            self.aliases[public_id] = f"{prefix}{self.counters[prefix]}"
        return self.aliases[public_id]

    def _ours(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(marketplace__in=[m.marketplace for m in self.world.markets])

    def _pick(self, queryset: QuerySet[Any], *, anything: QuerySet[Any] | None = None) -> Any:
        """An object of `queryset` (in a suitable state), or now and then of `anything`."""
        if anything is not None and self.rng.random() < 0.15:
            queryset = anything
        rows = list(self._ours(queryset).order_by("-pk")[:60])
        return self.rng.choice(rows) if rows else None

    def _in_state(self, model: Any, *statuses: str) -> Any:
        """One of our `model` objects in one of `statuses` (now and then in any)."""
        return self._pick(model.objects.filter(status__in=statuses), anything=model.objects.all())

    def _market(self, obj: Any) -> Market:
        return next(m for m in self.world.markets if m.marketplace.pk == obj.marketplace_id)

    # --- sending ------------------------------------------------------------------------------

    def _post(self, market: Market, path: str, body: Any, label: str) -> Answer:
        key = self.world.idempotency_key()
        answer = self.world.call(market, "POST", path, body, idempotency_key=key)
        self.recent.append(Sent(market, "POST", path, body, key, answer, self.world.now(), label))
        return answer

    @staticmethod
    def _said(answer: Answer) -> str:
        if answer.status is None:
            return "died"
        return f"{answer.status}{' ' + answer.code if answer.code else ''}"

    def _line(self, label: str, answer: Answer, extra: str = "") -> str:
        data = answer.json()
        status = data.get("status") if isinstance(data, dict) else None
        shown = (
            f" {status}"
            if isinstance(status, str) and answer.status and answer.status < 300
            else ""
        )
        return f"{label} -> {self._said(answer)}{shown}{extra}"

    # --- users --------------------------------------------------------------------------------

    def user_create(self) -> str | None:
        market = self.rng.choice(self.world.markets)
        count = MarketplaceUser.objects.filter(marketplace=market.marketplace).count()
        if count >= MAX_USERS_PER_MARKET:
            return None
        n = count + 1
        body = {"external_user_id": f"ext-{market.index}-{n}", "type": "BOTH"}
        answer = self._post(market, "/users", body, f"user_create m{market.index}")
        data = answer.json()
        if answer.status in (200, 201) and isinstance(data, dict):
            user_id = str(data["id"])
            alias = self.alias(user_id, "u")
            email = f"{alias}-m{market.index}@sim.test"
            self.emails[user_id] = email
            verified = self.rng.random() >= 0.15
            self.world.airtm.seed_user(email=email, verified=verified)
            return self._line(f"user_create {alias}", answer, "" if verified else " unverified")
        return self._line(f"user_create m{market.index}", answer)

    def _user(self, *, linked: bool | None = None) -> MarketplaceUser | None:
        users = MarketplaceUser.objects.all()
        if linked is True:
            users = users.filter(pk__in=AirtmLink.objects.values("user_id"))
        elif linked is False:
            users = users.exclude(pk__in=AirtmLink.objects.values("user_id"))
        user: MarketplaceUser | None = self._pick(users)
        return user

    def airtm_link(self) -> str | None:
        user = self._user(linked=False) or self._user()
        if user is None or user.public_id not in self.emails:
            return None
        body = {"email": self.emails[user.public_id]}
        label = f"airtm_link {self.alias(user.public_id, 'u')}"
        answer = self._post(self._market(user), f"/users/{user.public_id}/airtm/link", body, label)
        return self._line(label, answer)

    def balance_read(self) -> str | None:
        user = self._user()
        if user is None:
            return None
        market = self._market(user)
        answer = self.world.call(market, "GET", f"/users/{user.public_id}/balance")
        data = answer.json()
        if answer.status == 200 and isinstance(data, dict):
            stored = {
                (a.currency, a.kind): a.balance
                for a in Account.objects.filter(user=user).only("currency", "kind", "balance")
            }
            for row in data["balances"]:
                for kind in ("available", "reserved", "withdrawal_pending"):
                    shown = Decimal(row[kind])
                    if shown < 0 or shown != stored.get((row["currency"], kind), Decimal(0)):
                        raise InvariantError(
                            "balance_api_matches_ledger",
                            f"{self.alias(user.public_id, 'u')} {row['currency']} {kind}: API says "
                            f"{shown}, the ledger {stored.get((row['currency'], kind))}",
                        )
        return self._line(f"balance_read {self.alias(user.public_id, 'u')}", answer)

    # --- top-ups ------------------------------------------------------------------------------

    def topup_create(self) -> str | None:
        user = self._user()
        if user is None:
            return None
        amount = _usd(
            self.rng.choice([self.rng.randint(500, 50_000), self.rng.randint(1, 300_000)])
        )
        body = {"user_id": user.public_id, "amount": amount, "currency": "USD"}
        answer = self._post(self._market(user), "/topups", body, "topup_create")
        data = answer.json()
        name = self.alias(str(data["id"]), "t") if answer.status in (201, 202) else "-"
        return self._line(f"topup_create {name} {self.alias(user.public_id, 'u')} {amount}", answer)

    def topup_pay(self) -> str | None:
        waiting = TopUp.objects.filter(status=TopUp.Status.AWAITING_USER_CONFIRMATION)
        topup: TopUp | None = self._pick(waiting.exclude(airtm_payin_id=""))
        return None if topup is None else self.pay(topup)

    def pay(self, topup: TopUp) -> str:
        """The payer confirms on Airtm's checkout page, and maybe comes back to us."""
        payer = POOR_PAYER if self.rng.random() < 0.08 else PAYER
        paid = requests.post(
            f"{SANDBOX_URL}/airtm/payin/{topup.airtm_payin_id}/confirm",
            data={"email": payer},
            allow_redirects=False,
            timeout=10,
        )
        line = f"topup_pay {self.alias(topup.public_id, 't')} {payer.split('@')[0]} -> {paid.status_code}"
        location = paid.headers.get("Location", "")
        if (
            paid.status_code == 302
            and location.startswith("http://orchestrator.sim/")
            and (self.rng.random() < 0.5)
        ):
            back = self.world.request("GET", location.removeprefix("http://orchestrator.sim"))
            line += f" callback {self._said(back)}"
        return line

    def topup_refresh(self) -> str | None:
        topup = self._in_state(TopUp, *TopUp.WAITING, TopUp.Status.PROCESSING)
        return None if topup is None else self.post_action(topup, "refresh")

    def topup_cancel(self) -> str | None:
        topup = self._in_state(TopUp, *TopUp.WAITING)
        return None if topup is None else self.post_action(topup, "cancel")

    # --- withdrawals --------------------------------------------------------------------------

    def withdrawal_create(self) -> str | None:
        user = self._user(linked=True)
        if user is None:
            return None
        cents = self._affordable(user, 100_000)
        commit = self.rng.random() < 0.6
        body = {"user_id": user.public_id, "amount": _usd(cents), "commit": commit}
        answer = self._post(self._market(user), "/withdrawals", body, "withdrawal_create")
        data = answer.json()
        name = self.alias(str(data["id"]), "w") if answer.status in (201, 202) else "-"
        flag = " commit" if commit else ""
        return self._line(
            f"withdrawal_create {name} {self.alias(user.public_id, 'u')} {_usd(cents)}{flag}",
            answer,
        )

    def _withdrawal_post(self, op: str, withdrawal: Withdrawal | None) -> str | None:
        return None if withdrawal is None else self.post_action(withdrawal, op)

    def post_action(self, obj: TopUp | Withdrawal, action: str) -> str:
        """POST /topups/{id}/<action> or /withdrawals/{id}/<action>."""
        kind, prefix = ("topup", "t") if isinstance(obj, TopUp) else ("withdrawal", "w")
        label = f"{kind}_{action} {self.alias(obj.public_id, prefix)}"
        path = f"/{kind}s/{obj.public_id}/{action}"
        return self._line(label, self._post(self._market(obj), path, None, label))

    def withdrawal_commit(self) -> str | None:
        return self._withdrawal_post(
            "commit", self._in_state(Withdrawal, Withdrawal.Status.CREATED)
        )

    def withdrawal_cancel(self) -> str | None:
        cancelable = (Withdrawal.Status.CREATED, Withdrawal.Status.PENDING_USER_ACTION)
        return self._withdrawal_post("cancel", self._in_state(Withdrawal, *cancelable))

    def withdrawal_refresh(self) -> str | None:
        return self._withdrawal_post("refresh", self._in_state(Withdrawal, *Withdrawal.IN_FLIGHT))

    def payout_outcome(self) -> str | None:
        link: AirtmLink | None = self._pick(AirtmLink.objects.all())
        if link is None:
            return None
        status = self.rng.choice(["FAILED", "PENDING"])
        self.world.airtm.force_payout_outcome(email=link.email, status=status)  # type: ignore[arg-type]
        return f"payout_outcome {self.alias(link.user.public_id, 'u')} next {status}"

    def airtm_user_action(self) -> str | None:
        withdrawal: Withdrawal | None = self._pick(
            Withdrawal.objects.filter(status=Withdrawal.Status.PENDING_USER_ACTION)
        )
        if withdrawal is None:
            return None
        done = self.world.airtm.complete_user_action(email=withdrawal.destination_email)
        return (
            f"airtm_user_action {self.alias(withdrawal.user.public_id, 'u')} completed {len(done)}"
        )

    # --- orders -------------------------------------------------------------------------------

    def order_create(self) -> str | None:
        market = self.rng.choice(self.world.markets)
        users = list(MarketplaceUser.objects.filter(marketplace=market.marketplace).order_by("pk"))
        if len(users) < 2:
            return None
        buyer, seller = self.rng.sample(users, 2)
        cents = self._affordable(buyer, 80_000)
        body: dict[str, Any] = {
            "buyer_id": buyer.public_id,
            "seller_id": seller.public_id,
            "amount": _usd(cents),
            "title": "Simulated work",
        }
        parts = self.rng.choice([1, 1, 1, 2, 3]) if cents >= 300 else 1
        if parts > 1:
            cuts = sorted(self.rng.sample(range(1, cents), parts - 1))
            sizes = [b - a for a, b in zip([0, *cuts], [*cuts, cents], strict=True)]
            body["milestones"] = [
                {"milestone_ref": f"m{i}", "title": f"Part {i}", "amount": _usd(size)}
                for i, size in enumerate(sizes, start=1)
            ]
        answer = self._post(market, "/orders", body, "order_create")
        data = answer.json()
        name = self.alias(str(data["id"]), "o") if answer.status == 201 else "-"
        who = f"{self.alias(buyer.public_id, 'u')}>{self.alias(seller.public_id, 'u')}"
        return self._line(f"order_create {name} {who} {_usd(cents)} x{parts}", answer)

    def _affordable(self, user: MarketplaceUser, most: int) -> int:
        """Cents the user can pay from available most of the time; any amount sometimes."""
        available = (
            Account.objects.filter(user=user, kind=Account.Kind.AVAILABLE, currency="USD")
            .values_list("balance", flat=True)
            .first()
        ) or Decimal(0)
        cents = min(int(available * 100), most)
        if cents < 100 or self.rng.random() < 0.15:
            return self.rng.randint(100, most)
        return self.rng.randint(100, cents)

    def _order_post(
        self, op: str, order: Order | None, suffix: str, body: Any = None
    ) -> str | None:
        if order is None:
            return None
        label = f"{op} {self.alias(order.public_id, 'o')}"
        answer = self._post(self._market(order), f"/orders/{order.public_id}{suffix}", body, label)
        return self._line(label, answer)

    def order_reserve(self) -> str | None:
        return self._order_post(
            "order_reserve", self._in_state(Order, Order.Status.CREATED), "/reserve"
        )

    def order_cancel(self) -> str | None:
        order = self._in_state(Order, *Order.CANCELABLE)
        return self._order_post("order_cancel", order, "/cancel", {"reason": "changed my mind"})

    def escrow_deploy(self) -> str | None:
        return self._order_post(
            "escrow_deploy", self._in_state(Order, Order.Status.FUNDS_RESERVED), "/escrow"
        )

    def escrow_fund(self) -> str | None:
        order = self._in_state(Order, Order.Status.FUNDS_RESERVED, Order.Status.ESCROW_CREATING)
        return self._order_post("escrow_fund", order, "/escrow/fund")

    def _milestone(self, *statuses: str) -> Milestone | None:
        milestones = Milestone.objects.filter(order__status=Order.Status.IN_PROGRESS)
        found: Milestone | None = self._pick_milestone(
            milestones.filter(status__in=statuses), Milestone.objects.all()
        )
        return found

    def _pick_milestone(self, suitable: QuerySet[Milestone], anything: QuerySet[Milestone]) -> Any:
        markets = [m.marketplace for m in self.world.markets]
        queryset = anything if self.rng.random() < 0.15 else suitable
        rows = list(queryset.filter(order__marketplace__in=markets).order_by("-pk")[:60])
        return self.rng.choice(rows) if rows else None

    def milestone_complete(self) -> str | None:
        milestone = self._milestone(Milestone.Status.PENDING)
        if milestone is None:
            return None
        body = {"evidence": f"https://proof.sim/{milestone.ref}"}
        return self._order_post(
            f"milestone_complete {milestone.ref}",
            milestone.order,
            f"/milestones/{milestone.ref}/complete",
            body,
        )

    def milestone_approve(self) -> str | None:
        milestone = self._milestone(Milestone.Status.COMPLETED)
        if milestone is None:
            return None
        return self._order_post(
            f"milestone_approve {milestone.ref}",
            milestone.order,
            f"/milestones/{milestone.ref}/approve",
        )

    def release(self) -> str | None:
        working = Order.objects.filter(
            status__in=(Order.Status.IN_PROGRESS, Order.Status.RELEASE_REQUESTED)
        )
        approved = working.filter(milestones__status=Milestone.Status.APPROVED).distinct()
        order: Order | None = self._pick(approved, anything=working)
        if order is None:
            return None
        body: dict[str, Any] = {}
        milestones = list(order.milestones.order_by("index").values_list("ref", "status"))
        if len(milestones) > 1 and self.rng.random() < 0.7:
            refs = [ref for ref, status in milestones if status == Milestone.Status.APPROVED]
            body["milestone_ref"] = self.rng.choice(refs or [ref for ref, _ in milestones])
        label = f"release{' ' + body['milestone_ref'] if body else ''}"
        return self._order_post(label, order, "/resolution/release", body)

    def refund(self) -> str | None:
        order = self._in_state(Order, Order.Status.IN_PROGRESS)
        return self._order_post("refund", order, "/resolution/refund", {"reason": "not delivered"})

    def dispute_open(self) -> str | None:
        order = self._in_state(Order, Order.Status.IN_PROGRESS)
        body = {
            "opened_by": self.rng.choice(["BUYER", "SELLER"]),
            "reason": self.rng.choice(["NOT_DELIVERED", "QUALITY_ISSUE", "OTHER"]),
            "description": "simulated disagreement",
        }
        line = self._order_post("dispute_open", order, "/resolution/dispute", body)
        if line is not None and order is not None:
            dispute = Dispute.objects.filter(order=order).order_by("-pk").first()
            if dispute is not None:
                line += f" {self.alias(dispute.public_id, 'd')}"
        return line

    def dispute_assign(self) -> str | None:
        dispute = self._in_state(Dispute, Dispute.Status.OPEN)
        if dispute is None:
            return None
        label = f"dispute_assign {self.alias(dispute.public_id, 'd')}"
        body = {"assigned_to": self.rng.choice(["ana", "bo"])}
        answer = self._post(
            self._market(dispute), f"/disputes/{dispute.public_id}/assign", body, label
        )
        return self._line(label, answer)

    def dispute_resolve(self) -> str | None:
        dispute = self._in_state(Dispute, Dispute.Status.UNDER_REVIEW)
        if dispute is None:
            return None
        decision = self.rng.choice(["FULL_RELEASE", "FULL_REFUND", "SPLIT", "SPLIT"])
        body: dict[str, Any] = {"decision": decision}
        if decision == "SPLIT":
            unpaid = dispute.order.milestones.exclude(status=Milestone.Status.RELEASED)
            held = int(sum((m.amount for m in unpaid), Decimal(0)) * 100)
            release = self.rng.randint(0, held)
            body["release_amount"] = _usd(release)
            body["refund_amount"] = _usd(held - release)
        label = f"dispute_resolve {self.alias(dispute.public_id, 'd')} {decision}"
        answer = self._post(
            self._market(dispute), f"/disputes/{dispute.public_id}/resolve", body, label
        )
        return self._line(label, answer)

    # --- idempotency --------------------------------------------------------------------------

    def _recent(self) -> Sent | None:
        fresh = [s for s in self.recent if self.world.now() - s.at < REPLAY_WINDOW_SECONDS]
        return self.rng.choice(fresh) if fresh else None

    def retry(self) -> str | None:
        sent = self._recent()
        if sent is None:
            return None
        before = (
            Event.objects.order_by("-pk").values_list("pk", flat=True).first(),
            JournalEntry.objects.count(),
            len(self.world.celery.queue),
        )
        again = self.world.call(
            sent.market, sent.method, sent.path, sent.body, idempotency_key=sent.key
        )
        label = f"retry [{sent.label}]"
        if sent.answer.status is None:
            # The first request's process died: its key stays in progress until it expires.
            if again.status != 409 or again.code != "IDEMPOTENCY_KEY_IN_PROGRESS":
                raise InvariantError(
                    "idempotent_retry", f"{label}: after a crash got {self._said(again)}"
                )
            return self._line(label, again)
        if sent.answer.status >= 500:
            sent.answer = again  # nothing was stored: the retry ran anew
            return self._line(label, again, " (ran again)")
        after = (
            Event.objects.order_by("-pk").values_list("pk", flat=True).first(),
            JournalEntry.objects.count(),
            len(self.world.celery.queue),
        )
        same = again.status == sent.answer.status and again.body == sent.answer.body
        if not same or again.headers.get("Idempotency-Replayed") != "true":
            raise InvariantError(
                "idempotent_retry",
                f"{label}: first {self._said(sent.answer)} {sent.answer.body[:200]!r}, "
                f"then {self._said(again)} {again.body[:200]!r}",
            )
        if after != before:
            raise InvariantError(
                "idempotent_retry", f"{label}: the replay changed something {before} -> {after}"
            )
        return self._line(label, again, " (replayed)")

    def reuse_key(self) -> str | None:
        sent = self._recent()
        if sent is None or sent.answer.status is None or sent.answer.status >= 500:
            return None
        other = {"simulated": "another body"}
        again = self.world.call(
            sent.market, sent.method, sent.path, other, idempotency_key=sent.key
        )
        label = f"reuse_key [{sent.label}]"
        if again.status != 409 or again.code != "IDEMPOTENCY_KEY_REUSED":
            raise InvariantError("idempotency_key_reuse", f"{label}: got {self._said(again)}")
        return self._line(label, again)
