#!/usr/bin/env python
"""Evaluate a trained eventlm model (a folder or Hub repo id; its class from config.json) on a test split.

    python scripts/run_evaluation.py --model_name_or_path someone/eventssm-shd --dataset_name someone/shd-events
    python scripts/run_evaluation.py --model_name_or_path out/classification      # the embedded spoken digits

Classifiers: eval_accuracy, eval_loss and the confusion matrix; next-event models: NLL per event.
Writes eval_results.json (and confusion_matrix.json / .png) into --output_dir (default out/evaluation).
"""

import sys

from eventlm.training.arguments import DataArguments, ModelArguments, TrainingArguments, parse_args
from eventlm.training.pipelines import run_evaluation, setup_logging


def main(argv=None):
    setup_logging()
    model_args, data_args, training_args = parse_args((ModelArguments, DataArguments, TrainingArguments), argv, command="evaluate")
    return run_evaluation(model_args, data_args, training_args)


if __name__ == "__main__":
    main(sys.argv[1:])
