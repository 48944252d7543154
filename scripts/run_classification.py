#!/usr/bin/env python
"""Train (or fine-tune) an event sequence classifier (EventSSM by default); select on validation, evaluate on test.

    python scripts/run_classification.py                       # the embedded spoken digits, a few minutes on CPU
    python scripts/run_classification.py --preset shd --dataset_name someone/shd-events --output_dir out/shd
    python scripts/run_classification.py --model_name_or_path out/pt --dataset_name ...   # fine-tune a pretrained backbone
    python scripts/run_classification.py args.yaml             # the same flags from a JSON / YAML file

Writes into --output_dir (default out/classification): the model (config.json, model.safetensors), the
tokenizer, README.md (model card), train/eval/all_results.json (eval_* on the test split), metrics.jsonl,
TensorBoard logs, training_curves.png, confusion_matrix.png and checkpoints/ (a rerun resumes).
"""

import sys

from eventlm.training.arguments import DataArguments, ModelArguments, TrainingArguments, parse_args
from eventlm.training.pipelines import run_classification, setup_logging


def main(argv=None):
    setup_logging()
    model_args, data_args, training_args = parse_args((ModelArguments, DataArguments, TrainingArguments), argv, command="train")
    return run_classification(model_args, data_args, training_args)


if __name__ == "__main__":
    main(sys.argv[1:])
