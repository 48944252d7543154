"""Auto classes: pick the model class from `config.model_type`, as transformers' Auto classes do.

    model = AutoModelForSequenceClassification.from_pretrained("out/")        # or a Hub repo id
    model = AutoModelForNextEventPrediction.from_config(EventSSMConfig.from_preset("tiny"))

Importing this module (which `import eventlm` does) registers EventSSMConfig with `transformers.AutoConfig`,
so `AutoConfig.from_pretrained(folder)` returns an EventSSMConfig; the models are registered with
`transformers.AutoModel` only where torch happens to be installed. Model classes are imported lazily (jax/flax
load only when a model is built).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections import OrderedDict

from ._quiet import import_transformers_quietly

transformers = import_transformers_quietly()

# model_type -> (module of the config, config class name, module of the models): one line per model family
MODEL_TYPES = OrderedDict([
    ("eventssm", ("eventlm.models.eventssm.configuration_eventssm", "EventSSMConfig",
                  "eventlm.models.eventssm.modeling_flax_eventssm")),
    ("spike-driven-transformer", (
        "eventlm.models.spike_driven_transformer.configuration_spike_driven_transformer", "SpikeDrivenTransformerConfig",
        "eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer")),
])
MODEL_MAPPING_NAMES = OrderedDict([("eventssm", "FlaxEventSSMModel"),
                                   ("spike-driven-transformer", "FlaxSpikeDrivenTransformerModel")])
MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES = OrderedDict([
    ("eventssm", "FlaxEventSSMForSequenceClassification"),
    ("spike-driven-transformer", "FlaxSpikeDrivenTransformerForSequenceClassification"),
])
MODEL_FOR_NEXT_EVENT_PREDICTION_MAPPING_NAMES = OrderedDict([
    ("eventssm", "FlaxEventSSMForNextEventPrediction"),
    ("spike-driven-transformer", "FlaxSpikeDrivenTransformerForNextEventPrediction"),
])


def config_class_for(model_type: str):
    """The config class of a built-in model type (imported on first use)."""
    module, name, _ = MODEL_TYPES[model_type]
    return getattr(importlib.import_module(module), name)


class _BaseAutoModel:
    """from_config / from_pretrained dispatch on model_type; subclasses set `_mapping_names`."""

    _mapping_names: dict[str, str] = {}
    _extra: dict = {}  # model_type -> class, added by register (each Auto class has its own)

    def __init__(self, *args, **kwargs):
        raise EnvironmentError(
            f"{type(self).__name__} is not meant to be instantiated: use {type(self).__name__}.from_pretrained("
            f"folder_or_repo_id) or {type(self).__name__}.from_config(config)"
        )

    @classmethod
    def _known_types(cls) -> list[str]:
        return sorted(set(cls._mapping_names) | set(cls._extra))

    @classmethod
    def model_class_for(cls, model_type: str):
        """The model class this Auto class builds for `model_type` (ValueError listing the known types)."""
        if model_type in cls._extra:
            return cls._extra[model_type]
        if model_type not in cls._mapping_names:
            raise ValueError(
                f"{cls.__name__} does not know model_type {model_type!r}; known model types: {cls._known_types()}. "
                "Check the `model_type` in the model's config.json."
            )
        module = importlib.import_module(MODEL_TYPES[model_type][2])
        return getattr(module, cls._mapping_names[model_type])

    @classmethod
    def register(cls, config_class, model_class, exist_ok: bool = False) -> None:
        """Add a model class for `config_class.model_type` (transformers' Auto*.register)."""
        model_type = config_class.model_type
        known_config = getattr(model_class, "config_class", None)
        if known_config is not None and known_config is not config_class:
            raise ValueError(
                f"{model_class.__name__}.config_class is {known_config.__name__}, not {config_class.__name__}"
            )
        if not exist_ok and (model_type in cls._mapping_names or model_type in cls._extra):
            raise ValueError(f"model_type {model_type!r} is already registered with {cls.__name__}")
        cls._extra[model_type] = model_class

    @classmethod
    def from_config(cls, config, **kwargs):
        """A randomly initialised model of the class matching `config.model_type`."""
        model_type = getattr(config, "model_type", None)
        if not model_type:
            raise TypeError(f"{cls.__name__}.from_config needs a model config, got {type(config).__name__}")
        return cls.model_class_for(model_type).from_config(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, config=None, **kwargs):
        """Load the model saved at a folder or Hub repo id, with the class its config.json's model_type names.

        Hub options (revision, cache_dir, force_download, local_files_only, token) and the model's
        from_pretrained options and config overrides pass through.
        """
        from .modeling_flax_utils import read_config_dict, resolve_pretrained_folder

        hub_options = ("revision", "cache_dir", "force_download", "local_files_only", "token")
        hub_kwargs = {key: kwargs[key] for key in hub_options if key in kwargs}
        folder = resolve_pretrained_folder(pretrained_model_name_or_path, **hub_kwargs)
        if config is not None:
            model_type = getattr(config, "model_type", None)
        else:
            model_type = read_config_dict(folder).get("model_type")
            if not model_type:
                raise ValueError(
                    f"{folder / 'config.json'} has no 'model_type'; known model types: {cls._known_types()}"
                )
        model_class = cls.model_class_for(model_type)
        return model_class.from_pretrained(folder, config=config, **kwargs)


    @classmethod
    def model_classes(cls, model_type: str) -> list:
        """Every class this Auto class knows for `model_type`: the built-in one, then a registered one."""
        out = []
        if model_type in cls._mapping_names:
            out.append(getattr(importlib.import_module(MODEL_TYPES[model_type][2]), cls._mapping_names[model_type]))
        if model_type in cls._extra:
            out.append(cls._extra[model_type])
        return out


class AutoModel(_BaseAutoModel):
    """The bare backbone (hidden states): FlaxEventSSMModel for model_type "eventssm"."""

    _mapping_names = MODEL_MAPPING_NAMES
    _extra: dict = {}


class AutoModelForSequenceClassification(_BaseAutoModel):
    """A sequence classifier: FlaxEventSSMForSequenceClassification for model_type "eventssm"."""

    _mapping_names = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    _extra: dict = {}


class AutoModelForNextEventPrediction(_BaseAutoModel):
    """A next-event (token + time gap) predictor: FlaxEventSSMForNextEventPrediction for "eventssm"."""

    _mapping_names = MODEL_FOR_NEXT_EVENT_PREDICTION_MAPPING_NAMES
    _extra: dict = {}


def auto_class_for_task(task):
    """The Auto class of a task: "classification", "next-event", or None (the bare backbone)."""
    table = {None: AutoModel, "classification": AutoModelForSequenceClassification,
             "next-event": AutoModelForNextEventPrediction}
    if task not in table:
        raise ValueError(f"unknown task {task!r}; eventlm's tasks are 'classification' and 'next-event'")
    return table[task]


def model_class_for_config(config_dict: dict, source="the model"):
    """The class a saved model is loaded with: the one its config.json's `architectures` names (written by
    save_pretrained), among the classes registered for its `model_type`. None when `architectures` is absent
    (a folder saved by eventlm 0.1); ValueError for an unknown type or class."""
    model_type = config_dict.get("model_type")
    if model_type not in MODEL_TYPES and not any(model_type in a._extra for a in _ALL):
        raise ValueError(f"{source} has model_type {model_type!r}; known model types: {AutoModel._known_types()}")
    names = config_dict.get("architectures") or []
    if not names:
        return None
    for auto_class in _ALL:
        for model_class in auto_class.model_classes(model_type):
            if model_class.__name__ == names[0]:
                return model_class
    raise ValueError(f"{source} names the architecture {names[0]!r}, which is not registered for model_type "
                     f"{model_type!r}; register it with eventlm.AutoModel....register(config_class, model_class)")


def load_pretrained(pretrained_model_name_or_path, task=None, **kwargs):
    """Load a saved model with the class its config.json records (`architectures`), or, with `task`, the
    Auto class of that task (e.g. a next-event checkpoint as a classifier). Folders saved before
    `architectures` was written (eventlm 0.1) get the task of the head their weights hold, with a warning."""
    from .modeling_events import task_of_weights
    from .modeling_flax_utils import read_config_dict, resolve_pretrained_folder

    if task is not None:
        return auto_class_for_task(task).from_pretrained(pretrained_model_name_or_path, **kwargs)
    hub_options = ("revision", "cache_dir", "force_download", "local_files_only", "token")
    folder = resolve_pretrained_folder(pretrained_model_name_or_path,
                                       **{k: kwargs[k] for k in hub_options if k in kwargs})
    model_class = model_class_for_config(read_config_dict(folder), source=str(folder / "config.json"))
    if model_class is None:
        legacy_task = task_of_weights(folder)
        import logging

        logging.getLogger(__name__).warning(
            "%s has no 'architectures' (saved by eventlm 0.1): loading it as a %s model from the head its weights "
            "hold; save it again to record the class", folder / "config.json", legacy_task)
        return auto_class_for_task(legacy_task).from_pretrained(folder, **kwargs)
    return model_class.from_pretrained(folder, **kwargs)


_ALL = (AutoModel, AutoModelForSequenceClassification, AutoModelForNextEventPrediction)


# --------------------------------------------------------------------------------------------------
# Registration with transformers
# --------------------------------------------------------------------------------------------------


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def register_with_transformers() -> None:
    """Register every config with transformers.AutoConfig (idempotent); the models with transformers.AutoModel
    too, but only when torch is importable (transformers' AutoModel belongs to its PyTorch side)."""
    for model_type in MODEL_TYPES:
        transformers.AutoConfig.register(model_type, config_class_for(model_type), exist_ok=True)
    if not _torch_available():
        return
    for model_type in MODEL_TYPES:
        config_class = config_class_for(model_type)
        transformers.AutoModel.register(config_class, AutoModel.model_class_for(model_type), exist_ok=True)


register_with_transformers()

__all__ = [
    "AutoModel",
    "AutoModelForSequenceClassification",
    "AutoModelForNextEventPrediction",
    "MODEL_TYPES",
    "auto_class_for_task",
    "config_class_for",
    "load_pretrained",
    "model_class_for_config",
    "register_with_transformers",
]
