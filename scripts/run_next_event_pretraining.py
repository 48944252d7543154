#!/usr/bin/env python
"""Pretrain an event model by next-event prediction on unlabelled events (the next event's channel and gap).

    python scripts/run_next_event_pretraining.py --dataset_name my/recordings --preset tiny --output_dir out/pt
    python scripts/run_next_event_pretraining.py --recordings a.aedat b.aedat --recording_format nas \\
        --recording_options '{"address_bytes": 2, "tick_us": 0.2}' --window_events 1024 --output_dir out/pt

Reports the validation negative log-likelihood per event in nats (token and time parts) beside a
context-free baseline (unigram token frequencies + exponential gaps). Fine-tune the result with
run_classification.py --model_name_or_path out/pt (backbone kept, new head).
"""

import sys

from eventlm.training.arguments import DataArguments, ModelArguments, TrainingArguments, parse_args
from eventlm.training.pipelines import run_next_event_pretraining, setup_logging


def main(argv=None):
    setup_logging()
    model_args, data_args, training_args = parse_args((ModelArguments, DataArguments, TrainingArguments), argv, command="pretrain")
    return run_next_event_pretraining(model_args, data_args, training_args)


if __name__ == "__main__":
    main(sys.argv[1:])
