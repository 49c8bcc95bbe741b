"""The run's row in TensorBoard's HParams tab: one small event file in the run folder, rewritten at every
start of `vqa train` so that a resume that changes train.epochs shows the new value.

TensorBoard keeps the first metadata it reads for a tag and reads a folder's files in name order, so
this file's name sorts before every SummaryWriter file. It holds the experiment (the table's typed
columns, the same in every run) and the session start (this run's values); the metrics are the last
values of scalars in the run's own event files, so a killed run shows them up to its last epoch.
"""

from __future__ import annotations

import io as _io
import time
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from vqa import io
from vqa.config import Config

FILE_NAME = "events.out.tfevents.0000000000.hparams"
# HParams metric tag -> its name in the table; each is a scalar RunLog writes every epoch
METRICS = {"best/accuracy": "best accuracy", "best/epoch": "best epoch", "val/loss": "final val loss"}
_TYPES = {str: api_pb2.DATA_TYPE_STRING, float: api_pb2.DATA_TYPE_FLOAT64, int: api_pb2.DATA_TYPE_FLOAT64}
_HPARAMS = dict.fromkeys(("model", "loss", "debias", "soft_target", "source", "data"), str)
_HPARAMS |= {"seed": int, "lr": float, "batch_size": int, "epochs": int}


def hparams_of(cfg: Config) -> dict[str, str | float]:
    """The values of one run, keys as in _HPARAMS (train.debias read with a default: a config without
    the key trains the plain model)."""
    values = {
        "model": cfg.model.name,
        "loss": cfg.train.loss,
        "debias": str(getattr(cfg.train, "debias", "none") or "none"),
        "soft_target": cfg.data.soft_target,
        "source": cfg.data.source,
        "data": cfg.data.root,
        "seed": cfg.train.seed,
        "lr": cfg.train.lr,
        "batch_size": cfg.train.batch_size,
        "epochs": cfg.train.epochs,
    }
    return {k: float(v) if _HPARAMS[k] is not str else v for k, v in values.items()}


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return summary


def _value(v: str | float) -> object:
    from google.protobuf import struct_pb2

    return struct_pb2.Value(string_value=v) if isinstance(v, str) else struct_pb2.Value(number_value=v)


def summaries(cfg: Config, now: float) -> list[summary_pb2.Summary]:
    """[the experiment, this run's session start] as HParams plugin summaries."""
    experiment = api_pb2.Experiment(
        time_created_secs=now,
        hparam_infos=[api_pb2.HParamInfo(name=k, type=_TYPES[t]) for k, t in _HPARAMS.items()],
        metric_infos=[
            api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t), display_name=n) for t, n in METRICS.items()
        ],
    )
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=now)
    for key, value in hparams_of(cfg).items():
        start.hparams[key].CopyFrom(_value(value))
    data = plugin_data_pb2.HParamsPluginData
    return [
        _summary(metadata.EXPERIMENT_TAG, data(experiment=experiment)),
        _summary(metadata.SESSION_START_INFO_TAG, data(session_start_info=start)),
    ]


def write_hparams(run_dir: Path, cfg: Config) -> None:
    """RUN/events.out.tfevents.0000000000.hparams, written atomically (step 0: never purged)."""
    now = time.time()
    buffer = _io.BytesIO()
    writer = RecordWriter(buffer)
    events = [event_pb2.Event(wall_time=now, file_version="brain.Event:2")]
    events += [event_pb2.Event(wall_time=now, step=0, summary=s) for s in summaries(cfg, now)]
    for event in events:
        writer.write(event.SerializeToString())
    io.write_bytes_atomic(run_dir / FILE_NAME, buffer.getvalue())
