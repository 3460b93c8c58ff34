"""minique: a Redis job queue with one atomic Lua script per state change."""

from .batch import Batch
from .errors import (
    Delayed,
    GroupRateLimited,
    InvalidJobState,
    JobCorrupted,
    JobFailed,
    JobNotFound,
    LockLost,
    MiniqueError,
    PayloadError,
    RateLimited,
    UnrecoverableError,
    WaitingChildren,
)
from .events import Event, QueueEvents
from .flows import FlowError, FlowNode, FlowProducer
from .groups import GroupCounts, GroupDefaults, GroupInfo, GroupLimiter
from .job import Job
from .manual_worker import ManualWorker
from .observers import WorkerObserver
from .queue import Queue
from .registry import Registry
from .scheduler import JobScheduler
from .sync import SyncJob, SyncQueue
from .worker import Worker
from .worker_info import WorkerInfo

__all__ = [
    "Batch",
    "Delayed",
    "Event",
    "FlowError",
    "FlowNode",
    "FlowProducer",
    "GroupCounts",
    "GroupDefaults",
    "GroupInfo",
    "GroupLimiter",
    "GroupRateLimited",
    "InvalidJobState",
    "Job",
    "JobCorrupted",
    "JobFailed",
    "JobNotFound",
    "JobScheduler",
    "LockLost",
    "ManualWorker",
    "MiniqueError",
    "PayloadError",
    "Queue",
    "QueueEvents",
    "RateLimited",
    "Registry",
    "SyncJob",
    "SyncQueue",
    "UnrecoverableError",
    "WaitingChildren",
    "Worker",
    "WorkerInfo",
    "WorkerObserver",
]
__version__ = "0.1.0"
