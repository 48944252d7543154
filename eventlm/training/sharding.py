"""Data parallelism with jax.sharding: one mesh axis "data" over every visible device.

The batch is split along its first axis over the devices, parameters and optimizer state are
replicated; jit (GSPMD) inserts the gradient all-reduce. The same code runs on one CPU, on simulated CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count=4), on a GPU node and, after
`initialize_distributed()`, on several hosts, each feeding its own slice of the global batch
(`split_dataset_by_node`).
"""

import logging
import os
from typing import Dict, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

DATA_AXIS = "data"
IGNORE_INDEX = -100  # next-event label of a padded position (the collator's convention)


def initialize_distributed(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> bool:
    """Start jax.distributed when several hosts take part (arguments or JAX_COORDINATOR_ADDRESS /
    SLURM / Open MPI environment detected by jax). Returns True when more than one process runs."""
    explicit = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    cluster = any(k in os.environ for k in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")) and int(
        os.environ.get("SLURM_NTASKS", os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))) > 1
    if not (explicit or cluster):
        return False
    if not jax.distributed.is_initialized():
        jax.distributed.initialize(coordinator_address=explicit, num_processes=num_processes, process_id=process_id)
    logger.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
                jax.process_count(), jax.local_device_count(), jax.device_count())
    return jax.process_count() > 1


class DataParallel:
    """A 1-D mesh over all devices with the shardings the training loop needs."""

    def __init__(self, devices=None):
        devices = list(devices if devices is not None else jax.devices())
        self.mesh = Mesh(np.array(devices), (DATA_AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    @property
    def num_local_devices(self) -> int:
        return len(self.mesh.local_devices)

    @property
    def process_index(self) -> int:
        return jax.process_index()

    @property
    def process_count(self) -> int:
        return jax.process_count()

    def local_batch_size(self, per_device_batch_size: int) -> int:
        """Rows this host feeds per step: per-device batch x local devices."""
        return per_device_batch_size * self.num_local_devices

    def global_batch_size(self, per_device_batch_size: int) -> int:
        return per_device_batch_size * self.num_devices

    def replicate(self, tree):
        """Place a pytree (parameters, optimizer state) on every device."""
        return jax.device_put(tree, self.replicated)

    def shard_batch(self, batch: Dict[str, np.ndarray]):
        """This host's numpy batch -> global jax arrays split over the data axis. The host's rows must
        divide evenly over its local devices."""
        out = {}
        for key, value in batch.items():
            value = np.asarray(value)
            if value.shape[0] % self.num_local_devices:
                raise ValueError(
                    f"batch field {key!r} has {value.shape[0]} rows, not divisible by the "
                    f"{self.num_local_devices} local devices; choose a per-device batch size"
                )
            out[key] = jax.make_array_from_process_local_data(self.batch, value)
        return out


def agree_on_length(length: int) -> int:
    """The longest padded length over all hosts (every host must feed arrays of one global shape)."""
    if jax.process_count() == 1:
        return int(length)
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.asarray(length, np.int32))))


def pad_batch_to_length(batch: Dict[str, np.ndarray], length: int, pad_token_id: int) -> Dict[str, np.ndarray]:
    """Pad the event axis of a collated batch to `length` (masked pad tokens; timestamps repeat the last)."""
    current = batch["input_ids"].shape[1]
    if length == current:
        return batch
    if length < current:
        raise ValueError(f"cannot pad a batch of length {current} down to {length}")
    extra = length - current
    out = dict(batch)
    out["input_ids"] = np.pad(batch["input_ids"], ((0, 0), (0, extra)), constant_values=pad_token_id)
    out["attention_mask"] = np.pad(batch["attention_mask"], ((0, 0), (0, extra)))
    out["timestamps"] = np.pad(batch["timestamps"], ((0, 0), (0, extra)), mode="edge")
    labels = batch.get("labels")
    if labels is not None and np.shape(labels) == np.shape(batch["input_ids"]):  # next-event targets
        out["labels"] = np.pad(labels, ((0, 0), (0, extra)), constant_values=IGNORE_INDEX)
    return out


def split_for_host(dataset):
    """This host's part of a dataset (datasets.distributed.split_dataset_by_node); the whole dataset on
    a single host."""
    if jax.process_count() == 1:
        return dataset
    import datasets
    from datasets.distributed import split_dataset_by_node

    if not isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        return [dataset[i] for i in range(jax.process_index(), len(dataset), jax.process_count())]

    return split_dataset_by_node(dataset, rank=jax.process_index(), world_size=jax.process_count())
