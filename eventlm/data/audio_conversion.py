"""Any audio dataset → an SHD-style spike dataset in the Hub layout (`eventlm convert-audio SOURCE OUT`).

SOURCE is a `datasets` dataset with an `Audio` column (a Hub repo id, a folder `load_dataset` or
`load_from_disk` reads, or a Dataset / DatasetDict object), or a folder of audio files in class folders
(optionally under train/validation/test, as an event folder: `folder/<class>/<files>`). Every clip goes
through `eventlm.data.audio.audio_to_events` (the Heidelberg chain) in worker processes, a chunk of clips
at a time; each finished chunk is saved (atomically) in a work folder beside OUT, so a killed
conversion continues where it stopped and no clip is converted or written twice. When every chunk is
there, the existing writer (`eventlm.data.hub.write_hub_dataset`) writes the parquet shards and the
card (how the events were made, the chain's parameters, the source and its licence, what was skipped)
and the work folder is removed.

Audio is decoded with soundfile (libsndfile: wav, flac, ogg, mp3) from the files or the Audio column's
stored bytes and resampled to `sample_rate` with scipy's polyphase filter (datasets' own decoding needs
torchcodec and FFmpeg, which eventlm does not require). Stereo clips are mixed down (counted), silent
clips become empty streams (counted, with a warning), clips that cannot be decoded are named in one
line, skipped and counted in the card.
"""

import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import EventDataError
from ..resources import available_cpus
from .audio import SAMPLERS, SHD_PARAMETERS, audio_to_events, check_sample_rate
from .events import EVENT_DTYPE
from .hub import _Split, _folder_layout, write_hub_dataset

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
_SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id")
_WORK_VERSION = 2  # bump when a chunk converted before would differ (2: the float32 membrane)


# clips are followed by silence up to a multiple of this, so clips of similar length share one transfer matrix
DEFAULT_BUCKET_SECONDS = 0.25


@dataclass(frozen=True)
class ChainOptions:
    """How clips become events (all of it goes into the work folder's fingerprint and the card)."""

    sample_rate: int = 48000
    num_channels: int = 700
    seed: int = 0
    sampler: str = "interval"
    bucket_seconds: float = DEFAULT_BUCKET_SECONDS

    def pad_to(self) -> Optional[int]:
        return max(1, int(round(self.bucket_seconds * self.sample_rate))) if self.bucket_seconds else None


class _Clip:
    """One clip to convert: where its audio is (a file or bytes), its label and metadata; picklable."""

    __slots__ = ("name", "path", "data", "label", "metadata")

    def __init__(self, name, path, data, label, metadata):
        self.name, self.path, self.data, self.label, self.metadata = name, path, data, label, metadata


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------


def audio_to_hub_dataset(
    source,
    output_dir,
    *,
    audio_column: str = "audio",
    label_column: str = "label",
    splits: Optional[Sequence[str]] = None,
    sample_rate: int = 48000,
    num_channels: int = 700,
    seed: int = 0,
    sampler: str = "interval",
    bucket_seconds: float = DEFAULT_BUCKET_SECONDS,
    workers: Optional[int] = None,
    chunk_size: int = 32,
    license: Optional[str] = None,
    pretty_name: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
    about: str = "",
    source_name: Optional[str] = None,
    card_extra: Optional[Dict[str, Any]] = None,
    **writer_kwargs,
) -> Path:
    """Convert an audio dataset or folder into a Hub event dataset at `output_dir` (see the module); returns it.

    sample_rate: the rate every clip is resampled to before the chain (SHD: 48000); num_channels, seed,
    sampler: see `audio_to_events`; bucket_seconds: clips are followed by silence up to a multiple of
    this (0: none, exactly lauscher's chain per clip, slower: the transfer matrix is computed per
    length); workers: processes (default: the CPUs this process may use); chunk_size: clips per saved
    chunk. license: the card's licence (default: the source's, where it names one). about: text that
    opens the card's description; source_name: how the card names the source; card_extra: more entries
    for the card's eventlm block. Other keyword arguments go to `write_hub_dataset`.
    """
    options = ChainOptions(check_sample_rate(sample_rate), int(num_channels), int(seed), sampler, float(bucket_seconds))
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if bucket_seconds < 0:
        raise ValueError(f"bucket_seconds must be >= 0 (0: no padding), got {bucket_seconds}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of clips, got {chunk_size}")
    out = Path(output_dir).absolute()
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output_dir {str(out)!r} exists and is not empty; pass overwrite=True (--overwrite) to "
                         f"replace it")
    clips, class_names, found_name, source_license = _collect(source, audio_column, label_column, splits)
    source_name = source_name or found_name
    work = out.parent / f".{out.name}.audio-work"
    fingerprint = _fingerprint(options, source_name, {s: [_clip_key(c) for c in cs] for s, cs in clips.items()})
    _open_work_folder(work, fingerprint)
    jobs = [(split, i, cs[i:i + chunk_size]) for split, cs in clips.items() for i in range(0, len(cs), chunk_size)]
    _run_chunks(work, jobs, options, workers, progress)
    report = _report(work, jobs)
    if report["silent"]:
        logger.warning("%d silent clip(s) gave no events; kept as empty streams", report["silent"])
    if report["stereo_mixed_down"]:
        logger.warning("%d stereo clip(s) mixed down to mono (the mean of their channels)", report["stereo_mixed_down"])
    if report["corrupt_skipped"]:
        logger.warning("%d undecodable clip(s) skipped (named in the card)", report["corrupt_skipped"])
    splits_out = [_chunk_split(work, name, [j for j in jobs if j[0] == name]) for name in clips]
    licence = license or source_license or "other"
    description = about + _description(options, source_name, source_license, report)
    card_extra = {**(card_extra or {}), "cochlea": {"model": "Heidelberg chain (Cramer et al. 2020), eventlm.data.audio",
                              **{k: v for k, v in vars(options).items()}, "pad_to_samples": options.pad_to(),
                              "parameters": SHD_PARAMETERS.to_dict()},
                  "conversion": {"source": source_name, "source_license": source_license, **report}}
    path = write_hub_dataset(splits_out, out, sensor_size=(options.num_channels, 1, 1), class_names=class_names,
                             sensor_type="audio", license=licence, pretty_name=pretty_name, description=description,
                             source_name=source_name, tags=("audio-to-spikes", "cochlea-model"), overwrite=overwrite,
                             progress=progress, card_extra=card_extra, **writer_kwargs)
    shutil.rmtree(work, ignore_errors=True)
    return path


# ----------------------------------------------------------------------------------------------------------
# sources
# ----------------------------------------------------------------------------------------------------------


def _collect(source, audio_column, label_column, splits) -> Tuple[Dict[str, List[_Clip]], List[str], str, Optional[str]]:
    """{split: clips}, class names, a name for the source and its licence (None if unknown)."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir() and not _is_datasets_folder(Path(source)):
        clips, names = _folder_clips(Path(source))
        return _keep(clips, splits), names, f"audio folder {Path(source).name}", None
    dataset = _load_datasets(source)
    return _datasets_clips(dataset, audio_column, label_column, splits, source)


def _keep(clips, splits):
    if splits is None:
        return clips
    missing = [s for s in splits if s not in clips]
    if missing:
        raise ValueError(f"split(s) {missing} are not in the source; it has {list(clips)}")
    return {s: clips[s] for s in splits}


def _folder_clips(folder: Path):
    layout = _folder_layout(folder, AUDIO_EXTENSIONS)
    names = sorted({cls for split in layout.values() for cls in split})
    index = {n: i for i, n in enumerate(names)}
    clips = {}
    for split, classes in layout.items():
        clips[split] = [_Clip(f.relative_to(root).as_posix(), str(f), None, index[cls],
                              {"source": f.relative_to(root).as_posix()})
                        for cls, (root, files) in sorted(classes.items()) for f in files]
    return clips, names


def _is_datasets_folder(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()


def _load_datasets(source):
    import datasets

    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        return source if isinstance(source, datasets.DatasetDict) else datasets.DatasetDict({"train": source})
    if isinstance(source, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise ValueError("convert-audio needs a map-style dataset (random access for resuming); "
                         "load it without streaming=True")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir() and _is_datasets_folder(path):
            loaded = datasets.load_from_disk(str(path))
        else:
            try:
                loaded = datasets.load_dataset(str(source))
            except (FileNotFoundError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as err:
                raise ValueError(f"source {str(source)!r} is neither an audio folder nor a dataset datasets can load "
                                 f"({str(err).splitlines()[0]}); give a folder of <class>/<audio files>, a "
                                 f"save_to_disk folder or a Hub repo id") from None
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    raise TypeError(f"source must be a dataset, a Hub repo id or a folder, got {type(source).__name__}")


def _datasets_clips(dataset, audio_column, label_column, splits, source):
    from datasets import Audio, ClassLabel

    first = next(iter(dataset.values()))
    columns = first.column_names
    if audio_column not in columns:
        raise ValueError(f"the dataset has no audio column {audio_column!r} (columns: {columns}); "
                         f"pass --audio-column NAME")
    if label_column not in columns:
        raise ValueError(f"the dataset has no label column {label_column!r} (columns: {columns}); "
                         f"pass --label-column NAME")
    feature = first.features[label_column]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
        to_index = lambda v: int(v)
    else:
        values = sorted({v for ds in dataset.values() for v in ds[label_column]}, key=lambda v: (str(type(v)), v))
        names = [str(v) for v in values]
        lookup = {v: i for i, v in enumerate(values)}
        to_index = lookup.__getitem__
    speaker = next((c for c in _SPEAKER_COLUMNS if c in columns), None)
    clips = {}
    for split, ds in _keep(dict(dataset), splits).items():
        raw = ds.cast_column(audio_column, Audio(decode=False)) if isinstance(ds.features[audio_column], Audio) else ds
        keep = [audio_column, label_column] + ([speaker] if speaker else [])
        rows = raw.select_columns(keep)
        split_clips = []
        for i, row in enumerate(rows):
            audio = row[audio_column]
            name = f"{split}[{i}]" + (f" ({Path(audio['path']).name})" if isinstance(audio, dict) and audio.get("path")
                                      else "")
            metadata = {"source": Path(audio["path"]).name if isinstance(audio, dict) and audio.get("path") else name}
            if speaker:
                metadata["speaker"] = str(row[speaker])
            split_clips.append(_Clip(name, None, _audio_payload(audio), to_index(row[label_column]), metadata))
        clips[split] = split_clips
    licence = getattr(first.info, "license", None) or None
    name = source if isinstance(source, str) else (first.info.dataset_name or "a datasets dataset")
    return clips, names, str(name), licence


def _audio_payload(audio):
    """What a worker decodes: ('bytes', b), ('path', p) or ('array', (samples, rate))."""
    if isinstance(audio, dict):
        if audio.get("bytes") is not None:
            return ("bytes", audio["bytes"])
        if audio.get("array") is not None:
            return ("array", (np.asarray(audio["array"]), int(audio["sampling_rate"])))
        if audio.get("path"):
            return ("path", audio["path"])
    return ("invalid", repr(type(audio).__name__))


# ----------------------------------------------------------------------------------------------------------
# conversion in chunks (the workers)
# ----------------------------------------------------------------------------------------------------------


def load_audio(clip: _Clip, sample_rate: int) -> Tuple[np.ndarray, bool]:
    """(mono float64 waveform at sample_rate, whether it was mixed down) of a clip; ValueError if undecodable."""
    import soundfile
    from scipy.signal import resample_poly

    kind, value = ("path", clip.path) if clip.path is not None else clip.data
    try:
        if kind == "array":
            wave, rate = value
            wave = np.asarray(wave, np.float64)
            wave = wave.T if wave.ndim == 2 and wave.shape[0] < wave.shape[1] else wave  # (channels, samples) → (samples, channels)
        elif kind in ("bytes", "path"):
            wave, rate = soundfile.read(io.BytesIO(value) if kind == "bytes" else value, dtype="float64", always_2d=True)
        else:
            raise ValueError(f"no audio (got {value})")
    except (RuntimeError, ValueError, TypeError, OSError, soundfile.LibsndfileError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        message = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the stored bytes", message)
        raise EventDataError(f"cannot decode audio: {message}") from None
    stereo = wave.ndim == 2 and wave.shape[1] > 1
    wave = wave.mean(axis=1) if wave.ndim == 2 else wave
    if rate != sample_rate:
        g = math.gcd(int(rate), int(sample_rate))
        wave = resample_poly(wave, sample_rate // g, int(rate) // g)
    return wave, stereo


def clip_seed(seed: int, split: str, index: int) -> int:
    """The fibres' seed of clip `index` of `split`: fixed by (seed, split, index), whatever the workers."""
    digest = hashlib.sha256(f"{seed}/{split}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _convert_chunk(args) -> str:
    """Worker: convert one chunk and save it atomically as <work>/chunks/<split>-<start>.npz; returns its path."""
    work, split, start, clips, options = args
    from .audio import TRANSFER_CACHE

    before, TRANSFER_CACHE.directory = TRANSFER_CACHE.directory, Path(work) / "transfer"  # shared by the workers
    try:
        return _convert_clips(work, split, start, clips, options)
    finally:
        TRANSFER_CACHE.directory = before


def _convert_clips(work, split, start, clips, options) -> str:
    events, offsets, labels, metadata = [], [0], [], []
    report = {"converted": 0, "silent": 0, "stereo_mixed_down": 0, "corrupt": []}
    for k, clip in enumerate(clips):
        try:
            wave, stereo = load_audio(clip, options.sample_rate)
            if not np.isfinite(wave).all():
                raise ValueError("cannot decode audio: NaN or infinite samples")
        except ValueError as err:
            logger.warning("skipping %s: %s", clip.name, err)
            report["corrupt"].append(f"{clip.name}: {err}")
            continue
        ev = audio_to_events(wave, options.sample_rate, options.num_channels, clip_seed(options.seed, split, start + k),
                             sampler=options.sampler, pad_to=options.pad_to())
        report["converted"] += 1
        report["silent"] += int(len(ev) == 0)
        report["stereo_mixed_down"] += int(stereo)
        events.append(ev)
        offsets.append(offsets[-1] + len(ev))
        labels.append(clip.label)
        metadata.append(clip.metadata)
    path = Path(work) / "chunks" / f"{split}-{start:09d}.npz"
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, events=np.concatenate(events) if events else np.zeros(0, EVENT_DTYPE),
                 offsets=np.asarray(offsets, np.int64), labels=np.asarray(labels, np.int64),
                 metadata=np.asarray(json.dumps(metadata)), report=np.asarray(json.dumps(report)))
    os.replace(tmp, path)
    return str(path)


def _chunk_path(work: Path, split: str, start: int) -> Path:
    return work / "chunks" / f"{split}-{start:09d}.npz"


def _read_chunk(path: Path):
    with np.load(path, allow_pickle=False) as z:
        return (z["events"], z["offsets"], z["labels"], json.loads(str(z["metadata"])), json.loads(str(z["report"])))


def _run_chunks(work: Path, jobs, options: ChainOptions, workers: Optional[int], progress: bool):
    todo = [(str(work), split, start, clips, options) for split, start, clips in jobs
            if not _chunk_path(work, split, start).is_file()]
    total = sum(len(c) for _, _, c in jobs)
    done = total - sum(len(j[3]) for j in todo)
    if done:
        logger.info("resuming: %d of %d clips already converted in %s", done, total, work)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=done, desc="audio → events", unit="clip")
    n = workers or available_cpus()
    try:
        if n <= 1 or len(todo) <= 1:
            for job in todo:
                _convert_chunk(job)
                bar is not None and bar.update(len(job[3]))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn: the parent may hold JAX / threads that a fork would copy in an undefined state
            with ProcessPoolExecutor(min(n, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_convert_chunk, job): len(job[3]) for job in todo}
                for future in as_completed(futures):
                    future.result()
                    bar is not None and bar.update(futures[future])
    finally:
        if bar is not None:
            bar.close()


def _report(work: Path, jobs) -> Dict[str, Any]:
    report = {"converted": 0, "silent": 0, "stereo_mixed_down": 0, "corrupt_skipped": 0, "corrupt_files": []}
    for split, start, _ in jobs:
        r = _read_chunk(_chunk_path(work, split, start))[4]
        for key in ("converted", "silent", "stereo_mixed_down"):
            report[key] += r[key]
        report["corrupt_files"] += r["corrupt"]
    report["corrupt_skipped"] = len(report["corrupt_files"])
    return report


def _chunk_split(work: Path, name: str, jobs) -> _Split:
    def samples() -> Iterator:
        for split, start, _ in jobs:
            events, offsets, labels, metadata, _ = _read_chunk(_chunk_path(work, split, start))
            for i, label in enumerate(labels):
                yield events[offsets[i]:offsets[i + 1]], int(label), metadata[i]

    length = 0
    for split, start, _ in jobs:
        with np.load(_chunk_path(work, split, start), allow_pickle=False) as z:
            length += z["labels"].size
    return _Split(name, length, samples, None)


# ----------------------------------------------------------------------------------------------------------
# the work folder and the card's text
# ----------------------------------------------------------------------------------------------------------


def _fingerprint(options: ChainOptions, source_name: str, names: Dict[str, List[str]]) -> Dict[str, Any]:
    listing = hashlib.sha256(json.dumps(names, sort_keys=True).encode()).hexdigest()
    return {"version": _WORK_VERSION, "options": vars(options), "source": source_name, "clips": listing}


def _clip_key(clip: _Clip) -> str:
    """What identifies a clip's input: its name, label and a digest of its audio (bytes, array, or file size + time)."""
    if clip.path is not None or (clip.data and clip.data[0] == "path"):
        path = Path(clip.path if clip.path is not None else clip.data[1])
        stat = path.stat() if path.exists() else None
        digest = f"{stat.st_size}-{stat.st_mtime_ns}" if stat else "missing"
    elif clip.data[0] == "bytes":
        digest = hashlib.sha256(clip.data[1]).hexdigest()[:16]
    elif clip.data[0] == "array":
        digest = hashlib.sha256(np.ascontiguousarray(clip.data[1][0]).tobytes()).hexdigest()[:16] + f"@{clip.data[1][1]}"
    else:
        digest = "invalid"
    return f"{clip.name}|{clip.label}|{digest}"


def _open_work_folder(work: Path, fingerprint: Dict[str, Any]):
    """Create the work folder, or check that an existing one belongs to this very conversion."""
    marker = work / "conversion.json"
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found != json.loads(json.dumps(fingerprint)):
            raise ValueError(f"{str(work)!r} holds an unfinished conversion with other settings or clips "
                             f"({found['options']}, source {found['source']!r}); rerun that conversion to finish it, "
                             f"or delete the folder to start over")
        return
    (work / "chunks").mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(fingerprint, indent=1))
    os.replace(tmp, marker)


def _description(options: ChainOptions, source_name, source_license, report) -> str:
    p = SHD_PARAMETERS
    pad = (f"each clip is followed by silence up to a multiple of {options.bucket_seconds:g} s, then to the next "
           f"length with a fast FFT (a few ms more; so clips share cached filters)" if options.pad_to() else "no padding (exactly lauscher's chain per clip)")
    lines = [
        f"Spike trains made from the audio of {source_name} (licence: {source_license or 'not stated by the source'}) "
        f"with the Heidelberg cochlea chain of the SHD/SSC datasets (Cramer et al. 2020), as implemented by "
        f"`eventlm.data.audio.audio_to_events` and tested against `lauscher`.",
        "",
        f"- audio resampled to {options.sample_rate} Hz, mono; RMS normalised to {p.rms_level}, Hann ramps over each "
        f"half; {pad}",
        f"- basilar membrane: {options.num_channels} channels (Sieroka et al. 2006; lauscher's parameters), "
        f"output at {options.sample_rate // 2} Hz",
        f"- inner hair cell: Meddis transmitter model; bushy cell: {p.bc_fibres} fibres with "
        f"{p.bc_tau_refrac * 1e3:g} ms dead time into one LIF neuron per channel (τ_mem {p.bc_tau_mem * 1e3:g} ms, "
        f"τ_syn {p.bc_tau_syn * 1e3:g} ms)",
        f"- fibre spikes drawn with the `{options.sampler}` sampler, seed {options.seed} (per clip: "
        f"`eventlm.data.audio_conversion.clip_seed`)",
        f"- clips: {report['converted']} converted, {report['silent']} silent (kept as empty streams), "
        f"{report['stereo_mixed_down']} stereo mixed down to mono, {report['corrupt_skipped']} undecodable "
        f"skipped" + (": " + "; ".join(report["corrupt_files"][:20]) if report["corrupt_files"] else ""),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """eventlm convert-audio SOURCE OUT: `audio_to_hub_dataset` from the command line (+ push)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="eventlm convert-audio",
        description="Convert an audio dataset (a Hub repo id or local datasets folder with an Audio column) or a "
                    "folder of wav/flac files in class folders into an SHD-style spike dataset (Hub layout + card) "
                    "through the Heidelberg cochlea chain. A killed conversion resumes when rerun.")
    parser.add_argument("source", help="Hub dataset repo id, datasets folder, or audio folder <class>/<files>")
    parser.add_argument("output_dir", help="where the Hub event dataset folder is written")
    parser.add_argument("--audio-column", default="audio")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--splits", nargs="*", help="convert only these splits")
    parser.add_argument("--sample-rate", type=int, default=48000, help="rate clips are resampled to (SHD: 48000)")
    parser.add_argument("--num-channels", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", choices=SAMPLERS, default="interval",
                        help="bernoulli: lauscher's per-sample draws (slower); interval: the same process, faster")
    parser.add_argument("--bucket-seconds", type=float, default=DEFAULT_BUCKET_SECONDS,
                        help="pad clips with silence to a multiple of this (0: exactly lauscher's chain, slower)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--chunk-size", type=int, default=32, help="clips per saved chunk")
    parser.add_argument("--license", default=None, help="licence for the card (default: the source's)")
    parser.add_argument("--pretty-name", default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the result to this dataset repo")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        folder = audio_to_hub_dataset(
            args.source, args.output_dir, audio_column=args.audio_column, label_column=args.label_column,
            splits=args.splits, sample_rate=args.sample_rate, num_channels=args.num_channels, seed=args.seed,
            sampler=args.sampler, bucket_seconds=args.bucket_seconds, workers=args.workers,
            chunk_size=args.chunk_size, license=args.license, pretty_name=args.pretty_name,
            overwrite=args.overwrite)
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote {folder}")
    if args.push_to_hub:
        from .hub import push_dataset_to_hub

        push_dataset_to_hub(folder, args.push_to_hub, private=args.private or None)
        print(f"pushed to {args.push_to_hub}")
    return 0
