"""minique: a Redis job queue with one atomic Lua script per state change."""

from .errors import (
    Delayed,
    InvalidJobState,
    JobCorrupted,
    JobFailed,
    JobNotFound,
    LockLost,
    MiniqueError,
    PayloadError,
    RateLimited,
    UnrecoverableError,
)
from .events import Event, QueueEvents
from .flows import FlowError, FlowNode, FlowProducer
from .job import Job
from .observers import WorkerObserver
from .queue import Queue
from .registry import Registry
from .scheduler import JobScheduler
from .sync import SyncJob, SyncQueue
from .worker import Worker
from .worker_info import WorkerInfo

__all__ = [
    "Delayed",
    "Event",
    "FlowError",
    "FlowNode",
    "FlowProducer",
    "InvalidJobState",
    "Job",
    "JobCorrupted",
    "JobFailed",
    "JobNotFound",
    "JobScheduler",
    "LockLost",
    "MiniqueError",
    "PayloadError",
    "Queue",
    "QueueEvents",
    "RateLimited",
    "Registry",
    "SyncJob",
    "SyncQueue",
    "UnrecoverableError",
    "Worker",
    "WorkerInfo",
    "WorkerObserver",
]
__version__ = "0.1.0"
