"""Audio → spike events through the Heidelberg cochlea chain (the model behind SHD and SSC), vectorised.

Cramer et al. 2020 ("The Heidelberg Spiking Data Sets") sent speech through a model of the inner ear;
the reference implementation is `lauscher` (LGPL-2.1, by the same authors). This module computes the
same chain with SHD's parameters, written from the published equations:

    waveform ─ RMS to 0.3 ─ Hann ramps over each half ─ basilar membrane (Sieroka et al. 2006: a
    hydrodynamic transfer function per channel, applied in the frequency domain) ─ inner hair cell
    (Meddis 1986/88 transmitter pools) ─ bushy cell (40 refractory fibres per channel → one LIF neuron)

and reproduces lauscher's discretisation choices, so that its outputs match lauscher's (within 3e-7 of the
largest magnitude, the membrane's FFT being float32; tests/test_audio.py runs lauscher beside it): the membrane
is evaluated on lauscher's frequency grid 2π·linspace(1, sr // 2, N // 2 + 1) and returned at sr // 2 as
Re(ifft) of the one-sided product; the hair cell and bushy cell run at that rate.

Speed: the transfer matrix (channels × frequencies, the costly part: a Hankel function per entry) is one
numba kernel on threads, kept as complex64 and cached per (length, rate, channels), so a dataset of
equal-length clips pays for it once (the converter pads clips to buckets of lengths, `padded_length`); the
hair cell and bushy cell are numba kernels over all channels.
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

from ..resources import available_cpus
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
    impedance Z. The per-frequency parts are numpy/scipy; the channels × frequencies entries are one
    numba kernel (`transfer_rows`, blocks of channels on threads) with H0⁽¹⁾ written out (`hankel0`):
    about 4× faster than whole-array scipy calls on one core (1.0 against 3.9 s for 700 channels × 11,530
    frequencies, of which scipy.special.hankel1 took 2.5 s).
    """
    from concurrent.futures import ThreadPoolExecutor

    from scipy import special

    p = params
    w = np.ascontiguousarray(omega, np.float64)
    beta = 2 * w / p.bm_alpha * np.sqrt(2 / (p.bm_h * p.bm_c0))  # 4πf/α·√(2/(h·c0))
    z = np.sqrt(2 * p.bm_c0 / p.bm_h) * (1j * special.j0(beta) + special.y0(beta)) \
        / (special.j1(beta) - 1j * special.y1(beta))
    c = np.linspace(0.0, p.bm_length, num_channels)
    out = np.empty((num_channels, w.size), np.complex128)
    k = _kernels()
    consts = k["transfer_constants"](w, z, p.bm_c0, p.bm_a, p.bm_m, p.bm_alpha, p.bm_rho, p.bm_h, p.bm_de, _HANKEL_ASYMPTOTIC)
    row_args = (w, c, consts, p.bm_c0, p.bm_a, p.bm_m, p.bm_alpha, p.bm_rho, p.bm_h, p.bm_de, _HANKEL_ASYMPTOTIC, out)
    threads = min(available_cpus(), max(1, num_channels * w.size // (1 << 18)))
    if threads == 1:
        k["transfer_rows"](*row_args, 0, num_channels)
    else:  # the kernel releases the GIL: blocks of channels in parallel
        bounds = np.linspace(0, num_channels, 4 * threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda lo_hi: k["transfer_rows"](*row_args, *lo_hi), zip(bounds[:-1], bounds[1:])))
    return out


# H0⁽¹⁾(z) for |z| >= _HANKEL_SWITCH: √(2/(πz))·e^(i(z − π/4))·Σ_k i^k·a_k·z^(−k), a_k = Π_{j≤k} (−(2j − 1)²) / (k!·8^k)
# (DLMF 10.17.5), summed to its smallest term; below, J0 + iY0 by their power series (DLMF 10.2.2, 10.8.2).
# The switch balances the series' cancellation (≈ eps·e^(2|z|)) against the expansion's truncation
# (≈ e^(−2|z|)): ≤ 3e-8 relative to scipy.special.hankel1 over the upper half-plane (tests/test_audio.py).
_HANKEL_SWITCH = 9.0
_HANKEL_ASYMPTOTIC = np.cumprod(np.concatenate([[1.0], [-(2 * k - 1) ** 2 / (8.0 * k) for k in range(1, 48)]])) \
    * (1j ** np.arange(48))


def hankel0(z) -> np.ndarray:
    """H0⁽¹⁾(z), the Hankel function of the first kind and order 0, for complex z with Im z >= 0 (the kernel's)."""
    z = np.ascontiguousarray(z, np.complex128)
    return _kernels()["hankel0_array"](z.ravel(), _HANKEL_ASYMPTOTIC).reshape(z.shape)


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
        # kept as complex64 (6e-8 relative per entry; the membrane's FFT runs in float32): half the memory
        compute = lambda: membrane_transfer(_membrane_grid(num_samples, sample_rate), num_channels,
                                            params).astype(np.complex64)
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
        name = hashlib.sha256(repr(key + ("complex64",)).encode()).hexdigest()[:16]
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
    """Membrane velocity per channel: ((channels, N // 2 + 1) float32, rate sr // 2) of a windowed signal.

    lauscher's Re(ifft_K(V·X)) over the K = N // 2 + 1 one-sided bins, computed as the inverse real FFT of
    the Hermitian part h[k] = (z[k] + conj(z[−k mod K])) / 2 of z = V·X (the same numbers, half the work),
    in single precision: K is often a length with a large prime factor (pocketfft's slow Bluestein path),
    where float32 halves the time; within 3e-7 of the float64 result's largest magnitude (the parity test
    with lauscher holds 1e-5).
    """
    from scipy import fft

    n = signal.size
    half = n // 2 + 1
    spectrum = fft.fft(signal)[:half].astype(np.complex64)
    transfer = TRANSFER_CACHE.get(n, sample_rate, num_channels, params)
    out = np.empty((num_channels, half), np.float32)
    hermitian = _kernels()["hermitian_product"]
    step = max(1, (1 << 21) // max(half, 1))
    for lo in range(0, num_channels, step):  # a block of channels at a time (bounded temporaries)
        out[lo:lo + step] = fft.irfft(hermitian(transfer[lo:lo + step], spectrum), n=half, axis=1)
    return out, sample_rate // 2


def hair_cell(velocity: np.ndarray, rate: int, params: CochleaParameters = SHD_PARAMETERS) -> np.ndarray:
    """Firing probability per channel and sample (Meddis inner hair cell, float64) of membrane velocities (C, T)."""
    p = params
    velocity = np.ascontiguousarray(velocity)
    if velocity.dtype not in (np.float32, np.float64):
        velocity = velocity.astype(np.float64)
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


def padded_length(num_samples: int, pad_to: int) -> int:
    """The length a clip of num_samples is padded to: the next multiple of pad_to, then the next length N
    whose membrane FFT length N // 2 + 1 has only the factors 2, 3 and 5 (scipy.fft.next_fast_len; at most a
    few ms more silence), as pocketfft takes ~3× longer on lengths with a large prime factor."""
    from scipy import fft

    total = -(-num_samples // pad_to) * pad_to
    half = fft.next_fast_len(total // 2 + 1, real=True)
    return 2 * half - 2 if 2 * half - 2 >= total else 2 * half - 1


def audio_to_events(waveform, sample_rate, num_channels: int = 700, seed: int = 0, *, sampler: str = "interval",
                    pad_to: Optional[int] = None, params: CochleaParameters = SHD_PARAMETERS) -> np.ndarray:
    """Events (EVENT_DTYPE: x = channel, y = 0, p = 1, t µs) of a mono waveform through the Heidelberg chain.

    waveform: 1-D float samples (a (samples, 2) or (2, samples) stereo array is refused: mix it down
    first, e.g. waveform.mean(axis=1)); sample_rate: Hz, at least `min_sample_rate()` (SHD used 48000).
    seed: the fibres' random draws (deterministic per seed; sampler="bernoulli" with seed s draws what
    lauscher draws after np.random.seed(s)). pad_to: the normalised, windowed clip is followed by
    silence up to a multiple of pad_to samples (and a few more, `padded_length`), so clips of similar length share one cached transfer
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
        signal = np.pad(signal, (0, padded_length(signal.size, int(pad_to)) - signal.size))
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
    import cmath

    import numba

    SWITCH2 = _HANKEL_SWITCH**2

    EULER = 0.5772156649015329

    @numba.njit(cache=True, inline="always")
    def asymptotic_sum(z, coef):  # Σ_k coef[k]·z^(−k) to its smallest term (relative 1e-11)
        inv = 1.0 / z
        total = 1.0 + 0j
        power = 1.0 + 0j
        best = 1.0
        for k in range(1, coef.shape[0]):
            power = power * inv
            term = coef[k] * power
            size = term.real * term.real + term.imag * term.imag
            if size > best:
                break
            total += term
            best = size
            if size < 1e-22:
                break
        return total

    @numba.njit(cache=True, inline="always")
    def hankel0_series(z):  # J0(z) + iY0(z) by their power series
        q = z * z / 4.0
        j = 1.0 + 0j
        y = 0j
        term = 1.0 + 0j
        harmonic = 0.0
        for k in range(1, 80):
            term = term * (-q) / (k * k)
            harmonic += 1.0 / k
            j += term
            y -= harmonic * term
            size = (term.real * term.real + term.imag * term.imag) * harmonic * harmonic
            if size < 1e-36 * (j.real * j.real + j.imag * j.imag + y.real * y.real + y.imag * y.imag):
                break
        return j + 1j * (2 / math.pi) * ((cmath.log(z / 2) + EULER) * j + y)

    @numba.njit(cache=True)
    def hankel0_one(z, coef):
        if z.real * z.real + z.imag * z.imag >= SWITCH2:
            return cmath.sqrt(2.0 / (math.pi * z)) * cmath.exp(1j * (z - math.pi / 4)) * asymptotic_sum(z, coef)
        return hankel0_series(z)

    @numba.njit(cache=True)
    def hankel0_array(z, coef):
        out = np.empty_like(z)
        for i in range(z.shape[0]):
            out[i] = hankel0_one(z[i], coef)
        return out

    @numba.njit(cache=True)
    def transfer_constants(w, z_ear, c0, a, m, alpha, rho, h, de, coef):
        # per frequency: spring 2a + 2mω², √(a + mω²), 2g(ω,0)/α, B(ω,0), the log's factor, 2ω·Z/P(ω,0),
        # √(2/π)/√(ω√(ρ/h)), log|B(ω,0)|, arg B(ω,0)
        n = w.shape[0]
        out = np.empty((9, n), np.complex128)
        r0 = de * math.sqrt(c0 * m)
        root_rho_h = math.sqrt(rho / h)
        for k in range(n):
            wk = w[k]
            spring = 2 * a + 2 * m * wk * wk
            root_a = math.sqrt(a + m * wk * wk)
            s0 = cmath.sqrt(complex(c0 - a - m * wk * wk, -wk * r0))
            g0 = wk * root_rho_h / s0  # ω√(ρ/(hξ)), ξ(ω, 0) off the negative real axis
            big_g0 = 2 * g0 / alpha
            p0 = cmath.sqrt(big_g0 / g0) * hankel0_one(big_g0, coef)
            out[0, k] = spring
            out[1, k] = root_a
            out[2, k] = big_g0
            out[3, k] = 0.5 * alpha * (-2 * s0 + complex(-wk * r0, spring) / root_a)
            out[4, k] = 2 * math.sqrt(2) * wk / (alpha * math.sqrt(2 * h * (m * wk * wk + a)))
            out[5, k] = 2 * wk * z_ear[k] / p0
            out[6, k] = math.sqrt(2 / math.pi) / math.sqrt(wk * root_rho_h)
            out[7, k] = math.log(abs(out[3, k]))
            out[8, k] = math.atan2(out[3, k].imag, out[3, k].real)
        return out

    @numba.njit(cache=True, inline="always")
    def complex_sqrt(x, y):  # the principal √(x + iy) as a pair (no cancellation on either half-plane)
        r = math.sqrt(x * x + y * y)
        if x >= 0:
            t = math.sqrt(0.5 * (r + x))
            return t, (y / (2 * t) if t > 0 else 0.0)
        t = math.sqrt(0.5 * (r - x))
        return abs(y) / (2 * t), math.copysign(t, y)

    @numba.njit(cache=True, nogil=True, fastmath={"contract"})
    def transfer_rows(w, c, consts, c0, a, m, alpha, rho, h, de, coef, out, lo, hi):
        # V(ω, c) for channels lo..hi-1: ξ, B(ω, c), G = 2g(ω,0)/α − iκ·log(B(ω,0)/B(ω,c)), P = √(G/g)·H0⁽¹⁾(G);
        # real arithmetic where numba's complex functions were slower (1.6 -> 1.0 s for 700 × 11,530 on one core)
        r0 = de * math.sqrt(c0 * m)
        root_rho_h = math.sqrt(rho / h)
        for j in range(lo, hi):
            d = math.exp(-alpha * c[j] / 2)
            half_ad = 0.5 * alpha / d
            stiff = c0 * d * d - a
            r0d = r0 * d
            for k in range(w.shape[0]):
                wk = w[k]
                xr = stiff - m * wk * wk  # ξ = xr + i·xi_im, Im ξ < 0: √(1/ξ) = 1/√ξ
                xi_im = -wk * r0d
                sr, si = complex_sqrt(xr, xi_im)
                inv_root_a = 1.0 / consts[1, k].real
                br = half_ad * (-2 * sr - wk * r0d * inv_root_a)
                bi = half_ad * (-2 * si + consts[0, k].real * inv_root_a)
                # log(B(ω,0)/B(ω,c)) = log|B0| − log|B| + i·(arg B0 − arg B) wrapped to (−π, π]
                log_re = consts[7, k].real - 0.5 * math.log(br * br + bi * bi)
                log_im = consts[8, k].real - math.atan2(bi, br)
                if log_im > math.pi:
                    log_im -= 2 * math.pi
                elif log_im <= -math.pi:
                    log_im += 2 * math.pi
                kappa = consts[4, k].real
                gr = consts[2, k].real + kappa * log_im
                gi = consts[2, k].imag - kappa * log_re
                big_g = complex(gr, gi)
                if gr * gr + gi * gi >= SWITCH2:
                    # √(G/g)·√(2/(πG)) = √(2/π)·√ξ^(1/2)/√(ω√(ρ/h)) (the branches agree for Im G >= 0, Im ξ < 0)
                    qr, qi = complex_sqrt(sr, si)
                    size = math.exp(-gi)
                    phase = gr - math.pi / 4
                    pressure = consts[6, k].real * complex(qr, qi) * complex(size * math.cos(phase), size * math.sin(phase)) \
                        * asymptotic_sum(big_g, coef)
                else:
                    pressure = cmath.sqrt(big_g * complex(sr, si) / (wk * root_rho_h)) * hankel0_series(big_g)
                num = consts[5, k] * pressure  # / ξ
                inv = 1.0 / (xr * xr + xi_im * xi_im)
                out[j, k] = complex((num.real * xr + num.imag * xi_im) * inv, (num.imag * xr - num.real * xi_im) * inv)

    @numba.njit(cache=True)
    def meddis(bm, fs, y, g, l, r, x, a, b, h, m):
        # explicit Euler steps of the three transmitter pools (free q, cleft c, reprocessing w), every channel
        ymdt, xdt, ydt, rdt = y * m / fs, x / fs, y / fs, r / fs
        gdt, hdt, lrdt = g / fs, h / fs, (l + r) / fs
        k0 = g * a / (a + b)  # resting permeability
        c0 = m * y * k0 / (l * k0 + y * (l + r))  # resting pools
        q0 = c0 * (l + r) / k0
        w0 = c0 * r / x
        out = np.empty(bm.shape, np.float64)
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
    def hazard_index(hazard, table):
        # table[b] = the first j with hazard[j + 1] >= b·Δ, Δ = hazard[-1] / (len(table) − 1): a search then starts
        # at table[b] for b just below target / Δ and steps ~1 sample on average (targets are uniform in hazard),
        # where np.searchsorted's chain of dependent loads took ~80 ns per search
        n = hazard.shape[0] - 1
        buckets = table.shape[0] - 1
        delta = hazard[n] / buckets
        j = 0
        for b in range(buckets + 1):
            while j < n - 1 and hazard[j + 1] < b * delta:
                j += 1
            table[b] = j
        return delta

    @numba.njit(cache=True, inline="always")
    def first_at_least(hazard, table, delta, target):
        # np.searchsorted(hazard[1:], target): the first j with hazard[j + 1] >= target, n if none
        n = hazard.shape[0] - 1
        if target > hazard[n]:
            return n
        if not delta > 0:
            return np.searchsorted(hazard[1:], target)
        b = int(target / delta) - 1  # one bucket lower: b·Δ <= target whatever the rounding
        j = table[b] if b > 0 else 0
        while hazard[j + 1] < target:
            j += 1
        return j

    @numba.njit(cache=True)
    def hermitian_product(transfer, spectrum):
        # h[c, k] = (z[c, k] + conj(z[c, −k mod K])) / 2 with z = transfer·spectrum, for the K // 2 + 1 bins irfft reads
        n_ch, n_k = transfer.shape
        out = np.empty((n_ch, n_k // 2 + 1), np.complex64)
        for c in range(n_ch):
            for k in range(n_k // 2 + 1):
                mk = (n_k - k) % n_k
                out[c, k] = np.complex64(0.5) * (transfer[c, k] * spectrum[k] + np.conj(transfer[c, mk] * spectrum[mk]))
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
            table = np.empty(n_t + 1, np.int64)
            for ch in range(n_ch):
                hazard[0] = 0.0  # hazard[j] = −Σ_{i<j} log(1 − p_i): P(no spike in [s, j)) = e^(hazard[s] − hazard[j])
                for j in range(n_t):
                    pj = prob[ch, j]
                    hazard[j + 1] = hazard[j] + (-math.log1p(-pj) if pj < 1.0 - 1e-16 else 745.0) if pj > 0 else hazard[j]
                delta = hazard_index(hazard, table)
                for _ in range(n_fibres):
                    start = 0
                    while start < n_t:
                        target = hazard[start] - math.log(1.0 - np.random.random())  # + Exp(1)
                        j = first_at_least(hazard, table, delta, target)  # first j with hazard[j + 1] >= target
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

    _KERNELS.update(meddis=meddis, fibres=fibres, lif=lif, hankel0_array=hankel0_array, hermitian_product=hermitian_product,
                    transfer_constants=transfer_constants, transfer_rows=transfer_rows)
    return _KERNELS
