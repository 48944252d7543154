"""eventlm.data.audio (the Heidelberg cochlea chain) against lauscher, the reference, run beside it.

lauscher (LGPL-2.1, the SHD authors' code) is in the test extra; the parity tests skip only where it is
missing. Clips are short and channels few (lauscher takes minutes per second of audio at 700 channels).
"""

import numpy as np
import pytest

from eventlm.data import audio as A

SR = 22050  # eSpeak NG's rate; 48000 (SHD's) is covered too


def _tones(n, sr, seed):
    """Random non-zero test audio: two chirps with random amplitude envelopes plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0, f1 = rng.uniform(200, 3000, 2)
    chirp = np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t**2 / t[-1]))
    env = np.interp(t, np.linspace(0, t[-1], 6), rng.uniform(0.1, 1.0, 6))
    return env * chirp + 0.5 * np.sin(2 * np.pi * rng.uniform(100, 600) * t) + 0.05 * rng.normal(size=n)


def _speech(sr):
    """A spoken word from eSpeak NG (skips without the espeakng-loader wheel)."""
    from eventlm.data import speech

    try:
        wave, rate = speech.synthesize("seven", voice="en", speed=175, pitch=50)
    except speech.SpeechUnavailable as err:
        pytest.skip(str(err))
    if rate != sr:
        from scipy.signal import resample_poly

        wave = resample_poly(wave, sr, rate)
    return wave[: int(0.12 * sr)]  # keep lauscher quick


def _clip(kind, sr):
    return _speech(sr) if kind == "speech" else _tones(int(0.08 * sr), sr, seed=sum(map(ord, kind)) + sr)


def _lauscher():
    pytest.importorskip("lauscher", reason="lauscher (the reference chain) is not installed: pip install lauscher")
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.transformations import BasilarMembrane, BushyCell, HairCell, HanningWindow, RmsNormalizer

    return MonoAudioWave, RmsNormalizer, HanningWindow, BasilarMembrane, HairCell, BushyCell


def _close(ours, ref, rel=1e-5):
    """Every entry within rel of the reference's largest magnitude (entries near zero have no relative error)."""
    assert ours.shape == ref.shape
    scale = np.max(np.abs(ref))
    assert scale > 0
    err = np.max(np.abs(ours - ref)) / scale
    assert err <= rel, f"max |ours - lauscher| / max |lauscher| = {err:.2e} > {rel:.0e}"


@pytest.mark.parametrize("kind,sr", [("tones", SR), ("noise-tones", 48000), ("speech", SR)])
def test_membrane_and_hair_cell_match_lauscher(kind, sr):
    MonoAudioWave, RmsNormalizer, HanningWindow, BasilarMembrane, HairCell, _ = _lauscher()
    x = _clip(kind, sr)
    channels = 24
    wave = MonoAudioWave(x.copy(), sr).transform(RmsNormalizer(0.3)).transform(HanningWindow())
    signal = A.normalize_and_window(x)
    _close(signal, wave.samples, 1e-12)
    ref_bm = wave.transform(BasilarMembrane(channels=channels))
    velocity, rate = A.basilar_membrane(signal, sr, channels)
    assert rate == ref_bm.sample_rate
    _close(velocity, ref_bm.channels)
    ref_hc = ref_bm.transform(HairCell())
    _close(A.hair_cell(velocity, rate), ref_hc.channels)  # our whole chain so far against lauscher's
    _close(A.hair_cell(ref_bm.channels, rate), ref_hc.channels, 1e-12)  # the hair cell alone, same input


def _probabilities(channels, steps, seed):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, 0.06, (channels, 1)) * np.abs(np.sin(np.linspace(0, rng.uniform(2, 9), steps)))
    return base * rng.uniform(0.5, 1.0, (channels, steps))


def _lauscher_events(train):
    events = np.zeros(train.spike_times.size, [("t", np.int64), ("x", np.int64)])
    events["t"] = np.rint(train.spike_times * 1e6)
    events["x"] = train.spike_labels
    return events


def test_bushy_cell_given_the_same_draws_gives_the_same_spikes():
    from lauscher.firing_probability import FiringProbability

    *_, BushyCell = _lauscher()
    prob, rate = _probabilities(12, 600, seed=4), 11025
    np.random.seed(7)
    ref = _lauscher_events(FiringProbability(prob, rate).transform(BushyCell()))
    assert len(ref) > 20
    np.random.seed(7)  # lauscher draws rand(samples, fibres) per channel, in channel order
    uniforms = np.stack([np.random.rand(prob.shape[1], 40) for _ in range(prob.shape[0])])
    for ours in (A.bushy_cell(prob, rate, sampler="bernoulli", uniforms=uniforms),
                 A.bushy_cell(prob, rate, sampler="bernoulli", seed=7)):  # numba's MT19937 = numpy's legacy one
        events = A.spikes_to_events(ours, rate)
        np.testing.assert_array_equal(events["t"], ref["t"])
        np.testing.assert_array_equal(events["x"], ref["x"])


def test_audio_to_events_matches_lauscher_end_to_end():
    _lauscher()
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.transformations.wave2spike import Wave2Spike

    x = _tones(int(0.1 * 48000), 48000, seed=11)
    np.random.seed(5)
    ref = _lauscher_events(MonoAudioWave(x.copy(), 48000).transform(Wave2Spike(num_channels=20)))
    ours = A.audio_to_events(x, 48000, num_channels=20, seed=5, sampler="bernoulli")
    assert len(ref) > 20
    np.testing.assert_array_equal(ours["t"], ref["t"])
    np.testing.assert_array_equal(ours["x"], ref["x"])
    assert (ours["y"] == 0).all() and (ours["p"] == 1).all() and ours.dtype == A.EVENT_DTYPE


def test_interval_sampler_draws_the_same_fibre_process_as_bernoulli():
    """The fast sampler's fibre spike counts per sample agree in mean with lauscher's per-sample draws
    (independent implementations of one refractory Bernoulli process), across many seeds."""
    prob = np.repeat(_probabilities(3, 300, seed=2), 40, axis=0)  # 40 replicas of 3 profiles
    rate = 8000  # refractory period 8 samples
    runs = {s: np.mean([A.fibre_counts(prob, rate, seed=k, sampler=s).reshape(3, 40, -1).mean(1)
                        for k in range(30)], axis=0) for s in A.SAMPLERS}
    a, b = runs["interval"], runs["bernoulli"]
    # a fibre spikes with probability ≤ 0.06 per sample; 40 fibres x 40 replicas x 30 seeds per mean
    bins = lambda m: m.reshape(3, 10, 30).sum(-1)  # 30-sample bins: ~5 sigma ≈ 6 % of a bin's mean
    np.testing.assert_allclose(bins(a), bins(b), rtol=0.08, atol=0.05)
    assert abs(a.sum() / b.sum() - 1) < 0.01
    assert A.fibre_counts(prob, rate, seed=1).max() <= 40


def test_audio_to_events_is_deterministic_per_seed_and_sorted():
    x = _tones(int(0.05 * SR), SR, seed=3)
    a = A.audio_to_events(x, SR, num_channels=32, seed=1)
    b = A.audio_to_events(x, SR, num_channels=32, seed=1)
    c = A.audio_to_events(x, SR, num_channels=32, seed=2)
    assert len(a) > 10
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    order = np.lexsort((a["x"], a["t"]))
    np.testing.assert_array_equal(order, np.arange(len(a)))
    assert a["x"].max() < 32 and a["t"].max() <= 1e6 * len(x) / SR


def test_audio_to_events_bad_input():
    x = _tones(2000, SR, seed=1)
    with pytest.raises(ValueError, match=r"mono .*shape \(2000, 2\).*mix"):
        A.audio_to_events(np.stack([x, x], 1), SR)
    with pytest.raises(ValueError, match="16000 Hz is too low.*resample"):
        A.audio_to_events(x, 16000)
    with pytest.raises(ValueError, match="NaN"):
        A.audio_to_events(np.where(np.arange(2000) == 5, np.nan, x), SR)
    with pytest.raises(ValueError, match="sampler"):
        A.audio_to_events(x, SR, num_channels=4, sampler="poisson")
    silent = A.audio_to_events(np.zeros(2000), SR, num_channels=8)
    assert silent.dtype == A.EVENT_DTYPE and len(silent) == 0


def test_hankel0_matches_scipy_across_the_switch():
    """The chain's H0⁽¹⁾ (power series below |z| = 9, asymptotic expansion above) against scipy.special.hankel1."""
    from scipy import special

    rng = np.random.default_rng(9)
    radius = np.concatenate([rng.uniform(1e-3, 80, 4000), rng.uniform(8.5, 9.5, 2000), [1e-4, 9.0, 9.0 + 1e-9]])
    z = radius * np.exp(1j * rng.uniform(0, np.pi, radius.size))  # the upper half-plane, where G lies
    ref = special.hankel1(0, z)
    rel = np.abs(A.hankel0(z) - ref) / np.abs(ref)
    assert rel.max() < 5e-8, f"max relative error {rel.max():.1e} at z = {z[rel.argmax()]}"


def test_interval_sampler_search_equals_a_plain_searchsorted():
    """The fibres' indexed search gives exactly the spikes of np.searchsorted on the hazard, draw for draw
    (numba's MT19937 is numpy's legacy one), on profiles with silent stretches, zero and certain samples."""
    rng = np.random.default_rng(3)
    prob = _probabilities(4, 700, seed=8)
    prob[1, 100:400] = 0.0  # flat hazard
    prob[2] = 0.0  # a silent channel
    prob[3, rng.integers(0, 700, 5)] = 1.0  # certain spikes (the hazard jumps by 745)
    rate, seed = 8000, 12
    dead = int(np.ceil(A.SHD_PARAMETERS.bc_tau_refrac * rate))
    np.random.seed(seed)
    expected = np.zeros(prob.shape, np.int32)
    for ch, p in enumerate(prob):
        steps = np.where(p >= 1.0 - 1e-16, 745.0, 0.0)  # −log(1 − p), capped where p is 1
        inside = (p > 0) & (p < 1.0 - 1e-16)
        steps[inside] = -np.log1p(-p[inside])
        hazard = np.concatenate([[0.0], np.cumsum(steps)])
        for _ in range(A.SHD_PARAMETERS.bc_fibres):
            start = 0
            while start < prob.shape[1]:
                j = np.searchsorted(hazard[1:], hazard[start] - np.log(1.0 - np.random.random()))
                if j >= prob.shape[1]:
                    break
                expected[ch, j] += 1
                start = j + dead
    ours = A.fibre_counts(prob, rate, seed=seed)
    assert expected.sum() > 100
    np.testing.assert_array_equal(ours, expected)


def test_audio_benchmark_rows_and_table():
    """scripts/benchmark_audio.py's logic on two tiny clips: every row timed, the bucket rows at the converter's
    default buckets, and the padded length is FFT-friendly and never shorter than the clip."""
    from scipy import fft

    from eventlm.data.audio_conversion import ChainOptions
    from eventlm.data.benchmark import benchmark_audio, format_audio_table

    clips = [("a", _tones(2000, SR, 1)), ("b", _tones(2600, SR, 2))]
    rows, parity = benchmark_audio(clips, SR, num_channels=4, lauscher_clips=0, workers=1)
    assert [r[0].split(",")[1].strip() for r in rows] == ["1 process"] * 4
    assert all(n == 2 and a == pytest.approx(4600 / SR) and w > 0 for _, n, a, w, _ in rows)
    assert "0.25 s buckets" in rows[1][0]
    assert "audio s/wall s" in format_audio_table(rows, parity, "test host", 4, SR)
    pad = ChainOptions(sample_rate=SR).pad_to()
    for n in (1, 2000, pad, pad + 1, 3 * pad - 1):
        total = A.padded_length(n, pad)
        assert total >= -(-n // pad) * pad and fft.next_fast_len(total // 2 + 1, real=True) == total // 2 + 1
