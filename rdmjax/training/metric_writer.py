"""TensorBoard event files of a run's scalars, beside metrics.jsonl.

WORKDIR/tensorboard/ is one TensorBoard run: every metrics.jsonl row at its
step, training values as `train/<key>` (loss, lr, batch_pearson, grad_norm,
pairs_per_s) and validation scores as `val/<key>` (spearman, pearson, r2);
`--mode=eval` adds the evaluated checkpoint's test scores at its step as
`test/<key>` (`eval_scalars`). Sub-runs in workdirs of their own (leaked/,
folds/seedN/, rois/ROI/, sweep runs, a group run's subjNN/) have their own
tensorboard/ folders, so `tensorboard --logdir WORKDIR` shows them all.
`train.tensorboard = False` writes none.

Written without TensorFlow: tensorboardX's protobuf messages and record
writer (TFRecord framing: 8-byte length, masked CRC32C of the length, the
serialized `Event`, masked CRC32C of the data). Not tensorboardX's
`SummaryWriter`: it queues events to a thread and its `flush()` does not
wait for the queue, and two writers opened in one second (a resume, an
eval right after training) get one file name, the second truncating the
first. Here every write is synchronous, `flush()` (at each evaluation and
checkpoint) puts all rows so far on disk, and each writer opens a file of
its own. Only the process that writes files (`files.is_writer`) writes;
on cloud storage, whose objects cannot be appended to, each flush writes
the (small) file whole.

Resuming after a crash: training restarts from its newest checkpoint, so
the rows of later steps (the lost tail) are written again, possibly with
other values. As `rdmjax.training.loop` drops them from metrics.jsonl, the writer
drops the events of steps after the resumed one from the folder's files
before it writes (a `resume_step`), so the folder holds each step once.
A TensorBoard already showing the run has read the lost tail: the new
file starts with a `SessionLog.START` at the first new step, on which
TensorBoard's Python loader drops what it holds at that step and later
(every writer writes one: TensorBoard ignores a run's first START), and
its Rust data server drops a series' points at a step and later whenever
an earlier step arrives. An evaluation writes no START (it would hide the
training steps after its checkpoint); a second evaluation of one
checkpoint adds a second point at the same step.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from rdmjax import files, paths

FOLDER = 'tensorboard'
# Not plotted: the step itself, the clock (TensorBoard keeps every point's
# wall time) and counts (`n_*`, `row_scalars`).
SKIP = ('step', 'wall_s')
SPLITS = ('val', 'test')


def enabled(config) -> bool:
  """config.train.tensorboard (default True)."""
  return bool(config.train.get('tensorboard', True))


def _number(v: Any) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not (
    isinstance(v, (bool, np.bool_))
  )


def row_scalars(row: dict[str, Any]) -> dict[str, float]:
  """A metrics.jsonl row's TensorBoard scalars: {tag: value}.

  `val_spearman` -> `val/spearman` (also `test_`), any other number ->
  `train/<key>`; `step`, `wall_s`, counts (`n_*`) and non-numbers are left
  out.
  """
  out = {}
  for key, v in row.items():
    if key in SKIP or not _number(v):
      continue
    split, name = 'train', key
    head, _, rest = key.partition('_')
    if head in SPLITS and rest:
      split, name = head, rest
    if name.startswith('n_'):
      continue
    out[f'{split}/{name}'] = float(v)
  return out


def eval_scalars(out: dict[str, Any]) -> dict[str, float]:
  """`--mode=eval`'s test scalars (`rdmjax.stages.eval.run`'s entry):
  test/spearman, test/pearson, test/r2, test/fraction_of_ceiling and each
  baseline's and the ceiling's Spearman on the same pairs as
  test/<name>_spearman."""
  tags = {f'test/{k}': v for k, v in out['test'].items()}
  model = out.get('scores', {}).get('model', {})
  if 'fraction_of_ceiling' in model:
    tags['test/fraction_of_ceiling'] = model['fraction_of_ceiling']['value']
  for name, stats in out.get('scores', {}).items():
    if name != 'model' and 'spearman' in stats:
      tags[f'test/{name}_spearman'] = stats['spearman']['value']
  return {
    t: float(v)
    for t, v in tags.items()
    if _number(v) and not t.startswith('test/n_')
  }


def _pb():
  """tensorboardX's Event, Summary and SessionLog messages (imported on
  first use: the package imports PyTorch where it is installed)."""
  from tensorboardX.proto import event_pb2, summary_pb2

  return event_pb2.Event, summary_pb2.Summary, event_pb2.SessionLog


def records(data: bytes) -> Iterator[bytes]:
  """The records of TFRecord-framed bytes; stops at a torn or damaged
  record (what a crash mid-write leaves at the end of a file)."""
  # tensorboardX, on first use: it imports PyTorch where installed.
  from tensorboardX.record_writer import masked_crc32c

  at = 0
  while at + 12 <= len(data):
    head = data[at : at + 8]
    (n,) = struct.unpack('<Q', head)
    (crc,) = struct.unpack('<I', data[at + 8 : at + 12])
    end = at + 12 + n + 4
    if crc != masked_crc32c(head) or end > len(data):
      return
    body = data[at + 12 : at + 12 + n]
    if struct.unpack('<I', data[end - 4 : end])[0] != masked_crc32c(body):
      return
    yield body
    at = end


def event_files(logdir: str | os.PathLike) -> list:
  """The folder's event files, in TensorBoard's (name) order."""
  logdir = paths.path(logdir)
  if not logdir.is_dir():
    return []
  return sorted(p for p in logdir.iterdir() if 'tfevents' in p.name)


def read_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple]]:
  """{tag: [(step, value), ...]} of every scalar in the folder's files, in
  file order (no purging: after `resume_step` each step is there once)."""
  Event = _pb()[0]
  out: dict[str, list[tuple]] = {}
  for path in event_files(logdir):
    for rec in records(path.read_bytes()):
      ev = Event.FromString(rec)
      for v in ev.summary.value:
        out.setdefault(v.tag, []).append((ev.step, v.simple_value))
  return out


def _write_whole(path, data: bytes) -> None:
  """Replaces a file's bytes: locally through a temporary name without
  'tfevents' (TensorBoard never reads it), remotely in one object write."""
  if paths.is_remote(path):
    path.write_bytes(data)
    return
  tmp = path.with_name(f'.{path.name[-12:]}.{os.getpid()}.tmp')
  tmp.write_bytes(data)
  tmp.replace(path)


def drop_after(logdir: str | os.PathLike, step: int) -> int:
  """Removes the scalar events of steps after `step` from the folder's
  event files (a file left with none is deleted); returns how many."""
  Event = _pb()[0]
  dropped = 0
  for path in event_files(logdir):
    keep, n_summaries, n_dropped = [], 0, 0
    for rec in records(data := path.read_bytes()):
      ev = Event.FromString(rec)
      if ev.HasField('summary') and ev.step > step:
        n_dropped += 1
        continue
      n_summaries += ev.HasField('summary')
      keep.append(rec)
    framed = b''.join(_frame(r) for r in keep)
    if not n_summaries and (n_dropped or framed != data):
      path.unlink()
    elif n_dropped or framed != data:  # also a torn tail
      _write_whole(path, framed)
    dropped += n_dropped
  return dropped


def _frame(rec: bytes) -> bytes:
  """rec framed as tensorboardX's RecordWriter writes it."""
  # tensorboardX, on first use: it imports PyTorch where installed.
  from tensorboardX.record_writer import masked_crc32c

  head = struct.pack('<Q', len(rec))
  return b''.join(
    (
      head,
      struct.pack('<I', masked_crc32c(head)),
      rec,
      struct.pack('<I', masked_crc32c(rec)),
    )
  )


class MetricWriter:
  """Writes scalars to one new event file in logdir (writer process only).

  Args:
    logdir: the folder (WORKDIR/tensorboard).
    enabled: False: every method does nothing.
    resume_step: training (re)starts after this step (0: from scratch):
      events of later steps are first dropped from the folder's files and
      the new file starts with a SessionLog.START at resume_step + 1. None
      (an evaluation): nothing dropped, no START.

  The file is created on the first write; `flush()` puts every write so
  far on disk; `close()` (or the end of a `with` block) flushes and
  closes. Use one writer per process and folder at a time.
  """

  def __init__(
    self,
    logdir: str | os.PathLike,
    enabled: bool = True,
    resume_step: int | None = None,
  ):
    self.logdir = paths.path(logdir)
    self.enabled = bool(enabled) and files.is_writer()
    self.path = None
    self._file = None
    self._staging = None
    self._start = None if resume_step is None else int(resume_step) + 1
    if self.enabled and resume_step is not None:
      drop_after(self.logdir, int(resume_step))

  def _open(self):
    # tensorboardX, on first use: it imports PyTorch where installed.
    from tensorboardX.record_writer import RecordWriter

    Event, _, SessionLog = _pb()
    ns = time.time_ns()
    # TensorBoard reads a folder's files in name order: seconds, then the
    # rest of the clock, so a resumed run's file comes after the crashed
    # one's even within one second.
    name = (
      f'events.out.tfevents.{ns // 10**9}.{socket.gethostname()}.'
      f'{ns % 10**9:09d}.{os.getpid()}'
    )
    self.path = self.logdir / name
    self.logdir.mkdir(parents=True, exist_ok=True)
    if paths.is_remote(self.logdir):  # written whole at each flush
      self._staging = tempfile.mkdtemp(prefix='rdmjax_tb_')
      local = os.path.join(self._staging, name)
    else:
      local = os.fspath(self.path)
    self._file = RecordWriter(local)
    self._local = local
    now = time.time()
    self._write(Event(wall_time=now, file_version='brain.Event:2'))
    if self._start is not None:
      start = SessionLog(status=SessionLog.START)
      self._write(Event(wall_time=now, step=self._start, session_log=start))

  def _write(self, event) -> None:
    self._file.write(event.SerializeToString())

  def scalars(
    self, step: int, values: dict[str, float], wall_time: float | None = None
  ) -> None:
    """Writes {tag: value} at step, as one event."""
    if not self.enabled or not values:
      return
    if self._file is None:
      self._open()
    Event, Summary, _ = _pb()
    summary = Summary(
      value=[
        Summary.Value(tag=tag, simple_value=float(v))
        for tag, v in values.items()
      ]
    )
    when = time.time() if wall_time is None else wall_time
    self._write(Event(wall_time=when, step=int(step), summary=summary))

  def row(self, row: dict[str, Any]) -> None:
    """A metrics.jsonl row at its step (`row_scalars`)."""
    self.scalars(int(row['step']), row_scalars(row))

  def flush(self) -> None:
    """Puts every write so far on disk (or the cloud object)."""
    if self._file is None:
      return
    self._file.flush()
    if self._staging is not None:
      with open(self._local, 'rb') as f:
        self.path.write_bytes(f.read())

  def close(self) -> None:
    if self._file is None:
      return
    self.flush()
    self._file.close()
    self._file = None
    if self._staging is not None:
      shutil.rmtree(self._staging, ignore_errors=True)
      self._staging = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def for_run(config, workdir, resume_step: int | None = None) -> MetricWriter:
  """The writer of WORKDIR/tensorboard (off with train.tensorboard=False)."""
  return MetricWriter(
    paths.path(workdir) / FOLDER, enabled(config), resume_step
  )


__all__ = [
  'MetricWriter',
  'drop_after',
  'eval_scalars',
  'for_run',
  'read_scalars',
  'records',
  'row_scalars',
]
