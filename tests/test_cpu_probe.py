"""The one-time speed probe behind CPU dispatch (getkern.ops.cpu_probe)."""

import time

from getkern.ops import cpu_probe


def takes(seconds):
    return lambda: time.sleep(seconds)


def test_a_candidate_is_taken_only_where_clearly_faster():
    assert cpu_probe.clearly_faster(takes(0.004), takes(0.001), min_speedup=1.3, rounds=3)
    assert not cpu_probe.clearly_faster(takes(0.001), takes(0.001), min_speedup=1.3, rounds=3)  # equal: keep
    assert not cpu_probe.clearly_faster(takes(0.001), takes(0.004), min_speedup=1.3, rounds=3)


def test_the_warm_up_call_is_not_counted():
    calls = []

    def first_slow():
        time.sleep(0.05 if not calls else 0.001)
        calls.append(1)

    assert not cpu_probe.clearly_faster(first_slow, takes(0.001), min_speedup=1.3, rounds=3)
    assert len(calls) == 4  # one warm-up and three timed
