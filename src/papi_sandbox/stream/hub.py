"""The in-process event hub: committed journal entries and order executions, fanned out to
subscribers per account.

The store calls :meth:`EventHub.publish` once per durable commit (never for a rolled-back one),
in commit order, from its writer thread (SQLite) or its notification listener (PostgreSQL).
Subscribers (WebSocket connections, the dashboard) read an async iterator of
:data:`~papi_sandbox.trading.model.Announcement` (a
:class:`~papi_sandbox.ledger.model.CommittedEntry` or an
:class:`~papi_sandbox.trading.model.OrderUpdate`), for one account or for all of them. Each
subscriber has a bounded queue: one that stops reading is dropped (its iterator raises
:class:`SubscriberDropped`), never allowed to grow the server's memory. A subscription made with
:func:`subscribe_from_now` receives no announcement whose commit was durable before it was made
(store/outbox.py, "Marks and the horizon"). See docs/design.md, "The event hub".
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from papi_sandbox.trading.model import Announcement

#: Entries one subscriber may have waiting; a subscriber that falls further behind is dropped.
MAX_SUBSCRIBER_QUEUE = 4096
#: Why a subscriber was dropped: it fell behind, or announcements may have been lost before
#: reaching this process (:meth:`EventHub.drop_all`; the consumer must read the state again).
BEHIND = "behind"
LOST = "lost"
#: Subscribers one hub serves at once (WebSocket connections, dashboards); past it
#: :meth:`EventHub.subscribe` raises :class:`TooManySubscribers`.
MAX_SUBSCRIBERS = 50_000


class SubscriberDropped(Exception):
    """The subscriber fell more than its queue's limit behind and was unsubscribed."""


class TooManySubscribers(Exception):
    """The hub already serves MAX_SUBSCRIBERS subscribers."""


class Subscription:
    """One subscriber's view of the hub: ``async for committed in subscription``.

    Ends (StopAsyncIteration) when closed; raises :class:`SubscriberDropped` after being dropped
    for falling behind. Use it as a context manager, or call :meth:`close`, to unsubscribe.
    Lives on the event loop of the hub; not thread-safe.
    """

    __slots__ = (
        "_held",
        "_hub",
        "_items",
        "_seen",
        "_waiter",
        "account_id",
        "closed",
        "dropped",
        "limit",
        "on_ready",
    )

    def __init__(self, hub: EventHub, account_id: int | None, limit: int) -> None:
        self._hub = hub
        self.account_id = account_id
        self.limit = limit
        # Made on the first item: an idle subscriber (most of them) holds no deque (~600 B).
        self._items: deque[Announcement] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        #: None, or why it was dropped (BEHIND or LOST).
        self.dropped: str | None = None
        #: Until :meth:`start`: what arrived, with its mark, held back (see subscribe_from_now).
        self._held: list[tuple[int | None, Announcement]] | None = None
        #: After :meth:`start`, until the first newer announcement: whether a mark's commit was
        #: durable before the subscription (those are skipped).
        self._seen: Callable[[int], bool] | None = None
        #: Called (on the hub's loop) after an entry is queued and when the subscriber is
        #: dropped: lets a consumer run a sender only while there is something to send,
        #: instead of a task waiting on the iterator.
        self.on_ready: Callable[[], None] | None = None

    def _offer(self, item: Announcement, mark: int | None = None) -> bool:
        """Queue ``item``; False (and nothing queued) when the queue is full. Held back before
        :meth:`start`; skipped when the horizon saw its commit."""
        if self._held is not None:
            if len(self._held) >= self.limit:
                return False
            self._held.append((mark, item))
            return True
        if self._seen is not None:
            if mark is not None and self._seen(mark):
                return True  # durable before the subscription: not news to it
            # Commit order: every later announcement is newer still.
            self._seen = None
        items = self._items
        if items is None:
            items = self._items = deque()
        elif len(items) >= self.limit:
            return False
        items.append(item)
        self._wake()
        if self.on_ready is not None:
            self.on_ready()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def hold(self) -> None:
        """Hold back what arrives until :meth:`start` (called right after subscribing)."""
        self._held = []

    def start(self, seen: Callable[[int], bool]) -> None:
        """Stop holding back: ``seen(mark)`` is True for a commit that was durable before the
        subscription (its horizon); those are skipped, held or still to come, the rest queued."""
        held, self._held = self._held or [], None
        self._seen = seen
        for mark, item in held:
            if not self._offer(item, mark):
                self._hub.dropped_total += 1
                self._drop()
                return

    def pending(self) -> int:
        """Entries queued and not yet read."""
        return len(self._items) if self._items is not None else 0

    def close(self) -> None:
        """Unsubscribe; queued entries are discarded and iteration ends."""
        if not self.closed:
            self.closed = True
            self._items = self._held = None
            self._hub._remove(self)
            self._wake()

    def _drop(self, reason: str = BEHIND) -> None:
        self.dropped = reason
        self.close()
        if self.on_ready is not None:
            self.on_ready()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Announcement:
        while True:
            if self._items:
                return self._items.popleft()
            if self.closed:
                if self.dropped == LOST:
                    raise SubscriberDropped("announcements may have been lost: read the state")
                if self.dropped:
                    raise SubscriberDropped(
                        f"subscriber fell more than {self.limit} entries behind"
                    )
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def get_nowait(self) -> Announcement | None:
        """The next queued entry, or None when none is waiting."""
        return self._items.popleft() if self._items else None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventHub:
    """Fan-out of committed entries to subscribers, per account, in commit order.

    ``publish`` may be called from any thread (the SQLite writer thread calls it); delivery
    always happens on the hub's event loop (the one it was bound to, or the first subscriber's).
    """

    def __init__(
        self, *, max_queue: int = MAX_SUBSCRIBER_QUEUE, max_subscribers: int = MAX_SUBSCRIBERS
    ) -> None:
        self.max_queue = max_queue
        self.max_subscribers = max_subscribers
        self._by_account: dict[int, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        #: Counters for metrics: entries published, subscribers dropped for falling behind.
        self.published_total = 0
        self.dropped_total = 0

    @property
    def subscribers(self) -> int:
        return self._count

    def queued(self) -> int:
        """Announcements waiting in every subscriber's queue (for metrics; O(subscribers))."""
        waiting = sum(sub.pending() for sub in self._all)
        for subs in self._by_account.values():
            waiting += sum(sub.pending() for sub in subs)
        return waiting

    def bind(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Deliver on ``loop`` (default: the running loop). Called by the app at startup."""
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def subscribe(self, account_id: int | None, *, limit: int | None = None) -> Subscription:
        """A new subscription to ``account_id``'s committed entries (None: every account's),
        starting with the next commit. Raises TooManySubscribers past ``max_subscribers``."""
        if self._loop is None:
            self.bind()
        if self._count >= self.max_subscribers:
            raise TooManySubscribers(f"the hub already serves {self.max_subscribers} subscribers")
        sub = Subscription(self, account_id, limit or self.max_queue)
        if account_id is None:
            self._all.add(sub)
        else:
            self._by_account.setdefault(account_id, set()).add(sub)
        self._count += 1
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub.account_id is None:
            found = sub in self._all
            self._all.discard(sub)
        else:
            subs = self._by_account.get(sub.account_id)
            found = subs is not None and sub in subs
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_account[sub.account_id]
        if found:
            self._count -= 1

    def publish(self, entries: Sequence[Announcement], marks: Sequence[int] = ()) -> None:
        """Deliver committed entries (in commit order) to their subscribers, with each one's
        mark when known (a store's on_commit listener; store/outbox.py). Thread-safe; from
        another thread the delivery is queued on the hub's loop, keeping the callers' order."""
        if not entries:
            return
        loop = self._loop
        if loop is None:  # nobody ever subscribed: nobody to tell
            return
        if threading.get_ident() == self._loop_thread:
            self._deliver(entries, marks)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, entries, marks)

    def _deliver(self, entries: Sequence[Announcement], marks: Sequence[int]) -> None:
        for index, item in enumerate(entries):
            self.published_total += 1
            mark = marks[index] if index < len(marks) else None
            subs = self._by_account.get(item.account_id)
            if subs:
                self._offer_all(subs, item, mark)
            if self._all:
                self._offer_all(self._all, item, mark)

    def drop_all(self) -> None:
        """Drop every subscriber (reason LOST): announcements may have been lost before they
        reached this process (a store's ``on_announcements_lost``: PostgreSQL's listener lost
        its connection), so each consumer must reconnect and read the state again rather than
        wait for events that will not come. On the hub's loop."""
        subs = [*self._all, *(sub for group in self._by_account.values() for sub in group)]
        for sub in subs:
            sub._drop(LOST)

    def _offer_all(self, subs: set[Subscription], item: Announcement, mark: int | None) -> None:
        overflowed = [sub for sub in subs if not sub._offer(item, mark)]
        for sub in overflowed:
            self.dropped_total += 1
            sub._drop()


#: What a subscription asks the store for once registered: ``seen(mark)`` for the commits
#: durable by then (``store.read(outbox.horizon)``'s ``durable``).
HorizonReader = Callable[[], Awaitable[Callable[[int], bool]]]


async def subscribe_from_now(
    hub: EventHub,
    account_id: int | None,
    horizon: HorizonReader | None,
    *,
    limit: int | None = None,
) -> Subscription:
    """A subscription that receives exactly the commits made after it: registered first (so
    nothing committed later is missed), then the store's horizon is read, and what the horizon
    already saw is skipped, whenever this process learns of it. Call it before telling the
    client it is subscribed. Raises TooManySubscribers, or what reading the horizon raises
    (StoreUnavailable; the subscription is then closed). ``horizon`` None: from the next
    publish (a hub without a store)."""
    sub = hub.subscribe(account_id, limit=limit)
    if horizon is None:
        return sub
    sub.hold()
    try:
        seen = await horizon()
    except BaseException:
        sub.close()
        raise
    sub.start(seen)
    return sub
