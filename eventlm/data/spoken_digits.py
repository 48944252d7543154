"""The embedded default dataset: spoken digits 0–9 in English and German (20 classes, as SHD), made offline.

Every clip is one digit word spoken by eSpeak NG (`eventlm.data.speech.synthesize`, the voices shipped in the
espeakng-loader wheel: no network) in one of its ~100 voice variants ("en+m3", "de+klatt2", ...), at a random
speed, pitch and pitch range, after a random lead-in, with white noise at a random signal-to-noise ratio; the
clips then go through the Heidelberg cochlea chain by `eventlm.data.audio_conversion.audio_to_hub_dataset`
(the converter behind `eventlm convert-audio`: same chain, same card, same writer). As SHD holds speakers
out, the test split holds voices out: the voice variants are shuffled with the seed and dealt to test,
validation and train, so no voice of validation or test is ever heard in training (the `speaker` column
names each clip's variant). Labels: 0–9 English zero..nine, 10–19 German null..neun (SHD's order).

Deterministic: the same seed and options give the same events, byte for byte (every random draw is keyed
by (seed, split, clip index); the cochlea's fibres by `audio_conversion.clip_seed`; eSpeak NG, which carries
state from one utterance to the next, speaks each fixed chunk of clips afresh: `speak_chunk`). Builds are
cached in the eventlm cache (`$EVENTLM_CACHE`, else ~/.cache/eventlm) under a name keyed by version and options.

Why 64 channels at 22,050 Hz (DEFAULTS): the README's main job must build and train within a few minutes on
2 CPU cores. eSpeak speaks at 22,050 Hz, so no resampling; 64 channels give ~500 events per clip (700 give
~10× more, and a 10× longer training epoch) and convert in ~0.05 s per clip; 104 voices × 20 words = 2,080
clips build in about 2 minutes on a busy 2-core box (synthesis ~20 ms and the chain ~50 ms per clip).
"""

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .synthetic import SPLITS, default_cache_dir, load_cached_build

SPOKEN_DIGITS_VERSION = 2  # bump whenever the generator's output changes: cached builds are keyed by it
WORDS = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
}
CLASS_NAMES = tuple(f"{lang}-{word}" for lang, words in WORDS.items() for word in words)
TOKENIZER_PRESET = "spoken-digits"  # tokenizers/spoken-digits.json: the sensor of the default build

DEFAULTS = dict(
    num_channels=64,  # cochlea channels (SHD: 700)
    sample_rate=22050,  # the chain's input rate: eSpeak NG's own
    clips_per_voice=1,  # clips per (voice, class)
    validation_voices=10,  # voice variants held out for validation
    test_voices=20,  # voice variants held out for test
    max_voices=None,  # use only this many variants (after the seeded shuffle); None: all the wheel ships
    speed=(120, 260),  # words per minute, uniform
    pitch=(20, 80),  # eSpeak pitch 0-100, uniform
    pitch_range=(10, 90),  # eSpeak pitch range 0-100, uniform
    snr_db=(10.0, 30.0),  # white noise, signal-to-noise ratio in dB (against the speech's RMS), uniform
    lead_seconds=(0.0, 0.1),  # silence (noise only) before the word, uniform
)


def voices() -> List[str]:
    """The eSpeak NG voice variants the espeakng-loader wheel ships (sorted names; "m3", "klatt2", "Andy", ...)."""
    from .speech import SpeechUnavailable

    try:
        import espeakng_loader
    except ImportError:
        raise SpeechUnavailable("the spoken-digit dataset needs the espeakng-loader wheel: pip install "
                                "espeakng-loader") from None
    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def voice_splits(seed: int = 0, validation_voices: int = DEFAULTS["validation_voices"],
                 test_voices: int = DEFAULTS["test_voices"], max_voices: Optional[int] = None) -> Dict[str, List[str]]:
    """{split: voice variants}: the variants shuffled with `seed`, dealt to test, validation, then train (disjoint)."""
    names = voices()
    order = np.random.default_rng([seed, 7]).permutation(len(names))
    chosen = [names[i] for i in order[:max_voices or len(names)]]
    if min(validation_voices, test_voices) < 1 or validation_voices + test_voices >= len(chosen):
        raise ValueError(f"validation_voices={validation_voices} and test_voices={test_voices} must be >= 1 and "
                         f"leave voices for training ({len(chosen)} voice variants in use)")
    test, validation = chosen[:test_voices], chosen[test_voices:test_voices + validation_voices]
    return {"train": sorted(chosen[test_voices + validation_voices:]), "validation": sorted(validation),
            "test": sorted(test)}


def clip_plan(seed: int = 0, **options) -> Dict[str, List[Dict[str, Any]]]:
    """{split: [clip, ...]}: every clip's label, text, voice and draws (speed, pitch, range, SNR, lead-in)."""
    o = _options(options)
    plan = {}
    for split_id, (split, names) in enumerate(voice_splits(seed, o["validation_voices"], o["test_voices"],
                                                           o["max_voices"]).items()):
        clips = [(voice, label, k) for voice in names for label in range(len(CLASS_NAMES))
                 for k in range(o["clips_per_voice"])]
        rng = np.random.default_rng([seed, SPLITS.index(split), 11])
        rows = []
        for i in rng.permutation(len(clips)):  # a shuffled order: a clip's index says nothing about its label
            voice, label, k = clips[i]
            lang = CLASS_NAMES[label].split("-")[0]
            rows.append(dict(
                label=label, text=WORDS[lang][label % 10], voice=f"{lang}+{voice}", speaker=voice,
                speed=int(rng.integers(o["speed"][0], o["speed"][1] + 1)),
                pitch=int(rng.integers(o["pitch"][0], o["pitch"][1] + 1)),
                pitch_range=int(rng.integers(o["pitch_range"][0], o["pitch_range"][1] + 1)),
                snr_db=float(rng.uniform(*o["snr_db"])), lead_seconds=float(rng.uniform(*o["lead_seconds"])),
                noise_seed=[int(seed), split_id, len(rows)]))
        plan[split] = rows
    return plan


def speak_chunk(clips: List[Dict[str, Any]]) -> Tuple[List[np.ndarray], int]:
    """(the planned clips' words as float32 waveforms, their sample rate), spoken by a fresh copy of eSpeak NG.

    eSpeak NG keeps state from one utterance to the next (the phase of its pitch flutter, a static counter no
    call resets), so the same call gives other samples later in a process. Each chunk is therefore spoken, in
    order, by a forked child of this process (which itself never speaks): a chunk's audio depends only on the
    chunk. Where there is no fork (Windows) the chunk is spoken here (reproducible only in a fresh process).
    """
    from .speech import synthesize

    def speak():
        said = [synthesize(c["text"], voice=c["voice"], speed=c["speed"], pitch=c["pitch"],
                           pitch_range=c["pitch_range"], seed=c["noise_seed"][-1]) for c in clips]
        return [wave for wave, _ in said], (said[0][1] if said else 0)

    if not hasattr(os, "fork"):
        return speak()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: speak, send (count, rate, lengths, samples), leave without Python's clean-up
        status = 1
        try:
            os.close(read)
            waves, rate = speak()
            with os.fdopen(write, "wb") as f:
                f.write(np.asarray([len(waves), rate] + [len(w) for w in waves], np.int64).tobytes())
                f.write(np.concatenate(waves).astype(np.float32).tobytes() if waves else b"")
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or len(data) < 16:
        raise RuntimeError(f"eSpeak NG failed in its child process (exit status {status}) speaking a chunk of "
                           f"{len(clips)} clips")
    count, rate = (int(v) for v in np.frombuffer(data[:16], np.int64))
    lengths = np.frombuffer(data[16:8 * (count + 2)], np.int64)
    samples = np.frombuffer(data[8 * (count + 2):], np.float32)
    return (np.split(samples, np.cumsum(lengths)[:-1]) if count else []), rate


def add_noise(wave: np.ndarray, rate: int, clip: Dict[str, Any], sample_rate: int) -> np.ndarray:
    """A spoken clip at sample_rate with its lead-in and white noise at its SNR (float32)."""
    if rate != sample_rate:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(rate), int(sample_rate))
        wave = resample_poly(wave.astype(np.float64), sample_rate // g, rate // g)
    rng = np.random.default_rng(clip["noise_seed"])
    wave = np.concatenate([np.zeros(int(round(clip["lead_seconds"] * sample_rate))), wave.astype(np.float64)])
    rms = float(np.sqrt(np.mean(wave ** 2))) if wave.size else 0.0
    noise = rng.normal(0.0, rms * 10 ** (-clip["snr_db"] / 20.0) if rms > 0 else 0.0, wave.size)  # SNR = 20 log10(rms/σ)
    return (wave + noise).astype(np.float32)


def _wav_bytes(job) -> List[bytes]:
    """Worker: a chunk of planned clips → their audio (with noise) as float WAV bytes (what the converter decodes)."""
    import soundfile

    clips, sample_rate = job
    waves, rate = speak_chunk(clips)
    out = []
    for clip, wave in zip(clips, waves):
        buf = io.BytesIO()
        soundfile.write(buf, add_noise(wave, rate, clip, sample_rate), sample_rate, format="WAV", subtype="FLOAT")
        out.append(buf.getvalue())
    return out


def _synthesize_all(plan, sample_rate: int, workers: int) -> Dict[str, List[bytes]]:
    """Every clip's WAV bytes, chunk by chunk in spawned worker processes (which fork a speaker per chunk: never
    from this process, which may run JAX's threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(split, i, rows[i:i + 64]) for split, rows in plan.items() for i in range(0, len(rows), 64)]
    with ProcessPoolExecutor(max(1, min(workers, len(jobs))), mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_wav_bytes, [(rows, sample_rate) for _, _, rows in jobs]))
    out = {split: [] for split in plan}
    for (split, _, _), wavs in zip(jobs, results):
        out[split] += wavs
    return out


def _options(options) -> Dict[str, Any]:
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown spoken-digit dataset option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **options}
    if o["clips_per_voice"] < 1:
        raise ValueError(f"clips_per_voice must be at least 1, got {o['clips_per_voice']}")
    return o


def _params(seed, options) -> Dict[str, Any]:
    o = _options(options)
    try:
        from importlib.metadata import version

        espeak = version("espeakng-loader")
    except Exception:  # not installed: the build itself will say so
        espeak = None
    return {"version": SPOKEN_DIGITS_VERSION, "seed": int(seed), "espeakng_loader": espeak,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in o.items()}}


def spoken_digits_path(cache_dir=None, seed: int = 0, **options) -> Path:
    """Where the build with these parameters lives inside `cache_dir` (a name keyed by version and parameters)."""
    key = hashlib.sha256(json.dumps(_params(seed, options), sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir or default_cache_dir()) / "datasets" / f"spoken-digits-v{SPOKEN_DIGITS_VERSION}-{key}"


def make_spoken_digits_dataset(output_dir=None, seed: int = 0, *, overwrite: bool = False,
                               workers: Optional[int] = None, progress: bool = True, **options) -> Path:
    """Synthesise and convert the spoken-digit dataset (train / validation / test, Hub layout + card); returns the folder.

    output_dir=None builds into the eventlm cache (`spoken_digits_path`) and reuses a finished build there.
    Options: see DEFAULTS. workers: processes for synthesis and conversion (default: the CPUs this process may use).
    """
    from datasets import Audio, ClassLabel, Dataset, DatasetDict

    from ..resources import available_cpus
    from .audio_conversion import audio_to_hub_dataset

    if output_dir is None:
        output_dir = spoken_digits_path(None, seed, **options)
        if (Path(output_dir) / "README.md").is_file() and not overwrite:
            return Path(output_dir)
    o, params = _options(options), _params(seed, options)
    n = workers or available_cpus()
    plan = clip_plan(seed, **options)
    wavs = _synthesize_all(plan, o["sample_rate"], n)
    splits = {}
    for split, rows in plan.items():
        audio = [{"bytes": b, "path": f"{c['speaker']}-{c['text']}-{i}.wav"} for i, (c, b) in enumerate(zip(rows, wavs[split]))]
        ds = Dataset.from_dict({"audio": audio, "label": [c["label"] for c in rows],
                                "speaker": [c["speaker"] for c in rows]})  # from_dict, then cast: no torchcodec
        splits[split] = ds.cast_column("audio", Audio()).cast_column("label", ClassLabel(names=list(CLASS_NAMES)))
    voice_counts = {s: len(set(c["speaker"] for c in rows)) for s, rows in plan.items()}
    about = (
        f"Spoken digits 0–9 in English and German (20 classes, as SHD), synthesised offline with eSpeak NG by "
        f"`eventlm.data.spoken_digits` (seed {seed}): {voice_counts['train']} voice variants in train, "
        f"{voice_counts['validation']} other ones in validation and {voice_counts['test']} never-heard ones in test "
        f"(the `speaker` column), speed {o['speed'][0]}–{o['speed'][1]} wpm, pitch {o['pitch'][0]}–{o['pitch'][1]}, "
        f"pitch range {o['pitch_range'][0]}–{o['pitch_range'][1]}, white noise at {o['snr_db'][0]:g}–"
        f"{o['snr_db'][1]:g} dB SNR, a lead-in of {o['lead_seconds'][0]:g}–{o['lead_seconds'][1]:g} s.\n\n")
    return audio_to_hub_dataset(
        DatasetDict(splits), output_dir, sample_rate=o["sample_rate"], num_channels=o["num_channels"], seed=seed,
        workers=n, license="apache-2.0", pretty_name="eventlm spoken digits (eSpeak NG, English + German)",
        overwrite=overwrite, progress=progress, about=about, source_name="eSpeak NG speech (espeakng-loader)",
        card_extra={"generator": params})


def load_spoken_digits_dataset(cache_dir=None, seed: int = 0, **options):
    """The spoken-digit dataset as a datasets.DatasetDict in numpy format (built into `cache_dir` on first use)."""
    folder = spoken_digits_path(cache_dir, seed, **options)
    return load_cached_build(folder, lambda out: make_spoken_digits_dataset(out, seed, **options), cache_dir)
