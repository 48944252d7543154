"""Data parallelism with jax.sharding: one mesh axis "data" over every visible device, on one or many processes.

The batch is split along its first axis over the devices, parameters and optimizer state are
replicated; jit (GSPMD) inserts the gradient all-reduce. The same code runs on one CPU, on simulated CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count=4), on a GPU node and, after
`initialize_distributed()`, on several processes (jax.distributed), each feeding its own contiguous slice
of every global batch (`DataParallel.host_rows`).
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


ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
_CLUSTER_SIZE_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")  # jax reads the rest of these clusters itself


def distributed_settings(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                         process_id: Optional[int] = None, environ=None) -> Optional[Dict[str, object]]:
    """Where this process stands in a multi-process run, or None for a single process.

    The flags win; else JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID (what `eventlm launch`
    sets); else a SLURM or Open MPI job of more than one task, whose values jax.distributed detects itself
    (returned as None fields). A half-given set raises ValueError naming the missing flag."""
    env = os.environ if environ is None else environ
    address = coordinator_address or env.get(ENV_COORDINATOR) or None
    count = num_processes if num_processes is not None else _int_env(env, ENV_NUM_PROCESSES)
    rank = process_id if process_id is not None else _int_env(env, ENV_PROCESS_ID)
    cluster = next((int(env[k]) for k in _CLUSTER_SIZE_VARS if k in env and env[k].strip().isdigit()), 1) > 1
    if address is None and count in (None, 1) and rank in (None, 0):
        return {"coordinator_address": None, "num_processes": None, "process_id": None} if cluster else None
    if count is not None and count < 1:
        raise ValueError(f"--num_processes must be >= 1, got {count}")
    if count == 1 and address is None:
        return None
    if address is None:
        raise ValueError(f"--num_processes {count} needs --coordinator_address HOST:PORT (process 0's host and a "
                         f"free port, the same on every process)")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--coordinator_address must be HOST:PORT (e.g. 10.0.0.1:1234), got {address!r}")
    if not cluster and (count is None or rank is None):
        missing = "--num_processes" if count is None else "--process_id"
        raise ValueError(f"--coordinator_address {address} needs {missing} too (or {ENV_NUM_PROCESSES} / "
                         f"{ENV_PROCESS_ID}; `eventlm launch` sets them)")
    if count is not None and rank is not None and not 0 <= rank < count:
        raise ValueError(f"--process_id must be in 0..{count - 1} for --num_processes {count}, got {rank}")
    return {"coordinator_address": address, "num_processes": count, "process_id": rank}


def _int_env(env, name: str) -> Optional[int]:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable {name} must be an integer, got {value!r}") from None


def initialize_distributed(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                           process_id: Optional[int] = None, timeout: int = 100) -> bool:
    """Start jax.distributed when several processes take part (see distributed_settings). Returns True when
    more than one process runs.

    CPU collectives across processes go through gloo (jax_cpu_collectives_implementation; it only concerns
    the CPU backend, so GPU and TPU runs are unaffected). `timeout` (seconds) bounds how long a process
    waits for a peer that died or never came: jax's heartbeat and shutdown timeouts, and the start-up wait."""
    settings = distributed_settings(coordinator_address, num_processes, process_id)
    if settings is None:
        return False
    if not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(**settings, initialization_timeout=int(timeout),
                                   heartbeat_timeout_seconds=int(timeout), shutdown_timeout_seconds=int(timeout))
    logger.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
                jax.process_count(), jax.local_device_count(), jax.device_count())
    return jax.process_count() > 1


def barrier(name: str) -> None:
    """Wait until every process got here (nothing on a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def broadcast_from_main(value: int) -> int:
    """Process 0's integer on every process (a decision only the main process takes, e.g. resume or not)."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int32)))


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

    def host_rows(self, global_rows: np.ndarray) -> np.ndarray:
        """This process's part of a global batch of row indices: the contiguous block that lands on its local
        devices (the layout of split_dataset_by_node, applied to every global batch). Every process reads the
        whole dataset's order, so the global batches, and the losses, do not depend on the process count."""
        global_rows = np.asarray(global_rows)
        spans = self.batch.addressable_devices_indices_map(global_rows.shape[:1]).values()
        starts = sorted(span[0].start or 0 for span in spans)
        stops = sorted(span[0].stop if span[0].stop is not None else len(global_rows) for span in spans)
        return global_rows[starts[0]:stops[-1]]

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
