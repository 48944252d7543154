"""The `eventlm` command: the scripts' jobs behind one entry point.

    eventlm train [flags | args.yaml]        sequence classification (scripts/run_classification.py)
    eventlm pretrain [flags | args.yaml]     next-event pretraining (scripts/run_next_event_pretraining.py)
    eventlm evaluate [flags | args.yaml]     evaluation of a trained model (scripts/run_evaluation.py)
    eventlm convert-dataset SOURCE OUTPUT    an event folder or a tonic dataset -> a Hub dataset folder
    eventlm launch --num_processes N -- train ...   N local processes as one multi-process run
    eventlm convert-audio SOURCE OUTPUT      an audio dataset or folder -> an SHD-style spike dataset

train / pretrain / evaluate take --num_processes, --process_id and --coordinator_address HOST:PORT (or
JAX_NUM_PROCESSES / JAX_PROCESS_ID / JAX_COORDINATOR_ADDRESS, or a SLURM job) to run on several machines.

`eventlm <command> --help` lists a command's flags. A user's mistake prints one line `eventlm <command>:
error: …` and exits with 2; `--debug` (or EVENTLM_DEBUG=1) shows the traceback instead. Other modules add commands with
`register_command(name, "module:function", help)` (e.g. `stream`, `convert-checkpoint`); a command whose
module is not installed says so instead of failing at start-up.
"""

import argparse
import importlib
import os
import sys
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence


# what a command raises for a user's mistake (a bad file, flag value or dataset): printed as one line
USER_ERRORS = (ValueError, OSError, TypeError, KeyError)


class Command(NamedTuple):
    target: str  # "module:function"; the function takes the remaining argv
    help: str


COMMANDS: Dict[str, Command] = {}


def register_command(name: str, target: str, help: str) -> None:
    """Add (or replace) a subcommand: `target` is "module:function", called with the remaining arguments."""
    if ":" not in target:
        raise ValueError(f"command target must be 'module:function', got {target!r}")
    COMMANDS[name] = Command(target, help)


def _resolve(command: Command) -> Optional[Callable]:
    module_name, func = command.target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):  # the command's own module is absent
            return None
        raise
    return getattr(module, func, None)


def _job(runner_name: str, command: str, description: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        from .training import pipelines
        from .training.arguments import DataArguments, ModelArguments, TrainingArguments, parse_args

        pipelines.setup_logging()
        model_args, data_args, training_args = parse_args(
            (ModelArguments, DataArguments, TrainingArguments), argv, command=command,
            description=f"{description}. Flags, or one args.yaml / args.json file holding them.")
        try:
            getattr(pipelines, runner_name)(model_args, data_args, training_args)
        except Exception:
            _leave_distributed_run()
            raise
        return 0

    return run


def _leave_distributed_run() -> None:
    """A process of a multi-process run that fails prints its error and exits at once: jax's orderly shutdown
    would wait (--distributed_timeout) at a barrier for peers that are gone or still in a step with it."""
    import jax

    if jax.distributed.is_initialized() and jax.process_count() > 1:
        import os
        import traceback

        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


train = _job("run_classification", "train", "Train a sequence classifier on an event dataset")
pretrain = _job("run_next_event_pretraining", "pretrain", "Pretrain a model by next-event prediction")
evaluate = _job("run_evaluation", "evaluate", "Evaluate a trained model on a dataset split")


def convert_dataset(argv: Sequence[str]) -> int:
    """eventlm convert-dataset: eventlm.data.hub.folder_to_hub_dataset / tonic_to_hub_dataset (+ push)."""
    parser = argparse.ArgumentParser(
        prog="eventlm convert-dataset",
        description="Convert an event folder (recordings in class-named subfolders, optionally under "
                    "train/validation/test) or a tonic dataset into a Hub dataset folder with a card.")
    parser.add_argument("source", help="event folder, or the tonic dataset's download folder with --tonic")
    parser.add_argument("output_dir", help="where the Hub dataset folder is written")
    parser.add_argument("--tonic", metavar="NAME", help="a tonic.datasets class (SHD, SSC, DVSGesture, NMNIST, ...)")
    parser.add_argument("--format", help="read_events format= for the folder's recordings")
    parser.add_argument("--reader-options", default=None, help="read_events options as JSON")
    parser.add_argument("--sensor-size", type=int, nargs=3, metavar=("W", "H", "P"), help="sensor size")
    parser.add_argument("--extensions", nargs="*", help="only files with these extensions count (e.g. .aedat4)")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="skip files the reader cannot read (counted and named in the card) instead of stopping")
    parser.add_argument("--license", default=None, help="dataset licence for the card")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the result to this dataset repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo private")
    parser.add_argument("--token", default=None, help="Hub token")
    args = parser.parse_args(list(argv))
    from .data import hub

    common = dict(overwrite=args.overwrite)
    if args.license:
        common["license"] = args.license
    if args.sensor_size:
        common["sensor_size"] = tuple(args.sensor_size)
    if args.tonic:
        import tonic

        cls = getattr(tonic.datasets, args.tonic, None)
        if cls is None:
            parser.error(f"tonic.datasets has no dataset {args.tonic!r}")
        splits = {}
        for split, kwargs in _tonic_split_kwargs(cls).items():
            splits[split] = cls(save_to=args.source, **kwargs)
        folder = hub.tonic_to_hub_dataset(splits, args.output_dir, **common)
    else:
        from .data.readers import parse_reader_options

        options = parse_reader_options(args.reader_options)
        if args.format:
            options["format"] = args.format
        folder = hub.folder_to_hub_dataset(args.source, args.output_dir, reader_options=options,
                                           extensions=args.extensions, skip_unreadable=args.skip_unreadable,
                                           **common)
    print(f"wrote {folder}")
    if args.push_to_hub:
        hub.push_dataset_to_hub(folder, args.push_to_hub, private=args.private or None, token=args.token)
        print(f"pushed to {args.push_to_hub}")
    return 0


def _tonic_split_kwargs(cls) -> Dict[str, dict]:
    """The constructor arguments of a tonic dataset's splits (train=True/False, or split="...")."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if "split" in params:
        return {"train": {"split": "train"}, "validation": {"split": "valid"}, "test": {"split": "test"}}
    if "train" in params:
        return {"train": {"train": True}, "test": {"train": False}}
    return {"train": {}}


register_command("train", "eventlm.cli:train", "train a sequence classifier (run_classification)")
register_command("pretrain", "eventlm.cli:pretrain", "next-event pretraining (run_next_event_pretraining)")
register_command("evaluate", "eventlm.cli:evaluate", "evaluate a trained model (run_evaluation)")
register_command("convert-dataset", "eventlm.cli:convert_dataset", "event folder / tonic dataset -> Hub dataset")
register_command("launch", "eventlm.launch:main", "start N local processes of a command as one multi-process run")
register_command("convert-audio", "eventlm.data.audio_conversion:main",
                 "audio dataset / folder -> SHD-style spike dataset (Heidelberg cochlea chain)")
# added by other parts of eventlm; listed here so that `eventlm --help` shows where they go
register_command("stream", "eventlm.streaming:main",
                 "run a model event chunk by event chunk on a recording")
register_command("energy", "eventlm.energy:main", "per-layer firing rates, SOPs, MACs and theoretical energy")
register_command("convert-checkpoint", "eventlm.models.eventssm.convert_original_eventssm_checkpoint:main",
                 "convert a checkpoint of the reference event-ssm code")
register_command("convert-sdt-checkpoint", "eventlm.models.spike_driven_transformer.convert_original_sdt_checkpoint:main",
                 "convert a checkpoint of the original Spike-Driven Transformer code (BICLab)")


def _usage() -> str:
    lines = ["usage: eventlm <command> [arguments]", "", "commands:"]
    width = max(len(n) for n in COMMANDS)
    for name, command in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {command.help}")
    lines += ["", "eventlm <command> --help shows a command's arguments."]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"eventlm {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"eventlm: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    func = _resolve(COMMANDS[name])
    if func is None:
        print(f"eventlm: the command {name!r} is not available in this installation "
              f"({COMMANDS[name].target} is missing)", file=sys.stderr)
        return 2
    debug = "--debug" in rest or os.environ.get("EVENTLM_DEBUG", "") not in ("", "0")
    rest = [a for a in rest if a != "--debug"]
    try:
        result = func(rest)
    except USER_ERRORS as err:  # a user's mistake: one line (the traceback with --debug)
        if debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"eventlm {name}: error: {message}  (--debug or EVENTLM_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
