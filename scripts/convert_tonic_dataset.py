#!/usr/bin/env python
"""Convert a tonic dataset (SHD, SSC, DVSGesture, NMNIST, ...) into a Hub event dataset folder, optionally pushed.

    python scripts/convert_tonic_dataset.py --dataset SHD --save_to ~/data --output_dir shd-events \
        --license cc-by-4.0 [--push_to_hub --hub_dataset_id someone/shd-events]

tonic downloads the files into --save_to if they are not there yet. Thin shell over
eventlm.data.hub.tonic_dataset_splits and tonic_to_hub_dataset.
"""

from dataclasses import dataclass, field
from typing import List, Optional

from transformers import HfArgumentParser

from eventlm.data.hub import HubDatasetArguments, tonic_dataset_splits, tonic_to_hub_dataset


@dataclass
class TonicArguments:
    dataset: str = field(metadata={"help": "tonic.datasets class name (SHD, SSC, DVSGesture, NMNIST, ...) or "
                                           "a dotted path package.module.Class"})
    save_to: str = field(metadata={"help": "tonic's save_to folder (where the downloaded files are or will go)"})
    splits: Optional[List[str]] = field(default=None, metadata={"help": "Splits to convert (default: all)."})


def main(argv=None):
    source, output = HfArgumentParser((TonicArguments, HubDatasetArguments)).parse_args_into_dataclasses(args=argv)
    splits = tonic_dataset_splits(source.dataset, source.save_to, source.splits)
    folder = tonic_to_hub_dataset(splits, output.output_dir, **output.writer_kwargs())
    print(f"wrote {folder}")
    return output.finish(folder)


if __name__ == "__main__":
    main()
