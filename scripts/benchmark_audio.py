"""Benchmark audio → spike events: eventlm's Heidelberg chain beside lauscher (the reference) on the same clips.

    python scripts/benchmark_audio.py [--clips 8] [--channels 700] [--sample-rate 48000] [--lauscher-clips 1]
                                      [--audio FILE ...] [--workers 2]

Clips: eSpeak NG spoken digits (English and German) or the given audio files, at --sample-rate. Prints
seconds of audio converted per second of wall time and the parity with lauscher on its clips. lauscher
takes minutes per clip at 700 channels: --lauscher-clips 0 leaves it out.
"""

import argparse

import numpy as np

from eventlm.data.benchmark import benchmark_audio, format_audio_table, machine_description, spoken_digit_clips


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="spoken-digit clips (ignored with --audio)")
    parser.add_argument("--audio", nargs="*", help="audio files to convert instead (mono)")
    parser.add_argument("--channels", type=int, default=700)
    parser.add_argument("--sample-rate", type=int, default=48000, help="rate the clips are converted at (SHD: 48000)")
    parser.add_argument("--lauscher-clips", type=int, default=1, help="clips lauscher converts (0: none)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the parallel row (1: none)")
    args = parser.parse_args(argv)
    if args.audio:
        import soundfile
        from scipy.signal import resample_poly

        clips = []
        for path in args.audio:
            wave, rate = soundfile.read(path, dtype="float64")
            wave = wave.mean(axis=1) if wave.ndim == 2 else wave
            g = np.gcd(rate, args.sample_rate)
            clips.append((path, wave if rate == args.sample_rate else resample_poly(wave, args.sample_rate // g, rate // g)))
    else:
        clips = spoken_digit_clips(args.clips, args.sample_rate)
    rows, parity = benchmark_audio(clips, args.sample_rate, args.channels, args.lauscher_clips, args.workers)
    print(format_audio_table(rows, parity, machine_description(), args.channels, args.sample_rate))
    return rows, parity


if __name__ == "__main__":
    main()
