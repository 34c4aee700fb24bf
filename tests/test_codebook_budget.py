"""Per-tensor bit choice under a byte budget: greedy on gain per byte, never over the budget."""

from __future__ import annotations

from sharescan.codebook.budget import Upgrade, choose_upgrades


def test_best_gain_per_byte_is_taken_first_and_the_budget_is_never_exceeded() -> None:
    ups = [Upgrade("big", 1000, 0.010), Upgrade("dense", 100, 0.005), Upgrade("mid", 500, 0.004)]
    c = choose_upgrades(ups, 600)
    assert c.chosen == ("dense", "mid")  # 5e-5/B, then 8e-6/B; "big" (1e-5/B) would not fit after "dense"
    assert c.extra_bytes == 600
    assert abs(c.gain - 0.009) < 1e-12


def test_an_upgrade_too_big_does_not_stop_smaller_ones_behind_it() -> None:
    ups = [Upgrade("huge", 10_000, 1.0), Upgrade("small", 10, 0.0001)]
    assert choose_upgrades(ups, 50).chosen == ("small",)


def test_upgrades_that_gain_nothing_or_lose_are_never_taken() -> None:
    ups = [Upgrade("flat", 10, 0.0), Upgrade("worse", 10, -0.01), Upgrade("good", 10, 0.01)]
    assert choose_upgrades(ups, 1_000).chosen == ("good",)


def test_a_free_upgrade_that_gains_is_always_taken_even_with_no_budget() -> None:
    assert choose_upgrades([Upgrade("free", 0, 0.001), Upgrade("paid", 1, 0.5)], 0).chosen == ("free",)


def test_every_budget_is_kept_and_the_chosen_bytes_add_up() -> None:
    ups = [Upgrade(f"t{i}", 37 * (i % 7 + 1), ((i * 13) % 11) / 1000) for i in range(40)]
    size = {u.name: u.extra_bytes for u in ups}
    for budget in range(0, 3000, 50):
        c = choose_upgrades(ups, budget)
        assert c.extra_bytes == sum(size[n] for n in c.chosen) <= budget
        assert len(set(c.chosen)) == len(c.chosen)
