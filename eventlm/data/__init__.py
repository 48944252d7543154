"""eventlm.data: event schema, recording readers, Hub datasets, augmentations, collator, embedded datasets.

Names are imported lazily (each lives in one submodule, listed below).
"""

from eventlm._lazy import lazy_exports

_EXPORTS = {
    "EVENT_DTYPE": ".events",
    "EventStream": ".events",
    "as_events": ".events",
    "read_events": ".readers",
    "to_hub_dataset": ".hub",
    "tonic_to_hub_dataset": ".hub",
    "folder_to_hub_dataset": ".hub",
    "push_dataset_to_hub": ".hub",
    "EventCollator": ".collator",
    "slice_by_event_count": ".collator",
    "bucket_lengths": ".collator",
    "event_columns": ".events",
    "augmentations_for": ".augmentations",
    "apply_to_row": ".augmentations",
    "Compose": ".augmentations",
    "cut_mix_batch": ".augmentations",
    "make_synthetic_dataset": ".synthetic",
    "load_synthetic_dataset": ".synthetic",
    "SyntheticSHD": ".synthetic",
    "make_spoken_digits_dataset": ".spoken_digits",
    "load_spoken_digits_dataset": ".spoken_digits",
    "load_dataset_metadata": ".hub",
    "tonic_dataset_splits": ".hub",
    "HubDatasetArguments": ".hub",
    "bag_of_channels_accuracy": ".synthetic",
    "audio_to_events": ".audio",
    "CochleaParameters": ".audio",
    "audio_to_hub_dataset": ".audio_conversion",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
