"""The project's one error hierarchy.

Every error a user can cause, or that the outside world can cause, is one of these. The message
says what was wrong and what to do about it, in one line, so the CLI can print it as it is.

    RecognizerError
    ├── ConfigError          bad YAML, unknown key, wrong type, out-of-range value  (CLI exit 2)
    ├── CheckpointError      missing/truncated/mismatched checkpoint, unknown format   (exit 1)
    ├── QuantizationError    int8 requested but impossible (no bitsandbytes, nothing to replace)
    ├── SourceError          a video source cannot be opened or read                   (exit 1)
    ├── PublisherError       the ZeroMQ endpoint cannot be bound, key files unusable   (exit 1)
    ├── ClusterError         Ray missing, unreachable or short of room; a worker refused its streams (exit 1)
    │   └── WorkerUnavailable    a worker actor did not answer: lost, restarting, or not placed yet
    └── ControlError         a control request cannot be carried out (unknown or duplicate id,
                             over the cap, shutting down), or no reply came         (exit 1)

This module imports nothing heavy, so `streamer` can use it without pulling in torch.
"""

from __future__ import annotations


class RecognizerError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(RecognizerError, ValueError):
    """The configuration (YAML or flags) is wrong; the message names the key and the fix."""

    exit_code = 2


class CheckpointError(RecognizerError):
    """A checkpoint is missing, unreadable, of an unknown format, or does not fit the model."""


class QuantizationError(RecognizerError):
    """Quantization was asked for but cannot be done."""


class SourceError(RecognizerError):
    """A video source cannot be opened or read."""


class PublisherError(RecognizerError):
    """The result publisher cannot be set up (bind failed, key files unusable)."""


class ClusterError(RecognizerError):
    """Cluster mode cannot start or go on: Ray is not installed or not reachable, a worker failed a request."""


class WorkerUnavailable(ClusterError):
    """A worker actor did not answer a call: its process or node is lost, Ray is restarting it, or it has
    not been placed yet (the cluster lacks room)."""


class ControlError(RecognizerError):
    """A control request (add, remove, update, list, reload) cannot be carried out, or got no reply."""
