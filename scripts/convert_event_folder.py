#!/usr/bin/env python
"""Convert an event folder (recordings in class-named subfolders, optionally below train/validation/test
folders) into a Hub event dataset folder, optionally pushed.

    python scripts/convert_event_folder.py --folder recordings/ --output_dir my-events \
        --sensor_size 640 480 2 [--format evt3] [--push_to_hub --hub_dataset_id someone/my-events]

Thin shell over eventlm.data.hub.folder_to_hub_dataset; files are read with eventlm.data.read_events.
"""

from dataclasses import dataclass, field
from typing import List, Optional

from transformers import HfArgumentParser

from eventlm.data.hub import HubDatasetArguments, folder_to_hub_dataset


@dataclass
class FolderArguments:
    folder: str = field(metadata={"help": "The event folder: <class>/<files> or <split>/<class>/<files>."})
    sensor_size: Optional[List[int]] = field(default=None, metadata={"help": "W H P (default: from the recordings)."})
    class_names: Optional[List[str]] = field(default=None, metadata={"help": "Label order (default: sorted folders)."})
    format: Optional[str] = field(default=None, metadata={"help": "Recording format for read_events (default: guessed)."})
    extensions: Optional[List[str]] = field(default=None, metadata={"help": "Only files with these extensions."})


def main(argv=None):
    source, output = HfArgumentParser((FolderArguments, HubDatasetArguments)).parse_args_into_dataclasses(args=argv)
    folder = folder_to_hub_dataset(
        source.folder, output.output_dir, sensor_size=source.sensor_size, class_names=source.class_names,
        reader_options={"format": source.format} if source.format else None, extensions=source.extensions,
        **output.writer_kwargs(),
    )
    print(f"wrote {folder}")
    return output.finish(folder)


if __name__ == "__main__":
    main()
