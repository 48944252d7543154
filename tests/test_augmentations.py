"""Augmentations: schema invariants over random sensors and seeds, determinism, and behaviour checked
against independent computations (hand-computed maps, closed-form probabilities, disjoint markers)."""

import math
from functools import partial

import numpy as np
import pytest

from eventlm.data.augmentations import (
    ChannelJitter, Compose, DropChunk, DropEvent, Roll, Rotate, Scale, SpatialJitter, TimeJitter,
    TimeSkew, UniformNoise, apply_to_batch, apply_to_row, as_dataset_transform, augmentations_for,
    channel_jitter, cut_mix, cut_mix_batch, cut_mix_rows, drop_chunk, drop_event, roll, rotate,
    scale, spatial_jitter, time_jitter, time_skew, uniform_noise,
)
from eventlm.data.events import EVENT_DTYPE

SEEDS = range(25)


# ------------------------------------------------------------------------------------ fixtures
def random_sensor(rng):
    kind = rng.integers(3)
    if kind == 0:  # audio: channels x one row, one polarity
        return (int(rng.integers(2, 1000)), 1, 1)
    if kind == 1:  # camera
        return (int(rng.integers(2, 400)), int(rng.integers(2, 400)), 2)
    return (int(rng.integers(2, 64)), int(rng.integers(2, 64)), int(rng.integers(1, 4)))


def random_stream(rng, sensor, n=None, unique_t=False, max_gap=5000):
    W, H, P = sensor
    n = int(rng.integers(2, 1500)) if n is None else n
    start = int(rng.integers(1, 10**6))
    if unique_t:
        t = start + np.cumsum(rng.integers(1, max_gap, n))
    else:
        t = start + np.sort(rng.integers(0, max_gap * n // 2 + 2, n))  # with ties
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"] = t, rng.integers(0, W, n), rng.integers(0, H, n)
    ev["p"] = rng.integers(0, P, n) if P > 1 else 0
    return ev


def assert_schema(out, sensor):
    W, H, P = sensor
    assert isinstance(out, np.ndarray) and out.dtype == EVENT_DTYPE
    if len(out):
        assert out["t"].min() >= 0
        assert (np.diff(out["t"]) >= 0).all()
        assert out["x"].min() >= 0 and out["x"].max() < W
        assert out["y"].min() >= 0 and out["y"].max() < H
        assert out["p"].min() >= 0 and out["p"].max() < P


def _cut_mix_with_random_b(events, sensor, rng):
    g = np.random.default_rng(rng)
    other = random_stream(g, sensor, n=int(g.integers(0, 300)))
    return cut_mix(events, other, sensor, g)[0]


AUGMENTATIONS = {
    "drop_event": partial(drop_event, p=0.3),
    "drop_event_range": partial(drop_event, p=(0.1, 0.6)),
    "drop_chunk_events": partial(drop_chunk, max_fraction=0.3),
    "drop_chunk_time": partial(drop_chunk, max_fraction=0.3, unit="time"),
    "spatial_jitter_drop": partial(spatial_jitter, std=2.5),
    "spatial_jitter_clip": partial(spatial_jitter, std=(1.5, 4.0), outside="clip"),
    "spatial_jitter_trunc": partial(spatial_jitter, std=3.0, rounding="trunc"),
    "channel_jitter": partial(channel_jitter, std=3.0),
    "time_skew": partial(time_skew, max_factor=1.7),
    "time_jitter": partial(time_jitter, std=3000.0),
    "uniform_noise": partial(uniform_noise, max_events=200),
    "roll_drop": partial(roll, max_shift=20),
    "roll_clip": partial(roll, max_shift=20, outside="clip"),
    "roll_wrap": partial(roll, max_shift=20, outside="wrap"),
    "rotate_clip": partial(rotate, max_angle=60.0),
    "rotate_drop": partial(rotate, max_angle=180.0, outside="drop"),
    "scale_drop": partial(scale, max_scale=2.0),
    "scale_clip": partial(scale, max_scale=2.0, outside="clip"),
    "class_roll": Roll(max_shift=5, prob=0.5),
    "compose": Compose([DropEvent(p=0.2), TimeJitter(std=100.0), SpatialJitter(std=1.0),
                        Rotate(max_angle=30.0), Scale(max_scale=1.5), UniformNoise(max_events=50)]),
    "preset_shd": augmentations_for("shd"),
    "preset_dvs": augmentations_for("dvs-gesture"),
    "cut_mix": _cut_mix_with_random_b,
}


# ------------------------------------------------------------------------------ invariants
@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_schema_kept_over_random_sensors_and_seeds(name):
    aug = AUGMENTATIONS[name]
    for seed in SEEDS:
        g = np.random.default_rng(1000 + seed)
        sensor = random_sensor(g)
        ev = random_stream(g, sensor)
        before = ev.copy()
        out = aug(ev, sensor, seed)
        assert_schema(out, sensor)
        assert np.array_equal(ev, before), "the input was modified"
        assert out is not ev


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_empty_and_one_event(name):
    aug = AUGMENTATIONS[name]
    for seed in range(5):
        g = np.random.default_rng(seed)
        sensor = random_sensor(g)
        empty = np.empty(0, EVENT_DTYPE)
        assert_schema(aug(empty, sensor, seed), sensor)
        one = random_stream(g, sensor, n=1)
        out = aug(one, sensor, seed)
        assert_schema(out, sensor)
        if name != "uniform_noise" and name != "compose" and name != "preset_shd" and name != "cut_mix":
            assert len(out) <= 1


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_same_seed_same_output_and_generator_equals_seed(name):
    aug = AUGMENTATIONS[name]
    g = np.random.default_rng(7)
    sensor = (97, 83, 2)
    ev = random_stream(g, sensor, n=800)
    outs = [aug(ev, sensor, s) for s in range(8)]
    for s in range(8):
        assert np.array_equal(aug(ev, sensor, s), outs[s])
        assert np.array_equal(aug(ev, sensor, np.random.default_rng(s)), outs[s])
    assert any(not np.array_equal(outs[0], o) for o in outs[1:]), "the seed changes nothing"


def test_tonic_layouts_are_accepted():
    g = np.random.default_rng(3)
    n = 500
    shd = np.zeros(n, np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)]))
    shd["t"], shd["x"], shd["p"] = np.sort(g.integers(1, 10**6, n)), g.integers(0, 700, n), 1
    out = augmentations_for("shd")(shd, rng=1)  # tonic's p = 1 on a one-polarity sensor
    assert_schema(out, (700, 1, 1))
    dvs = np.zeros(n, np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)]))
    dvs["x"], dvs["y"], dvs["p"] = g.integers(0, 128, n), g.integers(0, 128, n), g.integers(0, 2, n)
    dvs["t"] = np.sort(g.integers(1, 10**6, n))
    assert_schema(augmentations_for("dvs-gesture")(dvs, rng=1), (128, 128, 2))


# ---------------------------------------------------------------------------- behaviour
def _positions(ev, out):
    """Indices of out's events in ev (t unique in ev); asserts each out event is that ev event."""
    idx = np.searchsorted(ev["t"], out["t"])
    assert (idx < len(ev)).all() and np.array_equal(ev[idx], out)
    return idx


def test_drop_event_count_and_subsequence():
    for seed in SEEDS:
        g = np.random.default_rng(seed)
        sensor = random_sensor(g)
        ev = random_stream(g, sensor, unique_t=True)
        p = float(g.uniform(0, 1))
        out = drop_event(ev, sensor, seed, p=p)
        assert len(out) == len(ev) - math.floor(p * len(ev) + 0.5)
        assert (np.diff(_positions(ev, out)) > 0).all()


def test_drop_event_is_uniform_over_events():
    g = np.random.default_rng(0)
    ev = random_stream(g, (50, 1, 1), n=40, unique_t=True)
    kept = np.zeros(40)
    rng = np.random.default_rng(1)
    for _ in range(1500):
        kept[_positions(ev, drop_event(ev, (50, 1, 1), rng, p=0.25))] += 1
    assert np.abs(kept / 1500 - 0.75).max() < 0.06  # 5.5σ of a binomial(1500, 0.75) rate


def test_drop_chunk_removes_one_contiguous_run():
    for seed in SEEDS:
        g = np.random.default_rng(seed)
        sensor = random_sensor(g)
        ev = random_stream(g, sensor, unique_t=True)
        f = float(g.uniform(0, 0.5))
        out = drop_chunk(ev, sensor, seed, max_fraction=f)
        removed = np.setdiff1d(np.arange(len(ev)), _positions(ev, out))
        m = int(f * len(ev))
        if m < 1:
            assert len(removed) == 0
        else:
            assert 1 <= len(removed) <= m and np.array_equal(removed, np.arange(removed[0], removed[-1] + 1))
        out_t = drop_chunk(ev, sensor, seed, max_fraction=f, unit="time")
        removed = np.setdiff1d(np.arange(len(ev)), _positions(ev, out_t))
        if len(removed):
            assert np.array_equal(removed, np.arange(removed[0], removed[-1] + 1))
            span = ev["t"][removed[-1]] - ev["t"][removed[0]]
            assert span <= f * (ev["t"][-1] - ev["t"][0]) + 1e-6


def _p_round(k, s):
    """P(rint(N(0, s)) == k) = P(k - 1/2 < N < k + 1/2)."""
    c = lambda z: 0.5 * (1 + math.erf(z / (s * math.sqrt(2))))
    return c(k + 0.5) - c(k - 0.5)


def test_spatial_jitter_distribution_matches_closed_form():
    g = np.random.default_rng(11)
    sensor = (10_000, 10_000, 2)
    n = 40_000
    ev = random_stream(g, sensor, n=n)
    ev["x"], ev["y"] = g.integers(4000, 6000, n), g.integers(4000, 6000, n)
    for s in (0.55, 1.7):
        out = spatial_jitter(ev, sensor, 5, std=s)
        assert len(out) == n and np.array_equal(out["t"], ev["t"]) and np.array_equal(out["p"], ev["p"])
        for axis in ("x", "y"):
            d = out[axis].astype(np.int64) - ev[axis]
            var = sum(k * k * _p_round(k, s) for k in range(-30, 31))  # E[rint(N)²]
            assert abs(d.mean()) < 5 * math.sqrt(var / n)
            assert abs(d.var() / var - 1) < 0.05
            assert abs((d == 0).mean() - _p_round(0, s)) < 0.015
    d = channel_jitter(ev, sensor, 5, std=1.3)  # x only, truncated shift
    dx = d["x"].astype(np.int64) - ev["x"]
    assert np.array_equal(d["y"], ev["y"])
    assert abs((dx != 0).mean() - math.erfc(1 / (1.3 * math.sqrt(2)))) < 0.015  # P(|N| >= 1)


def test_spatial_jitter_border_drop_and_clip_rates():
    g = np.random.default_rng(2)
    n, s = 30_000, 1.2
    sensor = (300, 1, 1)
    ev = random_stream(g, sensor, n=n)
    ev["x"] = 0
    p_kept = 0.5 * (1 + math.erf(0.5 / (s * math.sqrt(2))))  # P(N >= -1/2)
    dropped = spatial_jitter(ev, sensor, 3, std=s)
    assert abs(len(dropped) / n - p_kept) < 0.015
    assert (dropped["y"] == 0).all()  # one-row sensor: y not jittered
    clipped = spatial_jitter(ev, sensor, 3, std=s, outside="clip")
    assert len(clipped) == n and abs((clipped["x"] == 0).mean() - p_kept) < 0.015  # P(rint(N) <= 0) = P(N < 1/2)


def test_time_skew_scales_gaps():
    for seed in SEEDS:
        g = np.random.default_rng(seed)
        sensor = random_sensor(g)
        ev = random_stream(g, sensor)
        c = float(g.uniform(0.3, 3.0))
        out = time_skew(ev, sensor, seed, factor=c)
        assert out["t"][0] == ev["t"][0]
        assert np.abs(np.diff(out["t"]) - c * np.diff(ev["t"])).max() <= 1.0 + 1e-9
        assert np.abs((out["t"] - out["t"][0]) - c * (ev["t"] - ev["t"][0])).max() <= 0.5 + 1e-6
        for f in ("x", "y", "p"):
            assert np.array_equal(out[f], ev[f])
    factors = []
    for seed in range(40):
        ev = random_stream(np.random.default_rng(seed), (20, 1, 1), n=300, unique_t=True, max_gap=10**5)
        out = time_skew(ev, (20, 1, 1), seed, max_factor=1.3)
        factors.append((out["t"][-1] - out["t"][0]) / (ev["t"][-1] - ev["t"][0]))
    assert 1 / 1.3 - 1e-6 <= min(factors) < 1 < max(factors) <= 1.3 + 1e-6


def test_time_jitter_gaussian_and_clipped_at_zero():
    g = np.random.default_rng(5)
    n, s = 20_000, 300.0
    ev = random_stream(g, (64, 64, 2), n=n, unique_t=True, max_gap=10**6)
    ev["t"] += np.arange(n) * 10**5  # gaps >> σ: the order cannot change
    out = time_jitter(ev, (64, 64, 2), 1, std=s)
    for f in ("x", "y", "p"):
        assert np.array_equal(out[f], ev[f])
    d = out["t"] - ev["t"]
    assert abs(d.mean()) < 5 * s / math.sqrt(n) and abs(d.std() / math.sqrt(s * s + 1 / 12) - 1) < 0.03
    ev["t"] = np.arange(n) // 100  # starts at 0: a jitter of σ = 50 µs pushes many below 0
    out = time_jitter(ev, (64, 64, 2), 1, std=50.0)
    assert len(out) == n and out["t"].min() == 0
    key = lambda e: np.sort(e[["x", "y", "p"]])
    assert np.array_equal(key(out), key(ev))  # the same events, re-sorted by time


def _is_subsequence(small, big):
    it = iter(big.tolist())
    return all(any(e == b for b in it) for e in small.tolist())


def test_uniform_noise_adds_uniform_events_and_keeps_the_input():
    for seed in range(10):
        g = np.random.default_rng(seed)
        sensor = random_sensor(g)
        ev = random_stream(g, sensor, n=int(g.integers(2, 300)))
        out = uniform_noise(ev, sensor, seed, max_events=50)
        assert 0 <= len(out) - len(ev) < 50 and _is_subsequence(ev, out)
        assert out["t"].min() == ev["t"][0] and out["t"].max() == ev["t"][-1]
    g = np.random.default_rng(9)
    sensor = (200, 50, 2)
    ev = random_stream(g, sensor, n=10)
    out = uniform_noise(ev, sensor, 4, n=30_000)
    assert len(out) == 30_010
    assert abs(out["x"].mean() - 99.5) < 2 and abs(out["y"].mean() - 24.5) < 0.6
    assert abs(out["p"].mean() - 0.5) < 0.02
    mid = (ev["t"][0] + ev["t"][-1]) / 2
    assert abs(out["t"].mean() - mid) < 0.02 * (ev["t"][-1] - ev["t"][0])


def test_roll_shifts_by_hand():
    for seed in SEEDS:
        g = np.random.default_rng(seed)
        sensor = random_sensor(g)
        W, H, _ = sensor
        ev = random_stream(g, sensor)
        dx, dy = int(g.integers(-W, W + 1)), int(g.integers(-H, H + 1))
        wrap = roll(ev, sensor, seed, shift=(dx, dy), outside="wrap")
        assert np.array_equal(wrap["x"], (ev["x"].astype(int) + dx) % W)
        assert np.array_equal(wrap["y"], (ev["y"].astype(int) + dy) % H)
        inside = (ev["x"] + dx >= 0) & (ev["x"] + dx < W) & (ev["y"] + dy >= 0) & (ev["y"] + dy < H)
        drop = roll(ev, sensor, seed, shift=(dx, dy))
        assert np.array_equal(drop["t"], ev["t"][inside])
        assert np.array_equal(drop["x"], ev["x"][inside] + dx) and np.array_equal(drop["y"], ev["y"][inside] + dy)
        clip = roll(ev, sensor, seed, shift=(dx, dy), outside="clip")
        assert np.array_equal(clip["x"], np.clip(ev["x"].astype(int) + dx, 0, W - 1))
        # a random roll moves every event by the same (dx, dy), |dx|, |dy| <= max_shift
        r = roll(ev, sensor, seed, max_shift=7, outside="wrap")
        sx = np.unique((r["x"].astype(int) - ev["x"]) % W)
        sy = np.unique((r["y"].astype(int) - ev["y"]) % H)
        assert len(sx) == 1 and len(sy) == 1
        assert min(sx[0], W - sx[0]) <= 7 and min(sy[0], H - sy[0]) <= 7
        if H == 1:
            assert (r["y"] == 0).all()


def test_rotate_by_hand():
    for seed in SEEDS:
        g = np.random.default_rng(seed)
        sensor = random_sensor(g)
        W, H, _ = sensor
        ev = random_stream(g, sensor)
        for outside in ("clip", "drop"):
            assert np.array_equal(rotate(ev, sensor, seed, angle=0.0, outside=outside), ev)
            r180 = rotate(ev, sensor, seed, angle=180.0, outside=outside)
            assert np.array_equal(r180["x"], W - 1 - ev["x"]) and np.array_equal(r180["y"], H - 1 - ev["y"])
        assert np.array_equal(rotate(ev, sensor, seed, max_angle=0.0), ev)
        sq = (W, W, 2)
        evs = random_stream(g, sq)
        r90 = rotate(evs, sq, seed, angle=90.0, outside="drop")
        assert len(r90) == len(evs)
        assert np.array_equal(r90["x"], W - 1 - evs["y"]) and np.array_equal(r90["y"], evs["x"])
        r270 = rotate(evs, sq, seed, angle=-90.0)
        assert np.array_equal(r270["x"], evs["y"]) and np.array_equal(r270["y"], W - 1 - evs["x"])
        # any angle: a complex rotation about the grid center, rounded, clipped / dropped
        th = float(g.uniform(-180, 180))
        c = complex((W - 1) / 2, (H - 1) / 2)
        z = ((ev["x"] + 1j * ev["y"]) - c) * np.exp(1j * np.deg2rad(th)) + c
        xr, yr = np.rint(z.real).astype(int), np.rint(z.imag).astype(int)
        clip = rotate(ev, sensor, seed, angle=th)
        assert np.array_equal(clip["x"], np.clip(xr, 0, W - 1)) and np.array_equal(clip["y"], np.clip(yr, 0, H - 1))
        keep = (xr >= 0) & (xr < W) & (yr >= 0) & (yr < H)
        drop = rotate(ev, sensor, seed, angle=th, outside="drop")
        assert np.array_equal(drop["x"], xr[keep]) and np.array_equal(drop["t"], ev["t"][keep])


def test_scale_by_hand():
    ev = np.zeros(5, EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"] = [3, 5, 8, 9, 12], [0, 1, 2, 3, 4], [4, 2, 2, 1, 3]
    out = scale(ev, (5, 5, 1), 0, factor=2.0)  # center 2: x -> 2 + 2(x - 2): x 0..4 -> -2, 0, 2, 4, 6
    assert out["t"].tolist() == [5, 8, 9] and out["x"].tolist() == [0, 2, 4] and out["y"].tolist() == [2, 2, 0]
    out = scale(ev, (5, 5, 1), 0, factor=2.0, outside="clip")
    assert out["x"].tolist() == [0, 0, 2, 4, 4] and out["y"].tolist() == [4, 2, 2, 0, 4]
    out = scale(ev, (6, 6, 1), 0, factor=3.0)  # center 2.5: x -> 2.5 + 3(x - 2.5): 0..4 -> -5, -2, 1, 4, 7
    assert out["t"].tolist() == [8] and out["x"].tolist() == [1] and out["y"].tolist() == [1]
    g = np.random.default_rng(4)
    for seed in SEEDS:
        sensor = (1001, 1001, 2)
        e = random_stream(g, sensor, n=2000)
        e["x"], e["y"] = g.integers(400, 601, 2000), g.integers(400, 601, 2000)
        assert np.array_equal(scale(e, sensor, seed, factor=1.0), e)
        out = scale(e, sensor, seed, max_scale=1.4)
        f = (out["x"] - 500.0).std() / (e["x"] - 500.0).std()
        assert len(out) == len(e) and 1 / 1.4 - 0.01 <= f <= 1.4 + 0.01


def test_cut_mix_soft_label_is_event_fraction_and_replacement_is_as_documented():
    for seed in SEEDS:
        g = np.random.default_rng(seed)
        W = 1000
        sensor = (W, int(g.integers(1, 40)), 2)
        gap = 5000 if seed % 2 else 2  # odd seeds: many equal timestamps at the window edges
        a = random_stream(g, sensor, n=int(g.integers(1, 800)), max_gap=gap)
        b = random_stream(g, sensor, n=int(g.integers(1, 800)), max_gap=gap)
        a["x"] %= 500  # the source of each event of the mix is its x half
        b["x"] = 500 + b["x"] % 500
        for align in (True, False):
            mixed, lam = cut_mix(a, b, sensor, seed, align_start=align)
            assert_schema(mixed, sensor)
            from_b = mixed[mixed["x"] >= 500]
            from_a = mixed[mixed["x"] < 500]
            assert lam == pytest.approx(len(from_b) / len(mixed))
            assert 1 <= len(from_b) <= max(1, len(b) - 1)
            shift = (a["t"][0] - b["t"][0]) if align else 0
            # the chunk is a contiguous run of b, time-shifted by the start difference
            start = np.flatnonzero(b["x"] == from_b["x"][0])
            assert any(np.array_equal(b[s:s + len(from_b)][["x", "y", "p"]], from_b[["x", "y", "p"]])
                       and np.array_equal(b["t"][s:s + len(from_b)] + shift, from_b["t"]) for s in start)
            lo, hi = from_b["t"][0], from_b["t"][-1]
            assert np.array_equal(from_a, a[(a["t"] < lo) | (a["t"] > hi)])
    a = random_stream(np.random.default_rng(1), (10, 1, 1), n=20)
    out, lam = cut_mix(a, np.empty(0, EVENT_DTYPE), (10, 1, 1), 0)
    assert lam == 0.0 and np.array_equal(out, a)
    out, lam = cut_mix(np.empty(0, EVENT_DTYPE), a, (10, 1, 1), 0)
    assert lam == 1.0 and 1 <= len(out) < 20


def test_cut_mix_batch_soft_labels():
    g = np.random.default_rng(0)
    B, C = 6, 5
    sensor = (100 * B, 3, 2)
    batch = []
    for i in range(B):
        e = random_stream(g, sensor, n=int(g.integers(1, 200)))
        e["x"] = 100 * i + e["x"] % 100  # sample i owns x in [100 i, 100 i + 100)
        batch.append(e)
    labels = g.integers(0, C, B)
    for seed in range(10):
        mixed, soft = cut_mix_batch(batch, labels, C, sensor, seed)
        assert soft.dtype == np.float32 and soft.shape == (B, C)
        assert np.allclose(soft.sum(1), 1)
        for i, m in enumerate(mixed):
            assert_schema(m, sensor)
            src = m["x"] // 100
            others = np.unique(src[src != i])
            assert len(others) <= 1
            expected = np.eye(C)[labels[i]].copy()
            if len(others):
                lam = (src == others[0]).mean()
                expected = (1 - lam) * expected + lam * np.eye(C)[labels[others[0]]]
            assert np.allclose(soft[i], expected, atol=1e-6)
    same, soft = cut_mix_batch(batch, labels, C, sensor, 0, p=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(same, batch)) and np.array_equal(soft, np.eye(C)[labels])
    rows = [{"t": e["t"].tolist(), "x": e["x"].tolist(), "y": e["y"].tolist(), "p": e["p"].tolist(),
             "label": int(l), "speaker": 3} for e, l in zip(batch, labels)]
    out = cut_mix_rows(rows, C, sensor, 1)
    assert all(r["soft_label"].shape == (C,) and r["speaker"] == 3 and r["t"].dtype == np.int64 for r in out)


def test_compose_prob_and_chaining():
    g = np.random.default_rng(3)
    sensor = (37, 29, 2)
    ev = random_stream(g, sensor)
    assert np.array_equal(Compose([Rotate(max_angle=90, prob=0.0), DropEvent(p=0.9, prob=0.0)])(ev, sensor, 1), ev)
    two = Compose([Roll(shift=(5, -3), outside="wrap"), Roll(shift=(40, 1), outside="wrap")])(ev, sensor, 1)
    assert np.array_equal(two, roll(ev, sensor, shift=(45, -2), outside="wrap"))
    applied = [len(DropEvent(p=0.5, prob=0.3)(ev, sensor, s)) < len(ev) for s in range(400)]
    assert abs(np.mean(applied) - 0.3) < 0.08
    custom = Compose([lambda e, s, r: e[::2], TimeSkew(factor=2.0)])(ev, sensor, 0)
    assert np.array_equal(custom["x"], ev["x"][::2])
    with pytest.raises(ValueError, match="outside the sensor"):
        Compose([lambda e, s, r: _shift_x(e, 1000)])(ev, sensor, 0)
    with pytest.raises(ValueError, match="sensor_size"):
        Compose([DropEvent()])(ev)


def _shift_x(e, d):
    e = e.copy()
    e["x"] += d
    return e


def test_presets_carry_the_reference_parameters():
    shd = augmentations_for("shd")
    assert shd.sensor_size == (700, 1, 1) and shd.cut_mix == 0.3
    assert shd.transforms == [DropEvent(p=0.1), DropChunk(max_fraction=0.02, prob=0.3), ChannelJitter(std=0.55),
                              TimeSkew(max_factor=1.2), TimeJitter(std=1.0), UniformNoise(max_events=35)]
    ssc = augmentations_for("SSC")
    assert ssc.cut_mix == 0.3 and TimeSkew(max_factor=1.05) in ssc.transforms
    assert UniformNoise(max_events=100) in ssc.transforms and ChannelJitter(std=1.0) in ssc.transforms
    dvs = augmentations_for("dvs-gesture", max_roll=8)
    assert dvs.sensor_size == (128, 128, 2) and dvs.cut_mix == 0.4
    assert Roll(max_shift=8, prob=0.3) in dvs.transforms and Rotate(max_angle=10.0, prob=0.3) in dvs.transforms
    assert Scale(max_scale=1.2, prob=0.3) in dvs.transforms and TimeSkew(max_factor=1.12) in dvs.transforms
    assert SpatialJitter(std=math.sqrt(0.3)) in dvs.transforms  # tonic's var_x = 0.3 px²
    assert not any(isinstance(t, UniformNoise) for t in dvs.transforms)  # noise 0 in the config
    with pytest.raises(ValueError, match="unknown task"):
        augmentations_for("mnist")
    with pytest.raises(ValueError, match="max_roll"):
        augmentations_for("shd", max_roll=3)


def test_rows_batches_and_dataset_transform():
    g = np.random.default_rng(8)
    ev = random_stream(g, (700, 1, 1), n=300)
    row = {"t": ev["t"].tolist(), "x": ev["x"].tolist(), "label": 4, "speaker": 1}  # audio row, no y/p
    aug = augmentations_for("shd")
    out = apply_to_row(row, aug, rng=5)
    assert out["label"] == 4 and out["speaker"] == 1 and row["t"] == ev["t"].tolist()
    assert [out[k].dtype for k in "txyp"] == [np.int64, np.int16, np.int16, np.int8]
    assert_schema(np.rec.fromarrays([out[k] for k in "txyp"], dtype=EVENT_DTYPE).view(np.ndarray), (700, 1, 1))
    again = apply_to_row(row, aug, (700, 1, 1), 5)
    assert all(np.array_equal(out[k], again[k]) for k in "txyp")
    batch = {k: [row[k]] * 3 for k in row}
    res = apply_to_batch(batch, DropEvent(p=0.5), (700, 1, 1), 0)
    assert len(res["t"]) == 3 and all(len(t) == 150 for t in res["t"]) and res["label"] == [4, 4, 4]
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(batch).with_transform(as_dataset_transform(Roll(shift=3), (700, 1, 1), 0))
    item = ds[1]
    keep = ev["x"] + 3 < 700
    assert np.array_equal(np.asarray(item["x"]), ev["x"][keep] + 3)


def test_bad_input_is_rejected_with_the_value():
    g = np.random.default_rng(0)
    ev = random_stream(g, (10, 10, 2), n=20)
    bad = ev.copy()
    bad["t"][5] = bad["t"][4] - 1
    with pytest.raises(ValueError, match="decreases"):
        drop_event(bad, (10, 10, 2), 0)
    with pytest.raises(ValueError, match="outside the sensor"):
        roll(ev, (5, 10, 2), 0)
    with pytest.raises(ValueError, match="sensor_size"):
        rotate(ev, (10, 10), 0)
    with pytest.raises(ValueError, match="1.5"):
        drop_event(ev, (10, 10, 2), 0, p=1.5)
    with pytest.raises(ValueError, match="p"):
        DropEvent(p=-0.1)
    with pytest.raises(ValueError, match="bogus"):
        Roll(outside="bogus")
    with pytest.raises(ValueError, match="max_factor"):
        TimeSkew(max_factor=0.5)
    with pytest.raises(ValueError, match="prob"):
        Scale(prob=2.0)
    with pytest.raises(TypeError, match="RandomState"):
        drop_event(ev, (10, 10, 2), np.random.RandomState(0))
    with pytest.raises(ValueError, match="num_classes"):
        cut_mix_batch([ev, ev], [0, 7], 5)
