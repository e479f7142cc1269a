"""FairLimiter: global and per-customer bounds, served round-robin between customers."""

from __future__ import annotations

import threading
import time

import pytest

from runner.errors import TransientError
from runner.ports import SlotWait
from runner.sandbox import FairLimiter


def _wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


class Waiters:
    """Threads that each acquire one slot and record the order they got it in."""

    def __init__(self, limiter: FairLimiter) -> None:
        self.limiter = limiter
        self.granted: list[str] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def enqueue(self, customer: str, holder: str) -> None:
        before = self.limiter.waiting()

        def run() -> None:
            self.limiter.acquire(customer, holder, timeout=10)
            with self.lock:
                self.granted.append(holder)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        _wait_until(lambda: self.limiter.waiting() == before + 1)

    def release_next(self, holder: str) -> str:
        count = len(self.granted)
        self.limiter.release(holder)
        _wait_until(lambda: len(self.granted) == count + 1)
        return self.granted[-1]


def test_given_one_customer_flooding_when_slots_free_then_customers_take_turns():
    limiter = FairLimiter(global_limit=1, per_customer_limit=1)
    limiter.acquire("a", "a0")
    waiters = Waiters(limiter)
    for i in range(1, 6):
        waiters.enqueue("a", f"a{i}")
    waiters.enqueue("b", "b1")
    waiters.enqueue("b", "b2")
    waiters.enqueue("c", "c1")
    waiters.enqueue("c", "c2")

    order = []
    current = "a0"
    for _ in range(9):
        current = waiters.release_next(current)
        order.append(current)

    assert order == ["b1", "c1", "a1", "b2", "c2", "a2", "a3", "a4", "a5"]
    limiter.release(current)
    assert limiter.running() == 0
    assert limiter.waiting() == 0


def test_given_per_customer_limit_then_others_proceed_while_the_full_customer_waits():
    limiter = FairLimiter(global_limit=3, per_customer_limit=1)
    limiter.acquire("a", "a1")

    started = time.monotonic()
    with pytest.raises(TransientError):
        limiter.acquire("a", "a2", timeout=0.2)
    assert time.monotonic() - started >= 0.2
    limiter.acquire("b", "b1", timeout=0.2)

    assert limiter.running("a") == 1
    assert limiter.running("b") == 1
    assert limiter.waiting() == 0


def test_given_global_limit_then_a_waiter_gets_the_first_freed_slot():
    limiter = FairLimiter(global_limit=2, per_customer_limit=2)
    limiter.acquire("a", "a1")
    limiter.acquire("b", "b1")
    waiters = Waiters(limiter)
    waiters.enqueue("c", "c1")

    assert waiters.release_next("b1") == "c1"
    assert limiter.running() == 2


def test_given_a_holder_when_acquiring_again_or_releasing_twice_then_counts_stay_right():
    limiter = FairLimiter(global_limit=2, per_customer_limit=2)
    limiter.acquire("a", "x")
    limiter.acquire("a", "x", timeout=0)

    assert limiter.running() == 1
    limiter.release("x")
    limiter.release("x")
    limiter.release("never-held")
    assert limiter.running() == 0


def test_given_many_threads_then_limits_are_never_exceeded():
    limiter = FairLimiter(global_limit=3, per_customer_limit=2)
    peak = {"all": 0, "a": 0, "b": 0}
    lock = threading.Lock()

    def work(customer: str, n: int) -> None:
        holder = f"{customer}{n}"
        limiter.acquire(customer, holder, timeout=10)
        with lock:
            peak["all"] = max(peak["all"], limiter.running())
            peak[customer] = max(peak[customer], limiter.running(customer))
        time.sleep(0.005)
        limiter.release(holder)

    threads = [threading.Thread(target=work, args=(c, n)) for n in range(20) for c in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert peak["all"] <= 3
    assert peak["a"] <= 2
    assert peak["b"] <= 2
    assert limiter.running() == 0


def test_given_a_blocked_waiter_then_it_hears_where_it_stands_and_when_it_is_granted():
    limiter = FairLimiter(global_limit=2, per_customer_limit=1)
    limiter.acquire("a", "a1")
    limiter.acquire("b", "b1")
    heard: list[SlotWait] = []
    waiter = threading.Thread(target=limiter.acquire, args=("a", "a2", 10),
                              kwargs={"on_wait": heard.append}, daemon=True)
    waiter.start()
    _wait_until(lambda: bool(heard))

    first = heard[0]
    assert (first.holder, first.position, first.waiting, first.customer_running,
            first.customer_limit, first.running, first.limit, first.granted) == (
        "a2", 1, 1, 1, 1, 2, 2, False)
    assert first.describe().endswith("customer a holds 1 of its 1; 1 waiting, "
                                     "this container 1st of a's")
    limiter.release("a1")
    waiter.join(5)
    assert not waiter.is_alive()
    assert heard[-1].granted and heard[-1].describe().startswith("sandbox slot granted after ")
    assert len(heard) == 2  # one report at first, one when granted: not one per wakeup
