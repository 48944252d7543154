"""Event datasets as Hugging Face Hub datasets.

`tonic_to_hub_dataset` (any tonic dataset: SHD, SSC, DVSGesture, NMNIST, ...) and `folder_to_hub_dataset`
(recordings in class-named subfolders, like datasets' imagefolder) write the one Hub layout of eventlm:

    output_dir/
      README.md                      dataset card: YAML (license, tags, sensor, configs, features, splits)
      samples.png                    one sample per class (raster for audio, accumulated frame for cameras)
      data/{split}-00000-of-00003.parquet ...

one row per sample with columns t (list<int64>, µs), x, y (list<int16>), p (list<int8>), label
(ClassLabel) and metadata columns (speaker, user, lighting, source) where the source has them. The folder
loads back with `datasets.load_dataset(output_dir)` (also with streaming=True) and goes to the Hub with
`push_dataset_to_hub`. Samples are streamed into shards: a dataset never has to fit in memory. The
folder is built in a temporary folder beside `output_dir` and renamed into place only when everything
succeeded, so a failed conversion leaves nothing half-written.
"""

import logging
import operator
import os
import re
import shutil
import socket
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .._io import _umask
from ..errors import EventDataError
from .events import EVENT_DTYPE, EventStream, as_events, check_sensor_size, sensor_size_of
from .readers import read_events
from .visualize import is_audio_sensor, plot_class_samples, sample_preview

logger = logging.getLogger(__name__)

DATA_DIR = "data"
PICTURE = "samples.png"
_SPLIT_RE = re.compile(r"^\w+$")
# metadata columns a tonic dataset may carry per sample: column name -> attributes that hold it
_TONIC_METADATA = {"speaker": ("speaker", "_speaker", "speakers"), "user": ("users", "user"), "lighting": ("lighting",)}
# folder names that mean a split in an event folder (like datasets' imagefolder)
_SPLIT_FOLDERS = {"train": "train", "training": "train", "test": "test", "testing": "test", "validation": "validation",
                  "valid": "validation", "val": "validation", "dev": "validation"}
_SKIP_SUFFIXES = {".md", ".txt", ".json", ".csv", ".yaml", ".yml", ".png", ".jpg", ".py"}


class _Split(NamedTuple):
    """One split of a source: its samples as (events, label, metadata) and what is known before reading them."""

    name: str
    length: Optional[int]
    samples: Callable[[], Iterator[Tuple[Any, int, Dict[str, Any]]]]
    sensor_size: Optional[Tuple[int, int, int]]


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------


def tonic_to_hub_dataset(
    dataset,
    output_dir,
    *,
    split: Optional[str] = None,
    sensor_size: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    **kwargs,
) -> Path:
    """Convert a tonic dataset (or {split: dataset}) into a Hub dataset folder at `output_dir`; returns its path.

    dataset: an object with __len__ and __getitem__ returning (events structured array, integer target),
      as every tonic dataset; or a mapping {split name: such a dataset}. A single dataset becomes split
      `split` (default: "train", or "test" for a tonic dataset built with train=False).
    sensor_size: (W, H, P); default the dataset's `sensor_size` attribute (inferred from the events if absent).
    class_names: default the dataset's `classes`; without either, labels are named "0", "1", ...
    Metadata columns are taken from the dataset's per-sample attributes where present: speaker (SHD/SSC),
    user and lighting (DVSGesture), source (the sample's file, for datasets that keep one file per sample).
    Other keyword arguments: see `write_hub_dataset` (license, sort, samples_per_shard, max_shard_size,
    overwrite, pretty_name, description, sensor_type, progress).
    """
    if isinstance(dataset, Mapping):
        datasets_by_split = dict(dataset)
        if split is not None:
            raise ValueError(f"split={split!r} only applies to a single dataset; a mapping already names its splits")
    else:
        datasets_by_split = {split or ("test" if getattr(dataset, "train", True) is False else "train"): dataset}
    if not datasets_by_split:
        raise ValueError("tonic_to_hub_dataset got an empty mapping of splits")
    first = next(iter(datasets_by_split.values()))
    if class_names is None:
        class_names = _tonic_class_names(first)
    if sensor_size is None:
        sensor_size = getattr(first, "sensor_size", None)
    splits = [_tonic_split(name, ds, sensor_size) for name, ds in datasets_by_split.items()]
    kwargs.setdefault("source_name", f"tonic.datasets.{type(first).__name__}")
    return write_hub_dataset(splits, output_dir, sensor_size=sensor_size, class_names=class_names, **kwargs)


def folder_to_hub_dataset(
    folder,
    output_dir,
    *,
    sensor_size: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    reader: Optional[Callable] = None,
    reader_options: Optional[Dict[str, Any]] = None,
    extensions: Optional[Sequence[str]] = None,
    skip_unreadable: bool = False,
    **kwargs,
) -> Path:
    """Convert an event folder into a Hub dataset folder at `output_dir`; returns its path.

    Layout (like datasets' imagefolder): `folder/<class>/<recordings>` gives one split "train";
    `folder/<split>/<class>/<recordings>` with split folders train/validation/test (also valid, val, dev,
    training, testing) gives those splits. Recordings may sit in nested folders below their class folder.
    Each file is read with `eventlm.data.read_events(path, **reader_options)` (or `reader(path, **options)`,
    returning an EventStream or a structured array); `extensions` (e.g. [".aedat4"]) limits which files
    count, otherwise every file but notes and pictures (.md, .txt, .json, .csv, .yaml, .png, ...) does.
    class_names: the label order (default: the sorted class folder names); the `source` column holds the
    file's path relative to its split folder. A file the reader cannot read (EventDataError) stops the
    conversion, naming it, and leaves `output_dir` as it was; with skip_unreadable=True it is skipped with a
    warning instead, and the card counts and names the skipped files. Other keyword arguments: see
    `write_hub_dataset`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"event folder {str(folder)!r} does not exist or is not a folder")
    layout = _folder_layout(folder, extensions)
    found = sorted({cls for split in layout.values() for cls in split})
    if class_names is None:
        class_names = found
    unknown = [c for c in found if c not in list(class_names)]
    if unknown:
        raise ValueError(f"class folder(s) {unknown} of {str(folder)!r} are not in class_names={list(class_names)}")
    read = reader or read_events
    options = dict(reader_options or {})
    index = {name: i for i, name in enumerate(class_names)}
    skipped: Optional[List[str]] = [] if skip_unreadable else None  # filled while the splits are written
    splits = [_folder_split(name, root, files, index, read, options, skipped) for name, (root, files) in _flatten(layout)]
    if skipped is not None:  # the card is written after the samples, when the list is complete
        kwargs["card_extra"] = {**(kwargs.get("card_extra") or {}), "skipped_unreadable": skipped}
    kwargs.setdefault("source_name", f"event folder {folder.name}")
    return write_hub_dataset(splits, output_dir, sensor_size=sensor_size, class_names=class_names, **kwargs)


def to_hub_dataset(source, output_dir, **kwargs) -> Path:
    """Convert `source` into a Hub dataset folder: a path to an event folder, a tonic dataset, or {split: dataset}."""
    if isinstance(source, (str, os.PathLike)):
        return folder_to_hub_dataset(source, output_dir, **kwargs)
    if isinstance(source, Mapping) or (hasattr(source, "__getitem__") and hasattr(source, "__len__")):
        return tonic_to_hub_dataset(source, output_dir, **kwargs)
    raise TypeError(
        f"to_hub_dataset converts an event folder (path), a tonic dataset or a {{split: dataset}} mapping; "
        f"got {type(source).__name__}"
    )


def tonic_dataset_splits(dataset, save_to, splits: Optional[Sequence[str]] = None, **kwargs) -> Dict[str, Any]:
    """Instantiate a tonic dataset class per split: {split: instance} (downloads as tonic does if files are missing).

    dataset: a class, a tonic.datasets name ("SHD", "DVSGesture", ...) or a dotted path "package.module.Class".
    Classes with a `split` argument (SSC) give train / validation / test; with `train` (SHD, DVSGesture,
    NMNIST) train / test; others one "train" split. `splits` keeps only the named ones.
    """
    import importlib
    import inspect

    cls = dataset
    if isinstance(dataset, str):
        if "." in dataset.strip("."):
            module, _, name = dataset.rpartition(".")
            cls = getattr(importlib.import_module(module), name, None)
        else:
            import tonic.datasets

            cls = getattr(tonic.datasets, dataset, None)
        if cls is None:
            raise ValueError(f"unknown dataset {dataset!r}: give a tonic.datasets class name (SHD, SSC, DVSGesture, "
                             f"NMNIST, ...) or a dotted path package.module.Class")
    params = inspect.signature(cls).parameters
    if "split" in params:
        available = {"train": {"split": "train"}, "validation": {"split": "valid"}, "test": {"split": "test"}}
    elif "train" in params:
        available = {"train": {"train": True}, "test": {"train": False}}
    else:
        available = {"train": {}}
    wanted = list(splits) if splits else list(available)
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise ValueError(f"{cls.__name__} has no split(s) {unknown}; it has {list(available)}")
    return {s: cls(save_to=str(save_to), **available[s], **kwargs) for s in wanted}


@dataclass
class HubDatasetArguments:
    """Where and how a conversion writes (shared by the conversion scripts and the `eventlm` command)."""

    output_dir: str = field(metadata={"help": "Folder to write the Hub dataset into (must not exist or be empty)."})
    license: str = field(default="other", metadata={"help": "License of the data (Hub license id)."})
    pretty_name: Optional[str] = field(default=None, metadata={"help": "Title of the dataset card."})
    sort: bool = field(default=False, metadata={"help": "Sort events by time instead of rejecting unsorted ones."})
    samples_per_shard: Optional[int] = field(default=None, metadata={"help": "Close a parquet shard after N samples."})
    max_shard_size: str = field(default="500MB", metadata={"help": "Close a parquet shard at this many event bytes."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty output_dir."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the result to the Hub."})
    hub_dataset_id: Optional[str] = field(default=None, metadata={"help": "Dataset repo id for --push_to_hub."})
    hub_private: Optional[bool] = field(default=None, metadata={"help": "Create the Hub repo as private."})

    def __post_init__(self):
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError("--push_to_hub needs --hub_dataset_id (e.g. someone/shd-events)")

    def writer_kwargs(self) -> Dict[str, Any]:
        return {"license": self.license, "pretty_name": self.pretty_name, "sort": self.sort,
                "overwrite": self.overwrite, "samples_per_shard": self.samples_per_shard,
                "max_shard_size": self.max_shard_size, "progress": True}

    def finish(self, folder) -> Path:
        """Push the converted folder when asked; returns it."""
        if self.push_to_hub:
            push_dataset_to_hub(folder, self.hub_dataset_id, private=self.hub_private)
        return Path(folder)


def push_dataset_to_hub(
    folder,
    repo_id: str,
    *,
    private: Optional[bool] = None,
    token: Optional[Union[str, bool]] = None,
    revision: Optional[str] = None,
    commit_message: str = "Upload event dataset with eventlm",
    create_pr: bool = False,
):
    """Upload a converted dataset folder to the Hub dataset repo `repo_id` (created if missing); returns the commit."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    readme = folder / "README.md"
    if not readme.is_file() or not (folder / DATA_DIR).is_dir():
        raise ValueError(
            f"{str(folder)!r} is not a converted event dataset (no README.md and {DATA_DIR}/ folder); "
            f"build it with to_hub_dataset first"
        )
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="dataset",
        revision=revision,
        commit_message=commit_message,
        create_pr=create_pr,
        allow_patterns=["README.md", PICTURE, f"{DATA_DIR}/*.parquet"],
    )


def load_dataset_metadata(path_or_repo_id: str, **hub_kwargs) -> Dict[str, Any]:
    """The eventlm block of a dataset card (sensor_size, sensor_type, time_unit, ...) plus class_names and splits."""
    from huggingface_hub import DatasetCard

    path = Path(path_or_repo_id)
    card = DatasetCard.load(path / "README.md" if path.is_dir() else path_or_repo_id, repo_type="dataset", **hub_kwargs)
    data = card.data.to_dict()
    meta = dict(data.get("eventlm") or {})
    if "sensor_size" in meta:
        meta["sensor_size"] = tuple(meta["sensor_size"])
    info = data.get("dataset_info") or {}
    for feature in info.get("features", []):
        if feature.get("name") == "label" and isinstance(feature.get("dtype"), dict):
            names = feature["dtype"]["class_label"]["names"]
            meta["class_names"] = [names[k] for k in sorted(names, key=int)]
    meta["splits"] = {s["name"]: s["num_examples"] for s in info.get("splits", [])}
    return meta


# ----------------------------------------------------------------------------------------------------------
# the writer
# ----------------------------------------------------------------------------------------------------------


def write_hub_dataset(
    splits: Sequence[_Split],
    output_dir,
    *,
    sensor_size: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    sensor_type: Optional[str] = None,
    license: str = "other",
    pretty_name: Optional[str] = None,
    description: Optional[str] = None,
    source_name: Optional[str] = None,
    tags: Sequence[str] = (),
    sort: bool = False,
    samples_per_shard: Optional[int] = None,
    max_shard_size: Union[int, str] = "500MB",
    overwrite: bool = False,
    progress: bool = False,
    card_extra: Optional[Dict[str, Any]] = None,
) -> Path:
    """Stream the samples of `splits` into parquet shards + card + picture in `output_dir` (atomically).

    sort: sort each sample's events by time instead of rejecting unsorted ones. samples_per_shard /
    max_shard_size ("500MB" or bytes of raw events): a shard closes when it reaches either. overwrite:
    replace an existing non-empty output_dir (otherwise an error). Every sample is validated with
    `as_events` against the sensor: a bad sample stops the conversion with a ValueError naming the split,
    the sample and the offending field and value, and leaves output_dir as it was.
    """
    from datasets.utils.py_utils import convert_file_size_to_int

    names = [s.name for s in splits]
    for name in names:
        if not _SPLIT_RE.match(name):
            raise ValueError(f"split name {name!r} must be letters, digits or underscores (e.g. train, validation)")
    if len(set(names)) != len(names):
        raise ValueError(f"split names must be unique, got {names}")
    if samples_per_shard is not None and samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be a positive number of samples, got {samples_per_shard}")
    max_bytes = convert_file_size_to_int(max_shard_size)
    if max_bytes < 1:
        raise ValueError(f"max_shard_size must be positive, got {max_shard_size!r}")
    if sensor_size is not None:
        sensor_size = check_sensor_size(sensor_size)
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(set(class_names)) != len(class_names) or not class_names:
            raise ValueError(f"class_names must be distinct and non-empty, got {class_names}")
    if sensor_type is not None and sensor_type not in ("audio", "camera"):
        raise ValueError(f"sensor_type must be 'audio' or 'camera', got {sensor_type!r}")

    with _atomic_output_dir(output_dir, overwrite) as tmp:
        (tmp / DATA_DIR).mkdir()
        stats, previews, seen_sensor, meta_columns = [], {}, None, {}
        for split in splits:
            st = _write_split(split, tmp / DATA_DIR, sensor_size, class_names, sort, samples_per_shard, max_bytes,
                              previews, progress)
            stats.append(st)
            seen_sensor = st["sensor"] if seen_sensor is None else tuple(map(max, seen_sensor, st["sensor"]))
            for k, v in st["metadata"].items():
                if meta_columns.setdefault(k, v) != v:
                    raise ValueError(f"metadata column {k!r} has type {v} in split {split.name!r} but "
                                     f"{meta_columns[k]} in an earlier split")
        final_sensor = sensor_size or seen_sensor or (1, 1, 1)
        num_labels = max([s["max_label"] + 1 for s in stats] + [1])
        final_names = class_names or [str(i) for i in range(num_labels)]
        features = _features(final_names, meta_columns)
        for st in stats:
            if st["metadata"] != meta_columns:  # a split without some metadata column: add it as nulls
                _add_missing_columns(st["files"], features)
        kind = sensor_type or ("audio" if is_audio_sensor(final_sensor) else "camera")
        picture = None
        if previews:
            named = {label: (final_names[label], pv) for label, pv in previews.items()}
            plot_class_samples(named, final_sensor, tmp / PICTURE, title=pretty_name)
            picture = PICTURE
        _write_card(tmp, stats, features, final_sensor, kind, license, pretty_name, description, source_name,
                    tags, picture, card_extra)
    return Path(output_dir)


def _write_split(split: _Split, data_dir: Path, sensor_size, class_names, sort, samples_per_shard, max_bytes,
                 previews, progress) -> Dict[str, Any]:
    """Write one split's shards; returns its statistics (counts, files, sensor seen, metadata columns)."""
    writer = _ShardWriter(data_dir, split.name, class_names, samples_per_shard, max_bytes)
    sensor = sensor_size or split.sensor_size
    seen = (1, 1, 1)
    max_label = -1
    num_events = 0
    iterator = split.samples()
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=split.length, desc=f"converting {split.name}", unit="sample")
    try:
        for i, (raw, label, metadata) in enumerate(iterator):
            where = f"split {split.name!r}, sample {i}" + (f" ({metadata['source']})" if "source" in metadata else "")
            declared = tuple(raw.sensor_size) if isinstance(raw, EventStream) else None  # a reader's sensor
            try:
                events = as_events(raw, sensor, sort=sort)
            except (ValueError, TypeError) as err:
                raise (TypeError if isinstance(err, TypeError) else EventDataError)(f"{where}: {err}", **(
                    {} if isinstance(err, TypeError) else {"row": i})) from err
            label = _as_label(label, where, class_names)
            writer.add(events, label, metadata)
            num_events += len(events)
            max_label = max(max_label, label)
            if declared or len(events):
                seen = tuple(map(max, seen, declared or sensor_size_of(events)))
            if label not in previews and len(events):
                previews[label] = sample_preview(events, sensor or seen)
    finally:
        files = writer.close()
    if writer.num_rows == 0:
        raise ValueError(f"split {split.name!r} has no samples; remove it or check the source")
    return {"name": split.name, "num_examples": writer.num_rows, "num_events": num_events,
            "num_bytes": writer.raw_bytes, "files": files, "sensor": tuple(sensor) if sensor else seen,
            "max_label": max_label, "metadata": writer.metadata_types}


class _ShardWriter:
    """Streams the rows of one split into parquet files data/{split}-{i:05d}-of-{n:05d}.parquet.

    Rows are buffered into row groups (≤ 1000 samples or ~64 MB of events); a shard closes at
    samples_per_shard rows or max_bytes of raw event bytes. Shards are renamed with their final count at close.
    """

    ROW_GROUP_ROWS = 1000
    ROW_GROUP_BYTES = 64 << 20

    def __init__(self, data_dir: Path, split: str, class_names, samples_per_shard, max_bytes):
        self.data_dir, self.split = data_dir, split
        self.class_names = class_names
        self.samples_per_shard, self.max_bytes = samples_per_shard, max_bytes
        self.files: List[Path] = []
        self.metadata_types: Dict[str, str] = {}
        self.num_rows = 0
        self.raw_bytes = 0
        self._writer = None
        self._shard_rows = self._shard_bytes = 0
        self._buffer: List[Tuple[np.ndarray, int, Dict[str, Any]]] = []
        self._buffer_bytes = 0

    def add(self, events: np.ndarray, label: int, metadata: Dict[str, Any]):
        if self.num_rows == 0:
            self.metadata_types = {k: _metadata_type(k, v) for k, v in metadata.items()}
        if set(metadata) != set(self.metadata_types):
            raise ValueError(f"split {self.split!r}: sample {self.num_rows} has metadata {sorted(metadata)} but the "
                             f"first sample had {sorted(self.metadata_types)}")
        self._buffer.append((events, label, metadata))
        size = events.nbytes + 8
        self._buffer_bytes += size
        self._shard_bytes += size
        self._shard_rows += 1
        self.num_rows += 1
        self.raw_bytes += size
        if len(self._buffer) >= self.ROW_GROUP_ROWS or self._buffer_bytes >= self.ROW_GROUP_BYTES:
            self._flush()
        full = self.samples_per_shard and self._shard_rows >= self.samples_per_shard
        if full or self._shard_bytes >= self.max_bytes:
            self._close_shard()

    def _flush(self):
        import pyarrow.parquet as pq

        if not self._buffer:
            return
        table = _rows_to_table(self._buffer, _features(self.class_names, self.metadata_types))
        if self._writer is None:
            path = self.data_dir / f"{self.split}-{len(self.files):05d}.parquet"
            self.files.append(path)
            self._writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        self._writer.write_table(table, row_group_size=max(len(self._buffer), 1))
        self._buffer, self._buffer_bytes = [], 0

    def _close_shard(self):
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._shard_rows = self._shard_bytes = 0

    def close(self) -> List[Path]:
        """Close the last shard and give every shard its final name; returns the final paths."""
        try:
            self._close_shard()
        finally:
            if self._writer is not None:
                self._writer.close()
        n = len(self.files)
        final = [path.with_name(f"{self.split}-{i:05d}-of-{n:05d}.parquet") for i, path in enumerate(self.files)]
        for path, target in zip(self.files, final):
            os.replace(path, target)
        self.files = final
        return final


def _rows_to_table(rows, features):
    """Buffered (events, label, metadata) rows → one pyarrow table with list columns (no per-event Python)."""
    import pyarrow as pa

    lengths = np.array([len(e) for e, _, _ in rows], np.int64)
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])  # offsets[i] = first event of row i
    events = np.concatenate([e for e, _, _ in rows]) if lengths.sum() else np.zeros(0, EVENT_DTYPE)
    offset_type = pa.int32() if offsets[-1] < 2**31 else pa.int64()
    off = pa.array(offsets, offset_type)
    columns = {}
    for name, arrow_type in (("t", pa.int64()), ("x", pa.int16()), ("y", pa.int16()), ("p", pa.int8())):
        values = pa.array(np.ascontiguousarray(events[name]), arrow_type)
        cls = pa.ListArray if offset_type == pa.int32() else pa.LargeListArray
        columns[name] = cls.from_arrays(off, values)
    columns["label"] = pa.array([label for _, label, _ in rows], pa.int64())
    for key in rows[0][2]:
        columns[key] = pa.array([_metadata_value(m[key]) for _, _, m in rows], features[key].pa_type)
    schema = features.arrow_schema
    if features["t"].pa_type != columns["t"].type:  # > 2^31 events in one row group: large lists
        schema = pa.schema([pa.field(k, columns[k].type) for k in features], metadata=schema.metadata)
    return pa.table([columns[k] for k in features], schema=schema)


def _features(class_names, metadata_types: Dict[str, str]):
    """The Hub features: event lists, the label (ClassLabel when names are known) and metadata columns."""
    from datasets import ClassLabel, Features, List, Value

    feats = {"t": List(Value("int64")), "x": List(Value("int16")), "y": List(Value("int16")), "p": List(Value("int8")),
             "label": ClassLabel(names=list(class_names)) if class_names else Value("int64")}
    feats.update({k: Value(v) for k, v in metadata_types.items()})
    return Features(feats)


def _add_missing_columns(files: List[Path], features):
    """Rewrite shards that lack some metadata columns (other splits have them) with those columns as nulls."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in files:
        table = pq.read_table(path)
        for name in features:
            if name not in table.column_names:
                kind = features[name].pa_type
                table = table.append_column(pa.field(name, kind), pa.nulls(len(table), kind))
        table = table.select(list(features)).cast(features.arrow_schema)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)


def _metadata_type(name, value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int64"
    if isinstance(value, (float, np.floating)):
        return "float64"
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        return "string"
    raise ValueError(f"metadata column {name!r} holds {value!r} ({type(value).__name__}); "
                     f"expected int, float, str or bool")


def _metadata_value(value):
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace")
    return value.item() if isinstance(value, np.generic) else value


def _as_label(label, where, class_names) -> int:
    try:
        value = operator.index(np.asarray(label).item() if np.ndim(label) == 0 and hasattr(label, "item") else label)
    except TypeError:
        raise ValueError(f"{where}: target {label!r} is not an integer class index") from None
    if value < 0 or (class_names is not None and value >= len(class_names)):
        limit = f"< {len(class_names)} ({len(class_names)} class names)" if class_names is not None else ">= 0"
        raise ValueError(f"{where}: label {value} is outside the classes (must be {limit})")
    return value


_OWNER = ".eventlm-conversion"  # "host pid" of the conversion filling a temporary folder


def _remove_killed_partials(out: Path) -> None:
    """Remove the temporary folders beside `out` that a killed conversion left: their process (on this host)
    is gone. One whose owner is unknown (killed before it was written) counts once it is an hour old."""
    import time

    for partial in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            host, pid = (partial / _OWNER).read_text().split()
            if host != socket.gethostname():
                continue  # another machine's conversion (a shared file system): not ours to judge
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        except (OSError, ValueError):
            if time.time() - partial.stat().st_mtime < 3600:
                continue
        logger.warning("removing %s, left by a killed conversion", partial)
        shutil.rmtree(partial, ignore_errors=True)


@contextmanager
def _atomic_output_dir(output_dir, overwrite: bool):
    """Yield an empty temporary folder beside output_dir; on success it replaces output_dir, on failure it vanishes."""
    out = Path(output_dir).absolute()
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output_dir {str(out)!r} exists and is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_killed_partials(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / _OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a dataset folder is an ordinary folder
        yield tmp
        (tmp / _OWNER).unlink()
        if out.is_dir() and any(out.iterdir()):  # overwrite: move the old folder aside, then swap
            if not overwrite:  # it appeared while we converted (another process)
                raise ValueError(f"output_dir {str(out)!r} was filled by someone else during the conversion; "
                                 f"pass overwrite=True to replace it")
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)  # also replaces an empty folder
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# sources
# ----------------------------------------------------------------------------------------------------------


def _tonic_class_names(dataset) -> Optional[List[str]]:
    classes = getattr(dataset, "classes", None)
    if classes is None:
        return None
    if isinstance(classes, Mapping):  # {name: index}
        return [str(name) for name, _ in sorted(classes.items(), key=lambda kv: kv[1])]
    return [c.decode("utf-8") if isinstance(c, (bytes, np.bytes_)) else str(c) for c in list(classes)]


def _tonic_metadata(dataset, n) -> Dict[str, Sequence]:
    """Per-sample metadata attributes of a tonic dataset: {column: values of length n}."""
    found = {}
    for column, attributes in _TONIC_METADATA.items():
        for attr in attributes:
            try:
                values = getattr(dataset, attr, None)
            except Exception:  # a property that needs files the dataset does not have
                values = None
            if values is not None and not callable(values) and not isinstance(values, (str, bytes)) \
                    and hasattr(values, "__len__") and len(values) == n:
                found[column] = values
                break
    data = getattr(dataset, "data", None)
    if isinstance(data, (list, tuple)) and len(data) == n and n and isinstance(data[0], (str, os.PathLike)):
        root = getattr(dataset, "location_on_system", None)
        found["source"] = [_relative(d, root) for d in data]
    return found


def _relative(path, root) -> str:
    try:
        return Path(path).relative_to(root).as_posix() if root else Path(path).name
    except ValueError:
        return Path(path).name


def _tonic_split(name: str, dataset, sensor_size) -> _Split:
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(f"split {name!r}: expected a tonic dataset (with __len__ and __getitem__), "
                        f"got {type(dataset).__name__}")
    n = len(dataset)
    metadata = _tonic_metadata(dataset, n)

    def samples():
        for i in range(n):
            item = dataset[i]
            if not (isinstance(item, tuple) and len(item) == 2):
                raise ValueError(f"split {name!r}, sample {i}: expected (events, target), got {type(item).__name__}")
            yield item[0], item[1], {k: v[i] for k, v in metadata.items()}

    size = getattr(dataset, "sensor_size", None)
    return _Split(name, n, samples, check_sensor_size(size) if size is not None and sensor_size is None else None)


def _folder_layout(folder: Path, extensions) -> Dict[str, Dict[str, Tuple[Path, List[Path]]]]:
    """{split: {class: (split root, [files])}} of an event folder (split folders optional)."""
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_dirs = [d for d in subdirs if d.name.lower() in _SPLIT_FOLDERS]
    if split_dirs and len(split_dirs) != len(subdirs):
        others = [d.name for d in subdirs if d not in split_dirs]
        raise ValueError(f"event folder {str(folder)!r} mixes split folders {[d.name for d in split_dirs]} with other "
                         f"folders {others}; use either <split>/<class>/ or <class>/ throughout")
    roots = {_SPLIT_FOLDERS[d.name.lower()]: d for d in split_dirs} if split_dirs else {"train": folder}
    if split_dirs and len(roots) != len(split_dirs):
        raise ValueError(f"event folder {str(folder)!r} has several folders for one split: "
                         f"{[d.name for d in split_dirs]}")
    exts = None if extensions is None else {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    layout = {}
    for split in sorted(roots, key=("train", "validation", "test").index):
        root = roots[split]
        classes = {}
        for cls_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
            files = sorted(p for p in cls_dir.rglob("*") if p.is_file() and _is_recording(p, cls_dir, exts))
            if files:
                classes[cls_dir.name] = (root, files)
        if not classes:
            which = "" if exts is None else f" with extensions {sorted(exts)}"
            raise ValueError(f"event folder {str(root)!r} holds no class folders with recordings "
                             f"(expected <class>/<recording files>{which})")
        layout[split] = classes
    return layout


def _is_recording(path: Path, below: Path, exts) -> bool:
    if any(part.startswith(".") for part in path.relative_to(below).parts):
        return False
    suffix = path.suffix.lower()
    return suffix in exts if exts is not None else suffix not in _SKIP_SUFFIXES


def _flatten(layout):
    for split, classes in layout.items():
        root = next(iter(classes.values()))[0]
        yield split, (root, [(cls, f) for cls, (_, files) in sorted(classes.items()) for f in files])


def _folder_split(name, root: Path, files, index, read, options, skipped: Optional[List[str]] = None) -> _Split:
    """The split's samples read from `files`; an unreadable file is appended to `skipped` (when given) or raised."""
    def samples():
        for cls, path in files:
            try:
                stream = read(path, **options)
            except (ValueError, TypeError, OSError) as err:
                if isinstance(err, (TypeError, FileNotFoundError, PermissionError)):  # the call's or the disk's
                    raise type(err)(f"split {name!r}: cannot read {str(path)!r}: {err}") from err
                if skipped is None:
                    raise EventDataError(f"split {name!r}: cannot read {str(path)!r}: {err}; pass "
                                         f"skip_unreadable=True (eventlm convert-dataset --skip-unreadable) to skip "
                                         f"it, counted in the card", path=path) from err
                where = f"{name}/{path.relative_to(root).as_posix()}"
                logger.warning("skipping unreadable %s: %s", where, err)
                reason = " ".join(str(err).split()).replace(f"{path}: ", "").replace(str(path), path.name)
                skipped.append(f"{where}: {reason[:300]}")  # no local paths in a card that may be pushed
                continue
            yield stream, index[cls], {"source": path.relative_to(root).as_posix()}

    return _Split(name, len(files), samples, None)


# ----------------------------------------------------------------------------------------------------------
# the dataset card
# ----------------------------------------------------------------------------------------------------------


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _write_card(folder: Path, stats, features, sensor_size, kind, license, pretty_name, description, source_name,
                tags, picture, card_extra):
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    from ..resources import data_dir

    total = sum(s["num_examples"] for s in stats)
    all_tags = ["neuromorphic", "event-audio" if kind == "audio" else "event-camera", "eventlm", *tags]
    card_data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        tags=list(dict.fromkeys(all_tags)),
        task_categories=["audio-classification" if kind == "audio" else "video-classification"],
        size_categories=[_size_category(total)],
        eventlm={"sensor_size": list(sensor_size), "sensor_type": kind, "time_unit": "us",
                 "num_events": {s["name"]: s["num_events"] for s in stats}, **(card_extra or {})},
    )
    MetadataConfigs({"default": {"data_files": [{"split": s["name"], "path": f"{DATA_DIR}/{s['name']}-*"}
                                                for s in stats]}}).to_dataset_card_data(card_data)
    splits = SplitDict()
    for s in stats:
        splits.add(SplitInfo(name=s["name"], num_bytes=s["num_bytes"], num_examples=s["num_examples"]))
    download = sum(f.stat().st_size for s in stats for f in s["files"])
    info = DatasetInfo(features=features, splits=splits, download_size=download,
                       dataset_size=sum(s["num_bytes"] for s in stats))
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    names = features["label"].names if hasattr(features["label"], "names") else None
    card = DatasetCard.from_template(
        card_data,
        template_path=str(data_dir("model_cards") / "dataset_card.md"),
        title=pretty_name or "Event dataset",
        description=description,
        source_name=source_name,
        sensor_size=tuple(sensor_size),
        sensor_type=kind,
        splits=stats,
        class_names=names,
        metadata_columns=[k for k in features if k not in ("t", "x", "y", "p", "label")],
        picture=picture,
        total_events=sum(s["num_events"] for s in stats),
        skipped=(card_extra or {}).get("skipped_unreadable"),
        mean_events={s["name"]: s["num_events"] / max(s["num_examples"], 1) for s in stats},
    )
    card.save(folder / "README.md")
