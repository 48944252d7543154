"""Offline speech synthesis with eSpeak NG (the `espeakng-loader` wheel ships the library and its voices).

`synthesize(text, voice="en+m3", speed=175, pitch=50, seed=0)` → (float32 waveform in [-1, 1], sample rate) through
the library's C API (ctypes, synchronous retrieval into a buffer; no audio device, no network). The
library keeps global state, so calls are serialised by a lock; use processes, not threads, to go wide.
"""

import ctypes
import threading
from typing import Tuple

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth returns when done: no background thread (a forked child can synthesise)
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class SpeechUnavailable(RuntimeError):
    """eSpeak NG could not be loaded (the espeakng-loader wheel is missing or its library does not load)."""


class _Engine:
    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise SpeechUnavailable("speech synthesis needs the espeakng-loader wheel: pip install espeakng-loader") \
                from None
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as err:
            raise SpeechUnavailable(f"cannot load eSpeak NG from espeakng-loader: {err}") from None
        data = espeakng_loader.get_data_path().encode()
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, ctypes.c_char_p(data), 0)
        if self.sample_rate <= 0:
            raise SpeechUnavailable(f"eSpeak NG failed to initialise (data folder {data.decode()!r})")
        self.chunks = []

        def collect(wav, n, events):
            if n > 0:
                self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _CALLBACK(collect)  # kept alive as long as the engine
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        # eSpeak NG varies its voices with random draws (its own generator and libc's rand()): both are seeded
        # before every utterance, so the same call gives the same samples
        self._set_seed = getattr(self.lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]
        self._srand = ctypes.CDLL(None).srand
        self._srand.argtypes = [ctypes.c_uint]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lock = threading.Lock()

    def say(self, text: str, voice: str, speed: int, pitch: int, pitch_range: int, seed: int = 0) -> np.ndarray:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {voice!r}; use a language code with an optional variant, "
                                 f"e.g. 'en', 'de+f2', 'en-us+m3'")
            for param, value in ((_ESPEAK_RATE, speed), (_ESPEAK_PITCH, pitch), (_ESPEAK_RANGE, pitch_range),
                                 (_ESPEAK_VOLUME, 100)):
                self.lib.espeak_SetParameter(param, int(value), 0)
            self.chunks = []
            if self._set_seed is not None:
                self._set_seed(int(seed))
            self._srand(int(seed) & 0xFFFFFFFF)
            raw = text.encode("utf-8") + b"\0"
            status = self.lib.espeak_Synth(raw, len(raw), 0, 0, 0, 0, None, None)
            self.lib.espeak_Synchronize()
            if status != 0:
                raise RuntimeError(f"eSpeak NG failed to synthesise {text!r} (status {status})")
            chunks, self.chunks = self.chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


_ENGINE = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Engine:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return _ENGINE


def synthesize(text: str, voice: str = "en", speed: int = 175, pitch: int = 50,
               pitch_range: int = 50, seed: int = 0) -> Tuple[np.ndarray, int]:
    """Speak `text`: (float32 mono waveform in [-1, 1], sample rate in Hz; eSpeak NG's is 22050).

    voice: a language with an optional variant ("en", "de", "en+f3", "de+m2"); speed: words per minute
    (80–450); pitch and pitch_range: 0–100; seed: eSpeak NG's random variation (the same seed, the same samples).
    """
    if not 80 <= speed <= 450:
        raise ValueError(f"speed must be 80-450 words per minute, got {speed}")
    for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
        if not 0 <= value <= 100:
            raise ValueError(f"{name} must be 0-100, got {value}")
    engine = _engine()
    wave = engine.say(text, voice, speed, pitch, pitch_range, seed)
    return wave.astype(np.float32) / 32768.0, engine.sample_rate
