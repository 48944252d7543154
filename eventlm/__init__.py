"""eventlm: neuromorphic event streams as first-class citizens of the Hugging Face world.

Public names are imported lazily so that `import eventlm` stays fast and silent; importing the
package registers the EventSSM config with `transformers.AutoConfig` (and the models with
`transformers.AutoModel` only where torch happens to be installed).
"""

import importlib

from ._lazy import lazy_exports

from ._quiet import import_transformers_quietly

import_transformers_quietly()

__version__ = "0.1.0"

_EXPORTS = {
    "EventSSMConfig": "eventlm.models.eventssm.configuration_eventssm",
    "FlaxEventSSMModel": "eventlm.models.eventssm.modeling_flax_eventssm",
    "FlaxEventSSMForSequenceClassification": "eventlm.models.eventssm.modeling_flax_eventssm",
    "FlaxEventSSMForNextEventPrediction": "eventlm.models.eventssm.modeling_flax_eventssm",
    "FlaxPreTrainedModel": "eventlm.modeling_flax_utils",
    "FlaxEventPreTrainedModel": "eventlm.modeling_events",
    "AutoModel": "eventlm.auto",
    "AutoModelForSequenceClassification": "eventlm.auto",
    "AutoModelForNextEventPrediction": "eventlm.auto",
    "EventTokenizer": "eventlm.tokenization_events",
    "EventDataError": "eventlm.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())


def _register():
    """Register EventSSMConfig with transformers' AutoConfig (auto.py does the models)."""
    try:
        importlib.import_module("eventlm.auto")
    except ModuleNotFoundError as err:  # during development a module may not exist yet
        if not (err.name or "").startswith("eventlm"):
            raise


_register()
