"""Audio → spike events through the Heidelberg cochlea chain (the model behind SHD and SSC), vectorised.

Cramer et al. 2020 ("The Heidelberg Spiking Data Sets") sent speech through a model of the inner ear;
the reference implementation is `lauscher` (LGPL-2.1, by the same authors). This module computes the
same chain with SHD's parameters, written from the published equations:

    waveform ─ RMS to 0.3 ─ Hann ramps over each half ─ basilar membrane (Sieroka et al. 2006: a
    hydrodynamic transfer function per channel, applied in the frequency domain) ─ inner hair cell
    (Meddis 1986/88 transmitter pools) ─ bushy cell (40 refractory fibres per channel → one LIF neuron)

and reproduces lauscher's discretisation choices, so that its outputs match lauscher's to rounding
(tests/test_audio.py runs lauscher beside it): the membrane is evaluated on lauscher's frequency grid
2π·linspace(1, sr // 2, N // 2 + 1) and returned at sr // 2 as Re(ifft) of the one-sided product; the
hair cell and bushy cell run at that rate.

Speed: the transfer matrix (channels × frequencies, the costly part: a Hankel function per entry) is
computed with whole-array numpy/scipy calls and cached per (length, rate, channels), so a dataset of
equal-length clips pays for it once; the hair cell and bushy cell are numba kernels over all channels.
The fibres' spikes are drawn either as lauscher does (one uniform per fibre and sample, `sampler=
"bernoulli"`: with the same draws, the same spikes) or, by default, from the same distribution with one
exponential draw per fibre spike (`sampler="interval"`: the first sample at which the accumulated hazard
−Σ log(1 − p) exceeds an Exp(1) draw; a refractory fibre restarts after its dead time), about 40× fewer
random numbers.

Events come out in the Hub event schema: x = channel, y = 0, p = 1, t in int64 µs (sample index / rate,
rounded), sorted by time then channel.
"""

import math
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .events import EVENT_DTYPE


@dataclass(frozen=True)
class CochleaParameters:
    """The chain's parameters; the defaults are SHD's (lauscher's Wave2Spike)."""

    rms_level: float = 0.3
    # basilar membrane (Sieroka et al. 2006); channel positions linspace(0, length, num_channels)
    bm_length: float = 3.5
    bm_a: float = 3500.0
    bm_alpha: float = 3.0
    bm_rho: float = 1.0
    bm_c0: float = 10e8
    bm_de: float = 0.15
    bm_h: float = 0.1
    bm_m: float = 0.05
    # inner hair cell (Meddis)
    hc_y: float = 5.05
    hc_g: float = 2000.0
    hc_l: float = 2500.0
    hc_r: float = 6580.0
    hc_x: float = 66.3
    hc_a: float = 5.0
    hc_b: float = 300.0
    hc_h: float = 50000.0
    hc_m: float = 1.0
    # bushy cell: n fibres converge on one LIF neuron
    bc_fibres: int = 40
    bc_tau_mem: float = 1e-3
    bc_tau_syn: float = 5e-4
    bc_tau_refrac: float = 1e-3
    bc_weight: float = 13e3

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)


SHD_PARAMETERS = CochleaParameters()
SAMPLERS = ("interval", "bernoulli")


def min_sample_rate(params: CochleaParameters = SHD_PARAMETERS) -> int:
    """The lowest input rate the chain takes: the hair cell's explicit step must not remove more cleft
    transmitter than there is, (l + r) / (sr // 2) < 1."""
    return 2 * int(math.floor(params.hc_l + params.hc_r)) + 2


def check_sample_rate(sample_rate, params: CochleaParameters = SHD_PARAMETERS) -> int:
    """The sample rate as an int, or a ValueError naming it and the fix."""
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer():
        raise ValueError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    low = min_sample_rate(params)
    if sample_rate < low:
        raise ValueError(f"sample_rate {sample_rate} Hz is too low for the cochlea chain (its hair cell runs at "
                         f"sample_rate // 2 and needs at least {low} Hz); resample the audio to 48000 Hz (SHD's rate)")
    return sample_rate


# ----------------------------------------------------------------------------------------------------------
# the stages (each testable against lauscher on its own)
# ----------------------------------------------------------------------------------------------------------


def normalize_and_window(waveform: np.ndarray, params: CochleaParameters = SHD_PARAMETERS) -> np.ndarray:
    """RMS to params.rms_level, then a rising Hann half over the first N // 2 samples and a falling one over
    the last N // 2 (float64 copy). A silent waveform raises ValueError (audio_to_events catches it)."""
    x = np.array(waveform, dtype=np.float64)
    rms = np.sqrt(np.mean(x**2)) if x.size else 0.0
    if not rms > 0 or not np.isfinite(rms):
        raise ValueError("silent or non-finite waveform")
    x *= params.rms_level / rms
    half = x.size // 2
    ramp = np.hanning(2 * half)[:half]  # rising half of a Hann window of 2·half samples
    x[:half] *= ramp
    if half:
        x[-half:] *= ramp[::-1]
    return x


def _membrane_grid(num_samples: int, sample_rate: int) -> np.ndarray:
    """lauscher's angular frequencies: 2π·linspace(1, sr // 2, N // 2 + 1)."""
    return 2 * np.pi * np.linspace(1, sample_rate // 2, num_samples // 2 + 1)


def membrane_transfer(omega: np.ndarray, num_channels: int, params: CochleaParameters = SHD_PARAMETERS) -> np.ndarray:
    """The basilar membrane's velocity transfer V(ω, c) (channels × frequencies, complex128).

    Sieroka et al. 2006, long-wave approximation: stiffness s(c) = c0·e^(−αc) − a, damping
    r(c) = de·√(c0·m)·e^(−αc/2), ξ = s − mω² − iωr, wave number g = ω√(ρ / (hξ)); the pressure P(ω, c) =
    √(G/g)·H0⁽¹⁾(G) with the WKB phase G(ω, c); V = 2ω/ξ · P(ω, c)/P(ω, 0) · Z(ω) with the middle-ear
    impedance Z. Whole-array numpy/scipy calls, a block of channels at a time (bounded temporaries).
    """
    from scipy import special

    p = params
    w = np.asarray(omega, np.float64)[None, :]  # (1, K)
    r0 = p.bm_de * np.sqrt(p.bm_c0 * p.bm_m)
    root_a = np.sqrt(p.bm_a + p.bm_m * w**2)
    spring = 2 * p.bm_a + 2 * p.bm_m * w**2  # 2a + 2mω², the real part of 2a + ω(2mω + i·r)

    def pressure(c):  # P(ω, c) and ξ(ω, c) for channel positions c (n, 1)
        decay_half = np.exp(-p.bm_alpha * c / 2)
        xi = p.bm_c0 * decay_half**2 - p.bm_a - p.bm_m * w**2 - 1j * w * r0 * decay_half
        # G = 2g(ω,0)/α − 2i√2·ω / (α√(2h(mω² + a))) · log(B(ω,0) / B(ω,c)),
        # B(ω,c) = ½α·e^(αc/2)·(−2√ξ(ω,c) + i(2a + ω(2mω + i·r(c))) / √(a + mω²))
        b_c = 0.5 * p.bm_alpha / decay_half * (-2 * np.sqrt(xi) + 1j * (spring + 1j * w * r0 * decay_half) / root_a)
        big_g = 2 * g0 / p.bm_alpha - 2j * np.sqrt(2) * w / (p.bm_alpha * np.sqrt(2 * p.bm_h * (p.bm_m * w**2 + p.bm_a))) \
            * np.log(b0 / b_c)
        g = w * np.sqrt(p.bm_rho / (p.bm_h * xi))
        return np.sqrt(big_g / g) * special.hankel1(0, big_g), xi

    xi0 = p.bm_c0 - p.bm_a - p.bm_m * w**2 - 1j * w * r0
    g0 = w * np.sqrt(p.bm_rho / (p.bm_h * xi0))
    b0 = 0.5 * p.bm_alpha * (-2 * np.sqrt(xi0) + 1j * (spring + 1j * w * r0) / root_a)
    p0, _ = pressure(np.zeros((1, 1)))
    beta = 2 * w / p.bm_alpha * np.sqrt(2 / (p.bm_h * p.bm_c0))  # 4πf/α·√(2/(h·c0))
    z = np.sqrt(2 * p.bm_c0 / p.bm_h) * (1j * special.j0(beta) + special.y0(beta)) \
        / (special.j1(beta) - 1j * special.y1(beta))
    c = np.linspace(0.0, p.bm_length, num_channels)[:, None]
    out = np.empty((num_channels, w.shape[1]), np.complex128)
    step = max(1, (1 << 21) // max(w.shape[1], 1))
    for lo in range(0, num_channels, step):
        pc, xi = pressure(c[lo:lo + step])
        out[lo:lo + step] = 2 * w / xi * pc * z / p0
    return out


class _TransferCache:
    """Transfer matrices by (N, sample rate, channels, parameters), least recently used out past a byte budget.

    With `directory` set (the converter's work folder) a matrix is also kept there as .npy and read back
    memory-mapped, so worker processes compute each one once between them (a file lock serialises them).
    """

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self.directory = None
        self._items: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, num_samples: int, sample_rate: int, num_channels: int, params: CochleaParameters) -> np.ndarray:
        key = (num_samples, sample_rate, num_channels, params)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        compute = lambda: membrane_transfer(_membrane_grid(num_samples, sample_rate), num_channels, params)
        value = compute() if self.directory is None else self._shared(key, compute)
        with self._lock:
            self._items[key] = value
            while len(self._items) > 1 and sum(v.nbytes for v in self._items.values()) > self.max_bytes:
                self._items.popitem(last=False)
        return value

    def clear(self):
        with self._lock:
            self._items.clear()

    def _shared(self, key, compute) -> np.ndarray:
        import hashlib
        import os
        from pathlib import Path

        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        path = folder / f"transfer-{name}.npy"
        with open(folder / f"transfer-{name}.lock", "a") as lock:
            try:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            except ImportError:  # no file locks (Windows): workers may compute the same matrix twice
                pass
            if not path.is_file():
                tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
                with open(tmp, "wb") as f:
                    np.save(f, compute())
                os.replace(tmp, path)
        return np.load(path, mmap_mode="r")


TRANSFER_CACHE = _TransferCache()


def basilar_membrane(signal: np.ndarray, sample_rate: int, num_channels: int = 700,
                     params: CochleaParameters = SHD_PARAMETERS) -> Tuple[np.ndarray, int]:
    """Membrane velocity per channel: ((channels, N // 2 + 1) float64, rate sr // 2) of a windowed signal.

    lauscher's Re(ifft_K(V·X)) over the K = N // 2 + 1 one-sided bins, computed as the inverse real FFT of
    the Hermitian part h[k] = (z[k] + conj(z[−k mod K])) / 2 of z = V·X (the same numbers, half the work).
    """
    from scipy import fft

    n = signal.size
    half = n // 2 + 1
    spectrum = fft.fft(signal)[:half]
    transfer = TRANSFER_CACHE.get(n, sample_rate, num_channels, params)
    out = np.empty((num_channels, half), np.float64)
    mirror = (-np.arange(half // 2 + 1)) % half  # −k mod K for the bins irfft reads
    step = max(1, (1 << 21) // max(half, 1))
    for lo in range(0, num_channels, step):  # a block of channels at a time (bounded temporaries)
        z = transfer[lo:lo + step] * spectrum
        out[lo:lo + step] = fft.irfft(0.5 * (z[:, :half // 2 + 1] + np.conj(z[:, mirror])), n=half, axis=1)
    return out, sample_rate // 2


def hair_cell(velocity: np.ndarray, rate: int, params: CochleaParameters = SHD_PARAMETERS) -> np.ndarray:
    """Firing probability per channel and sample (Meddis inner hair cell) of membrane velocities (C, T)."""
    p = params
    velocity = np.ascontiguousarray(velocity, np.float64)
    if velocity.ndim != 2:
        raise ValueError(f"velocity must be (channels, samples), got shape {velocity.shape}")
    return _kernels()["meddis"](velocity, float(rate), p.hc_y, p.hc_g, p.hc_l, p.hc_r, p.hc_x, p.hc_a, p.hc_b,
                                p.hc_h, p.hc_m)


def bushy_cell(probability: np.ndarray, rate: int, *, seed: int = 0, sampler: str = "interval",
               uniforms: Optional[np.ndarray] = None, params: CochleaParameters = SHD_PARAMETERS) -> np.ndarray:
    """Spikes (channels, samples) bool of one LIF bushy cell per channel fed by `bc_fibres` refractory fibres.

    Each fibre spikes at sample t with probability probability[c, t] unless it spiked less than
    bc_tau_refrac ago; sampler "bernoulli" draws one uniform per fibre and sample (from `uniforms`,
    shape (C, T, fibres), when given: lauscher's draws, in its order), "interval" the same process with
    one exponential draw per spike. The LIF integrates the fibres' exponentially decaying currents.
    """
    p = params
    prob = np.ascontiguousarray(probability, np.float64)
    if prob.ndim != 2:
        raise ValueError(f"probability must be (channels, samples), got shape {prob.shape}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if uniforms is not None:
        if sampler != "bernoulli":
            raise ValueError("uniforms= are one draw per fibre and sample: they need sampler='bernoulli'")
        uniforms = np.ascontiguousarray(uniforms, np.float64)
        if uniforms.shape != prob.shape + (p.bc_fibres,):
            raise ValueError(f"uniforms must have shape {prob.shape + (p.bc_fibres,)}, got {uniforms.shape}")
    else:
        uniforms = np.zeros((0, 0, 0))
    k = _kernels()
    counts = k["fibres"](prob, float(p.bc_tau_refrac * rate), p.bc_fibres, sampler == "interval", uniforms,
                         int(seed) % (2**32))
    return k["lif"](counts, 1.0 / rate, p.bc_tau_mem, p.bc_tau_syn, p.bc_tau_refrac * rate, p.bc_weight / p.bc_fibres)


def fibre_counts(probability: np.ndarray, rate: int, *, seed: int = 0, sampler: str = "interval",
                 params: CochleaParameters = SHD_PARAMETERS) -> np.ndarray:
    """How many of the bc_fibres fibres spike per channel and sample (the bushy cell's input; for tests)."""
    prob = np.ascontiguousarray(probability, np.float64)
    return _kernels()["fibres"](prob, float(params.bc_tau_refrac * rate), params.bc_fibres, sampler == "interval",
                                np.zeros((0, 0, 0)), int(seed) % (2**32))


def spikes_to_events(spikes: np.ndarray, rate: int) -> np.ndarray:
    """Dense (channels, samples) spikes → events (EVENT_DTYPE) sorted by time then channel; t = round(i·1e6/rate) µs."""
    step, channel = np.nonzero(np.asarray(spikes).T)
    events = np.zeros(step.size, EVENT_DTYPE)
    events["t"] = np.rint(step * (1e6 / rate)).astype(np.int64)
    events["x"] = channel
    events["p"] = 1
    return events


def audio_to_events(waveform, sample_rate, num_channels: int = 700, seed: int = 0, *, sampler: str = "interval",
                    pad_to: Optional[int] = None, params: CochleaParameters = SHD_PARAMETERS) -> np.ndarray:
    """Events (EVENT_DTYPE: x = channel, y = 0, p = 1, t µs) of a mono waveform through the Heidelberg chain.

    waveform: 1-D float samples (a (samples, 2) or (2, samples) stereo array is refused: mix it down
    first, e.g. waveform.mean(axis=1)); sample_rate: Hz, at least `min_sample_rate()` (SHD used 48000).
    seed: the fibres' random draws (deterministic per seed; sampler="bernoulli" with seed s draws what
    lauscher draws after np.random.seed(s)). pad_to: the normalised, windowed clip is followed by
    silence up to a multiple of pad_to samples, so clips of similar length share one cached transfer
    matrix (None: exactly lauscher's chain). A silent clip gives no events.
    """
    x = np.asarray(waveform)
    if x.ndim != 1:
        raise ValueError(f"waveform must be mono (1-D), got shape {x.shape}; mix channels down first "
                         f"(e.g. waveform.mean(axis=-1))")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"waveform must hold numbers, got dtype {x.dtype}")
    if not isinstance(num_channels, (int, np.integer)) or isinstance(num_channels, bool) or num_channels < 1:
        raise ValueError(f"num_channels must be a positive integer, got {num_channels!r}")
    sample_rate = check_sample_rate(sample_rate, params)
    if x.size < 4:
        return np.zeros(0, EVENT_DTYPE)
    try:
        signal = normalize_and_window(x, params)
    except ValueError:
        if np.isfinite(x).all():  # silent
            return np.zeros(0, EVENT_DTYPE)
        raise ValueError("waveform holds NaN or infinite samples; clean or drop the clip") from None
    if pad_to is not None:
        if int(pad_to) < 1:
            raise ValueError(f"pad_to must be a positive number of samples or None, got {pad_to!r}")
        signal = np.pad(signal, (0, -signal.size % int(pad_to)))
    velocity, rate = basilar_membrane(signal, sample_rate, num_channels, params)
    probability = hair_cell(velocity, rate, params)
    return spikes_to_events(bushy_cell(probability, rate, seed=seed, sampler=sampler, params=params), rate)


# ----------------------------------------------------------------------------------------------------------
# numba kernels (compiled on first use)
# ----------------------------------------------------------------------------------------------------------

_KERNELS: Dict[str, object] = {}


def _kernels():
    if _KERNELS:
        return _KERNELS
    import numba

    @numba.njit(cache=True)
    def meddis(bm, fs, y, g, l, r, x, a, b, h, m):
        # explicit Euler steps of the three transmitter pools (free q, cleft c, reprocessing w), every channel
        ymdt, xdt, ydt, rdt = y * m / fs, x / fs, y / fs, r / fs
        gdt, hdt, lrdt = g / fs, h / fs, (l + r) / fs
        k0 = g * a / (a + b)  # resting permeability
        c0 = m * y * k0 / (l * k0 + y * (l + r))  # resting pools
        q0 = c0 * (l + r) / k0
        w0 = c0 * r / x
        out = np.empty_like(bm)
        for ch in range(bm.shape[0]):
            q, c, w = q0, c0, w0
            for j in range(bm.shape[1]):
                s = bm[ch, j] + a
                kt = gdt * s / (s + b) if s > 0 else 0.0
                replenish = ymdt - ydt * q if q < m else 0.0
                eject = kt * q
                loss = lrdt * c
                reuptake = rdt * c
                reprocess = xdt * w
                q = max(q + replenish - eject + reprocess, 0.0)
                c = max(c + eject - loss, 0.0)
                w = max(w + reuptake - reprocess, 0.0)
                out[ch, j] = c * hdt
        return out

    @numba.njit(cache=True)
    def fibres(prob, refrac, n_fibres, interval, uniforms, seed):
        np.random.seed(seed)
        n_ch, n_t = prob.shape
        counts = np.zeros((n_ch, n_t), np.int32)
        given = uniforms.shape[0] > 0
        if interval:
            dead = int(math.ceil(refrac))  # a fibre that spiked at j may spike again from j + ceil(refrac)
            hazard = np.empty(n_t + 1)
            for ch in range(n_ch):
                hazard[0] = 0.0  # hazard[j] = −Σ_{i<j} log(1 − p_i): P(no spike in [s, j)) = e^(hazard[s] − hazard[j])
                for j in range(n_t):
                    pj = prob[ch, j]
                    hazard[j + 1] = hazard[j] + (-math.log1p(-pj) if pj < 1.0 - 1e-16 else 745.0) if pj > 0 else hazard[j]
                for _ in range(n_fibres):
                    start = 0
                    while start < n_t:
                        target = hazard[start] - math.log(1.0 - np.random.random())  # + Exp(1)
                        j = np.searchsorted(hazard[1:], target)  # first j with hazard[j + 1] >= target
                        if j >= n_t:
                            break
                        counts[ch, j] += 1
                        start = j + dead
        else:
            last = np.empty(n_fibres)
            for ch in range(n_ch):
                last[:] = -refrac
                for j in range(n_t):
                    pj = prob[ch, j]
                    n = 0
                    for k in range(n_fibres):
                        u = uniforms[ch, j, k] if given else np.random.random()
                        if u < pj and j - last[k] >= refrac:
                            n += 1
                            last[k] = j
                    counts[ch, j] = n
        return counts

    @numba.njit(cache=True)
    def lif(counts, dt, tau_mem, tau_syn, refrac_samples, weight):
        # lauscher's LIF: the spike of sample j is recorded when v[j] reached 1 (v is clipped at 1), then
        # v = 0 and integration pauses for refrac_samples samples; input: Σ fibre currents, each decaying with tau_syn
        n_ch, n_t = counts.shape
        spikes = np.zeros((n_ch, n_t), np.bool_)
        d_mem, d_syn = math.exp(-dt / tau_mem), math.exp(-dt / tau_syn)
        for ch in range(n_ch):
            v = 0.0
            current = 0.0
            refrac = 0.0
            for j in range(n_t):
                if j > 0:
                    if refrac <= 0:
                        if v < 1.0:
                            v = v * d_mem
                        else:
                            refrac = refrac_samples
                            v = 0.0
                            spikes[ch, j - 1] = True
                    else:
                        v = 0.0
                    current = current * d_syn
                current += counts[ch, j]
                if refrac <= 0:
                    v += current * weight * dt
                if v > 1.0:
                    v = 1.0
                refrac -= 1
        return spikes

    _KERNELS.update(meddis=meddis, fibres=fibres, lif=lif)
    return _KERNELS
