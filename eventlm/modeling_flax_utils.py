"""`FlaxPreTrainedModel`: the transformers-4 Flax model API, owned by eventlm (transformers 5 has no Flax).

A model object holds a `config`, a stateless flax `module` and its variables (`params`, plus `batch_stats`
where the model uses batch norm). It saves itself as `config.json` + `model.safetensors` (the flattened
variables, keys "params.eventssm.embed.embedding", "batch_stats.eventssm...."), loads from a local folder or
a Hub repo id through huggingface_hub, and pushes with `huggingface_hub.upload_folder`. No pickle anywhere:
weights travel only as safetensors, the config only as JSON.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import huggingface_hub
import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.flax as safetensors_flax
from flax.core import unfreeze
from flax.traverse_util import flatten_dict, unflatten_dict

from .errors import EventDataError

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
# keyword arguments transformers' Auto classes add to from_pretrained (dropped when empty; trust_remote_code
# always: eventlm runs no code from a repo)
_AUTO_CLASS_KWARGS = ("trust_remote_code", "_from_auto", "adapter_kwargs", "code_revision", "_commit_hash", "proxies",
                      "subfolder")
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
# files a model repo needs to be loaded; snapshot_download fetches only these
_MODEL_FILES = [CONFIG_NAME, WEIGHTS_NAME]
# weight formats of other libraries that eventlm deliberately never reads (msgpack / pickle)
_FOREIGN_WEIGHTS = ("flax_model.msgpack", "pytorch_model.bin", "tf_model.h5", "model.ckpt.index")
_SEP = "."


# --------------------------------------------------------------------------------------------------
# Model outputs
# --------------------------------------------------------------------------------------------------


class ModelOutput:
    """Mixin for output dataclasses: attribute access plus transformers' dict-like access.

    Subclasses are declared with `flax.struct.dataclass` (so they are pytrees and cross `jax.jit`):

        @flax.struct.dataclass
        class FlaxSequenceClassifierOutput(ModelOutput):
            logits: jax.Array = None
            loss: jax.Array | None = None

    `out["logits"]`, `"loss" in out`, `out.keys()` and `out.to_tuple()` see only the fields that are not
    None (as in transformers); `out[0]` is the first of them.
    """

    def keys(self) -> list[str]:
        return [f for f in self.__dataclass_fields__ if getattr(self, f) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple:
        return tuple(self.values())

    def to_dict(self) -> dict[str, Any]:
        return dict(self.items())

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{type(self).__name__} has no (non-None) field {key!r}; it has {self.keys()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


# --------------------------------------------------------------------------------------------------
# Flattening variables <-> safetensors keys
# --------------------------------------------------------------------------------------------------


def flatten_variables(variables: Mapping) -> dict[str, Any]:
    """{"params": {"eventssm": {"embed": {"embedding": a}}}} -> {"params.eventssm.embed.embedding": a}."""
    flat = flatten_dict(unfreeze(variables))
    for path in flat:
        bad = [part for part in path if not isinstance(part, str) or _SEP in part or not part]
        if bad:
            raise ValueError(f"cannot save variable {path}: names must be non-empty strings without {_SEP!r}")
    return {_SEP.join(path): leaf for path, leaf in flat.items()}


def unflatten_variables(flat: Mapping[str, Any]) -> dict:
    """Inverse of `flatten_variables`: a nested plain dict."""
    return unflatten_dict({tuple(key.split(_SEP)): value for key, value in flat.items()})


def load_safetensors(path: str | os.PathLike) -> dict[str, jax.Array]:
    """Read a safetensors file; a truncated or corrupt file raises a ValueError naming it."""
    try:
        return safetensors_flax.load_file(os.fspath(path))
    except safetensors.SafetensorError as err:
        size = os.path.getsize(path)
        raise EventDataError(
            f"{path} ({size} bytes) is not a readable safetensors file: {err}. It is probably truncated or "
            "corrupt (an interrupted download or copy); delete it and save or download the model again."
        ) from err


# --------------------------------------------------------------------------------------------------
# Finding a pretrained model: a local folder or a Hub repo id
# --------------------------------------------------------------------------------------------------


def resolve_pretrained_folder(
    pretrained_model_name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """The local folder holding config.json + model.safetensors: the path itself when it is a folder,
    otherwise `huggingface_hub.snapshot_download` of that repo id (only those two files)."""
    name = os.fspath(pretrained_model_name_or_path)
    if os.path.isdir(name):
        return Path(name)
    if os.path.isfile(name):
        raise ValueError(
            f"{name!r} is a file; from_pretrained expects the folder holding {CONFIG_NAME} and {WEIGHTS_NAME} "
            "(as written by save_pretrained) or a Hub repo id"
        )
    try:
        huggingface_hub.utils.validate_repo_id(name)
    except huggingface_hub.errors.HFValidationError as err:
        raise FileNotFoundError(
            f"{name!r} is neither an existing local folder nor a valid Hub repo id ('name' or 'owner/name')"
        ) from err
    from . import __version__

    hub_errors = (
        huggingface_hub.errors.RepositoryNotFoundError,
        huggingface_hub.errors.RevisionNotFoundError,
        huggingface_hub.errors.LocalEntryNotFoundError,
        huggingface_hub.errors.HfHubHTTPError,
    )
    try:
        folder = huggingface_hub.snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=_MODEL_FILES,
            library_name="eventlm",
            library_version=__version__,
        )
    except hub_errors as err:
        raise OSError(
            f"could not get model {name!r} (revision {revision or 'main'}): there is no local folder of that "
            f"name and the Hub download failed ({type(err).__name__}: {err}). Check the repo id, your token for a "
            "private repo, and the connection (or pass local_files_only=True to use the cache)."
        ) from err
    return Path(folder)


def read_config_dict(folder: str | os.PathLike) -> dict:
    """config.json of a saved model as a dict (JSON only), with errors that name the file."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a model saved by save_pretrained")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EventDataError(f"{path} is not valid JSON ({err}); the file is corrupt", path=path) from err
    if not isinstance(config, dict):
        raise EventDataError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def _weights_file(folder: Path) -> Path:
    path = folder / WEIGHTS_NAME
    if path.is_file():
        return path
    foreign = [name for name in _FOREIGN_WEIGHTS if (folder / name).exists()]
    hint = (
        f" It holds {foreign}, which eventlm never reads (pickle/msgpack formats can run code or are not portable);"
        " convert the weights to model.safetensors first."
        if foreign
        else ""
    )
    raise FileNotFoundError(f"{path} not found: no weights in {folder}.{hint}")


# --------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------


def _make_temp_folder(parent: Path, name: str) -> Path:
    """A fresh hidden folder in `parent`, created with os.mkdir so it gets the usual (umask) permissions
    rather than mkdtemp's 0700 (the folder becomes the saved model folder when it is renamed into place)."""
    while True:
        tmp = parent / f".{name}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def atomic_write_folder(save_directory: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a fresh temp folder beside `save_directory`, then move its files into place.

    A new folder is renamed into place whole; into an existing folder each file is moved with os.replace
    (atomic per file), leaving other files there untouched. If `write` fails, nothing in `save_directory`
    has changed and the temp folder is removed.
    """
    target = Path(save_directory)
    if target.exists() and not target.is_dir():
        raise ValueError(f"save_directory {str(target)!r} exists and is a file, not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_temp_folder(target.parent, target.name)
    try:
        write(tmp)
        if not target.exists():
            try:
                os.replace(tmp, target)
                return target
            except OSError:  # someone created it meanwhile: fall through to the per-file moves
                if not target.is_dir():
                    raise
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == CONFIG_NAME):  # config.json last
            os.replace(item, target / item.name)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------------------


def _cast_floating(tree, dtype, mask=None):
    """Cast the floating leaves of `tree` where `mask` (same structure, bools; or callable tree -> mask) is True."""
    if mask is None:
        return jax.tree_util.tree_map(
            lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
        )
    if callable(mask):
        mask = mask(tree)
    return jax.tree_util.tree_map(
        lambda x, m: x.astype(dtype) if m and jnp.issubdtype(x.dtype, jnp.floating) else x, tree, mask
    )


def _short(keys, limit: int = 20) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


class FlaxPreTrainedModel:
    """Base of eventlm's Flax models: config + module + variables, save/load/push, dtype casts.

    Subclasses set `config_class` and `module_class`, implement `init_weights(rng, input_shape)` (returning
    the full variables dict {"params": ..., "batch_stats": ...}) and `__call__`.
    """

    config_class = None
    module_class = None
    base_model_prefix = "model"  # the backbone's name in the variables; each model family sets its own
    main_input_name = "input_ids"

    def __init__(self, config, input_shape=(1, 16), seed: int = 0, dtype=jnp.float32, _do_init: bool = True):
        if self.module_class is None:
            raise TypeError(f"{type(self).__name__} has no module_class; use a concrete model class")
        if self.config_class is not None and not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.dtype = dtype
        self.input_shape = tuple(input_shape)
        self.seed = seed
        self.key = jax.random.PRNGKey(seed)
        self.module = self.module_class(config=config, dtype=dtype)
        self._variables = None
        self._required_keys = None
        if _do_init:
            variables = unfreeze(self.init_weights(self.key, self.input_shape))
            self._required_keys = frozenset(flatten_variables(variables))
            self._variables = variables

    # -- to be provided by the model -----------------------------------------------------------------

    def init_weights(self, rng: jax.Array, input_shape: tuple) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement init_weights(rng, input_shape)")

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")

    # -- variables -----------------------------------------------------------------------------------

    def _check_initialized(self) -> None:
        if self._variables is None:
            raise ValueError(
                f"{type(self).__name__} was created with _do_init=False and holds no weights: pass params= to "
                "the call, or set model.params (e.g. model.params = model.init_weights(key, shape)['params'])"
            )

    @property
    def params(self) -> dict:
        """The "params" collection, a plain nested dict of jax arrays."""
        self._check_initialized()
        return self._variables["params"]

    @params.setter
    def params(self, params: Mapping) -> None:
        self._set_collection("params", params)

    @property
    def batch_stats(self) -> dict:
        """The "batch_stats" collection (batch-norm running statistics); {} when the model has none."""
        self._check_initialized()
        return self._variables.get("batch_stats", {})

    @batch_stats.setter
    def batch_stats(self, batch_stats: Mapping) -> None:
        self._set_collection("batch_stats", batch_stats)

    @property
    def variables(self) -> dict:
        """All collections: {"params": ..., "batch_stats": ...} (the latter only when the model has one)."""
        self._check_initialized()
        return self._variables

    def _set_collection(self, name: str, tree: Mapping) -> None:
        if not isinstance(tree, Mapping):
            raise TypeError(f"{name} must be a (nested) dict of arrays, got {type(tree).__name__}")
        tree = unfreeze(tree)
        if self._required_keys is not None:
            given = {f"{name}{_SEP}{key}" for key in flatten_variables(tree)}
            required = {key for key in self._required_keys if key.startswith(name + _SEP)}
            if given != required:
                raise ValueError(
                    f"{name} does not match {type(self).__name__}'s structure: missing [{_short(required - given)}],"
                    f" unexpected [{_short(given - required)}]"
                )
        variables = dict(self._variables or {})
        if tree or name == "params":
            variables[name] = tree
        else:
            variables.pop(name, None)
        self._variables = variables

    def _variables_for(self, params: Mapping | None = None, batch_stats: Mapping | None = None) -> dict:
        """The variables dict for `module.apply`: the given collections, else the model's own."""
        if params is None:
            params = self.params
        if batch_stats is None:
            batch_stats = self._variables.get("batch_stats", {}) if self._variables is not None else {}
        return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}

    def num_parameters(self, params: Mapping | None = None, exclude_embeddings: bool = False) -> int:
        """Number of trainable parameters (batch-norm statistics not counted); optionally without `embed*`."""
        flat = flatten_dict(unfreeze(self.params if params is None else params))
        return int(
            sum(
                np.prod(leaf.shape)
                for path, leaf in flat.items()
                if not (exclude_embeddings and any(part.startswith("embed") for part in path))
            )
        )

    # -- dtype casts (return new trees, as transformers 4 did; the model is not changed) ---------------

    def to_bf16(self, params: Mapping | None = None, mask=None):
        """Cast floating params to bfloat16 (where `mask` is True). Use: model.params = model.to_bf16()."""
        return _cast_floating(self.params if params is None else params, jnp.bfloat16, mask)

    def to_fp16(self, params: Mapping | None = None, mask=None):
        """Cast floating params to float16 (where `mask` is True)."""
        return _cast_floating(self.params if params is None else params, jnp.float16, mask)

    def to_fp32(self, params: Mapping | None = None, mask=None):
        """Cast floating params to float32 (where `mask` is True), e.g. to train again after to_bf16."""
        return _cast_floating(self.params if params is None else params, jnp.float32, mask)

    # -- saving ----------------------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        push_to_hub: bool = False,
        params: Mapping | None = None,
        batch_stats: Mapping | None = None,
        model_card=None,
        **push_kwargs,
    ) -> Path:
        """Write config.json + model.safetensors (params and batch-norm statistics), and README.md from
        `model_card` (a str or huggingface_hub.ModelCard) if given, into `save_directory`, atomically; other
        files already there are kept. With push_to_hub=True, then upload the folder to `repo_id` (default:
        the folder's name) with the other options of `push_to_hub` in `push_kwargs`."""
        variables = self._variables_for(params, batch_stats)
        # C order: safetensors writes an array's raw memory, so a transposed numpy view would be saved scrambled
        tensors = {k: np.array(v, order="C") if isinstance(v, np.ndarray) else v
                   for k, v in flatten_variables(variables).items()}

        config = self.config
        config.architectures = [type(self).__name__]  # the loaders pick the class from this (as transformers)

        def write(tmp: Path) -> None:
            safetensors_flax.save_file(tensors, tmp / WEIGHTS_NAME, metadata={"format": "flax"})
            config.save_pretrained(tmp)
            if model_card is not None:
                (tmp / MODEL_CARD_NAME).write_text(str(model_card), encoding="utf-8")

        folder = atomic_write_folder(save_directory, write)
        logger.info("Model weights saved in %s", folder / WEIGHTS_NAME)
        if push_to_hub:
            repo_id = push_kwargs.pop("repo_id", None) or folder.resolve().name
            self._upload(folder, repo_id, **push_kwargs)
        return folder

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        model_card=None,
        params: Mapping | None = None,
        batch_stats: Mapping | None = None,
    ):
        """Upload config.json + model.safetensors (+ README.md from `model_card`: a str or
        huggingface_hub.ModelCard) to the Hub repo `repo_id`, creating it if needed. Returns the CommitInfo."""
        with tempfile.TemporaryDirectory(prefix=".eventlm-push-") as tmp:
            folder = self.save_pretrained(
                Path(tmp) / "model", params=params, batch_stats=batch_stats, model_card=model_card
            )
            return self._upload(
                folder, repo_id, commit_message=commit_message, private=private, token=token,
                revision=revision, create_pr=create_pr,
            )  # fmt: skip

    def _upload(self, folder: Path, repo_id: str, commit_message=None, private=None, token=None,
                revision=None, create_pr=False):  # fmt: skip
        """create_repo (exist_ok) + upload_folder of `folder` (its hidden files excluded)."""
        repo_url = huggingface_hub.create_repo(repo_id, token=token, private=private, exist_ok=True)
        repo_id = getattr(repo_url, "repo_id", None) or repo_id
        return huggingface_hub.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or f"Upload {type(self).__name__}",
            token=token,
            revision=revision,
            create_pr=create_pr,
            ignore_patterns=[".*", "**/.*"],
        )

    # -- loading ---------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config, **kwargs):
        """A randomly initialised model from `config` (kwargs: input_shape, seed, dtype, _do_init)."""
        return cls(config, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config=None,
        dtype=jnp.float32,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        input_shape=(1, 16),
        seed: int = 0,
        ignore_mismatched_sizes: bool = False,
        allow_missing_weights: bool = False,
        **config_overrides,
    ):
        """Load a model saved by save_pretrained from a local folder or a Hub repo id.

        Every stored tensor is checked against the model's shape. Keys of the checkpoint that the model lacks
        (another head) are dropped and keys it misses are initialised (seed), both listed in a warning, so a
        next-event-prediction checkpoint loads into a classifier with its backbone. `config_overrides` set
        config fields (e.g. num_labels=5); with ignore_mismatched_sizes=True wrongly-shaped tensors are
        re-initialised instead of raising. Parameters keep the stored dtype; `dtype` is the compute dtype.
        Only a head the checkpoint lacks entirely (`_fresh_head_key`) may be missing from it: any other missing
        tensor (an empty file, renamed or damaged key names) raises a ValueError naming the missing and the
        unexpected keys, unless allow_missing_weights=True initialises them (listed in a warning).
        """
        for key in _AUTO_CLASS_KWARGS:  # what transformers.AutoModel passes along, meaningless here when empty
            if key in config_overrides and not config_overrides[key] or key in ("trust_remote_code", "_from_auto"):
                config_overrides.pop(key, None)
        folder = resolve_pretrained_folder(
            pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir,
            force_download=force_download, local_files_only=local_files_only, token=token,
        )  # fmt: skip
        config = cls._load_config(folder, config, config_overrides)
        weights_path = _weights_file(folder)
        stored = load_safetensors(weights_path)

        model = cls(config, input_shape=input_shape, seed=seed, dtype=dtype, _do_init=False)
        init = lambda: unfreeze(model.init_weights(model.key, model.input_shape))  # noqa: E731
        expected = flatten_variables(jax.eval_shape(init))  # shapes only, nothing computed

        state, mismatched = {}, {}
        for key, value in stored.items():
            if key not in expected:
                continue
            want = expected[key]
            if tuple(value.shape) != tuple(want.shape):
                mismatched[key] = f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(want.shape)}"
                continue
            if jnp.issubdtype(value.dtype, jnp.floating) != jnp.issubdtype(want.dtype, jnp.floating):
                raise ValueError(
                    f"{weights_path}: tensor {key!r} has dtype {value.dtype} but {cls.__name__} expects {want.dtype}"
                )
            state[key] = value
        if mismatched and not ignore_mismatched_sizes:
            raise ValueError(
                f"{weights_path} does not fit {cls.__name__} with this config: "
                + "; ".join(mismatched.values())
                + ". Check that config.json belongs to these weights, or pass ignore_mismatched_sizes=True to "
                "re-initialise those tensors (e.g. a classifier with a different num_labels)."
            )

        to_init = set(expected) - set(state)
        not_head = sorted(k for k in to_init - set(mismatched) if not _fresh_head_key(k, stored, cls.base_model_prefix))
        if not_head and not allow_missing_weights:
            unexpected = sorted(set(stored) - set(expected))
            raise ValueError(
                f"{weights_path} does not hold the weights of {cls.__name__}: {len(not_head)} of its "
                f"{len(expected)} tensors are missing [{_short(not_head)}]"
                + (f" and {len(unexpected)} stored tensors are unexpected [{_short(unexpected)}]" if unexpected else "")
                + (" (the file holds no tensors at all)" if not stored else "")
                + ". The file is damaged or was saved from another model; save or download it again, or pass "
                "allow_missing_weights=True to initialise the missing tensors at random."
            )
        if to_init:
            fresh = flatten_variables(init())
            state.update({key: fresh[key] for key in to_init})
        missing = sorted(to_init - set(mismatched))
        unexpected = sorted(set(stored) - set(expected))
        _warn_load_report(cls.__name__, pretrained_model_name_or_path, missing, unexpected, list(mismatched.values()))
        half = sorted(k for k, v in state.items() if v.dtype in (jnp.bfloat16, jnp.float16))
        if half:
            logger.warning(
                "%d tensors of %s are stored in half precision (e.g. %s) and stay so; use "
                "model.params = model.to_fp32() to train in float32.", len(half), weights_path, half[0],
            )  # fmt: skip

        model._required_keys = frozenset(expected)
        model._variables = unflatten_variables(state)
        return model

    @classmethod
    def _load_config(cls, folder: Path, config, overrides: dict):
        if config is None:
            if cls.config_class is None:
                raise TypeError(f"{cls.__name__} has no config_class; pass config=")
            config_dict = read_config_dict(folder)
            model_type = getattr(cls.config_class, "model_type", None)
            if model_type and config_dict.get("model_type") not in (None, model_type):
                raise ValueError(
                    f"{folder / CONFIG_NAME} is a {config_dict.get('model_type')!r} model, but {cls.__name__} "
                    f"needs model_type {model_type!r}; use the matching class or eventlm.AutoModel"
                )
            if "num_labels" in overrides and "id2label" not in overrides:  # a new label set replaces the stored one
                config_dict = {k: v for k, v in config_dict.items() if k not in ("id2label", "label2id")}
            config, unused = cls.config_class.from_dict(config_dict, return_unused_kwargs=True, **overrides)
        else:
            unused = {k: v for k, v in overrides.items() if not hasattr(config, k)}
            if overrides:
                config = copy.deepcopy(config)  # the caller's config stays untouched
                for key, value in overrides.items():
                    if key not in unused:
                        setattr(config, key, value)
        if unused:
            raise TypeError(
                f"{cls.__name__}.from_pretrained got unexpected keyword argument(s) {sorted(unused)}: they are "
                f"neither options of from_pretrained nor fields of {type(config).__name__}"
            )
        return config


def _fresh_head_key(key: str, stored, backbone: str) -> bool:
    """Whether a weight the checkpoint lacks may be initialised: it belongs to a module beside the backbone
    (a task head) of which the checkpoint holds no tensor at all (a checkpoint of another head, or a bare
    backbone). A backbone tensor, or part of a head, missing means a damaged or foreign file."""
    group = key.split(_SEP)[:2]
    if len(group) < 2 or group[1] == backbone:
        return False
    prefix = _SEP.join(group) + _SEP
    return not any(name.startswith(prefix) for name in stored)


def _warn_load_report(class_name, source, missing, unexpected, mismatched) -> None:
    if unexpected:
        logger.warning(
            "Some weights of the checkpoint at %s were not used when initializing %s: [%s]. This is expected when "
            "the checkpoint was trained with another head (e.g. next-event prediction -> classification).",
            source, class_name, _short(unexpected),
        )  # fmt: skip
    if missing:
        logger.warning(
            "Some weights of %s were not in the checkpoint at %s and are newly initialized: [%s]. You should "
            "train this model on a downstream task before using it for predictions.",
            class_name, source, _short(missing),
        )  # fmt: skip
    if mismatched:
        logger.warning(
            "Some weights of %s were re-initialized because their shapes differ from the checkpoint at %s: [%s].",
            class_name, source, "; ".join(mismatched),
        )  # fmt: skip
