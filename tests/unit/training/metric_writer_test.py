"""TensorBoard event files beside metrics.jsonl (`rdmjax.training.metric_writer`).

The files are read back without TensorBoard or TensorFlow: the TFRecord
framing parsed here (8-byte length, 4-byte masked CRC32C of it, the data,
4-byte masked CRC32C of the data) and each record decoded as tensorboardX's
`Event`.
"""

import json
import re
import shutil
import struct
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.record_writer import masked_crc32c
from tiny_run import tiny, workdir

from rdmjax import files
from rdmjax.stages import eval as eval_stage
from rdmjax.training import loop as train
from rdmjax.training import metric_writer

TRAIN_TAGS = {
  'train/loss': 'loss',
  'train/lr': 'lr',
  'train/batch_pearson': 'batch_pearson',
  'train/grad_norm': 'grad_norm',
  'train/pairs_per_s': 'pairs_per_s',
}
VAL_TAGS = {
  'val/spearman': 'val_spearman',
  'val/pearson': 'val_pearson',
  'val/r2': 'val_r2',
}


def _parse(path):
  """A file's Events; every byte must belong to a whole, intact record."""
  data, at, out = path.read_bytes(), 0, []
  while at < len(data):
    head = data[at : at + 8]
    (n,) = struct.unpack('<Q', head)
    (head_crc,) = struct.unpack('<I', data[at + 8 : at + 12])
    body = data[at + 12 : at + 12 + n]
    (body_crc,) = struct.unpack('<I', data[at + 12 + n : at + 16 + n])
    assert head_crc == masked_crc32c(head), f'{path.name}: length CRC'
    assert len(body) == n and body_crc == masked_crc32c(body), path.name
    out.append(Event.FromString(body))
    at += 16 + n
  return out


def _files(w):
  return sorted(
    p for p in (w / 'tensorboard').iterdir() if 'tfevents' in p.name
  )


def _scalars(w):
  """{tag: [(step, value), ...]} over the folder's files in name order."""
  out = {}
  for path in _files(w):
    events = _parse(path)
    assert events[0].file_version == 'brain.Event:2'
    for ev in events:
      for v in ev.summary.value:
        out.setdefault(v.tag, []).append((ev.step, v.simple_value))
  return out


def _rows(w):
  return [json.loads(x) for x in (w / 'metrics.jsonl').open()]


def _check_equal_rows(got, rows):
  """Every row's scalars at its step, once, equal to float32 precision."""
  for tags, rows_with in (
    (TRAIN_TAGS, rows),
    (VAL_TAGS, [r for r in rows if 'val_spearman' in r]),
  ):
    for tag, key in tags.items():
      steps, values = zip(*got[tag])
      assert list(steps) == [r['step'] for r in rows_with], tag
      np.testing.assert_array_equal(
        np.array(values, np.float32),
        np.array([r[key] for r in rows_with], np.float32),
        err_msg=tag,
      )


def _config(**over):
  return tiny(
    **{
      'train.steps': 6,
      'train.eval_every': 3,
      'ckpt.every': 3,
      'train.log_every': 1,
      'train.bootstrap': 20,
      'train.baselines': (),
      **over,
    }
  )


def test_train_and_eval_scalars_equal_metrics_jsonl(datadir, tmp_path):
  c = _config()
  w = workdir(datadir, tmp_path)
  train.train(c, w)
  rows = _rows(w)
  assert [r['step'] for r in rows] == [1, 2, 3, 4, 5, 6]
  got = _scalars(w)
  assert set(got) == set(TRAIN_TAGS) | set(VAL_TAGS)
  _check_equal_rows(got, rows)

  out = eval_stage.run(c, w)
  got = _scalars(w)
  assert len(_files(w)) == 2, 'training and eval: a file each'
  _check_equal_rows(got, rows)  # training's scalars untouched
  (step, value), *more = got['test/spearman']
  assert not more and step == out['step']
  assert np.float32(value) == np.float32(out['test']['spearman'])
  for k in ('pearson', 'r2'):
    assert got[f'test/{k}'] == [(step, pytest.approx(out['test'][k]))]
  frac = out['scores']['model']['fraction_of_ceiling']['value']
  assert got['test/fraction_of_ceiling'][0][1] == pytest.approx(frac)
  assert got['test/ceiling_spearman'][0][0] == step
  # Evaluation restarts nothing: no START that would hide later steps.
  eval_file = _parse(_files(w)[-1])
  assert not any(ev.HasField('session_log') for ev in eval_file)


def test_resumed_run_holds_each_step_once(datadir, tmp_path):
  c = _config()
  w = workdir(datadir, tmp_path)
  # Killed after step 5 before its checkpoint was written: ckpt/5 gone and
  # a half-written record at the end of the event file.
  train.train(c, w, stop_after=5)
  assert [s for s, _ in _scalars(w)['train/loss']] == [1, 2, 3, 4, 5]
  shutil.rmtree(w / 'ckpt' / '5')
  (crashed,) = _files(w)
  with crashed.open('ab') as f:
    f.write(struct.pack('<Q', 40) + b'\0\0\0\0' + b'torn')

  train.train(c, w)
  rows = _rows(w)
  assert [r['step'] for r in rows] == [1, 2, 3, 4, 5, 6]
  got = _scalars(w)  # every file parses whole: the torn tail is gone
  _check_equal_rows(got, rows)
  first, resumed = _files(w)
  assert first == crashed
  assert {ev.step for ev in _parse(first) if ev.HasField('summary')} == {
    1,
    2,
    3,
  }
  # The new file restarts at step 4 for a TensorBoard that had read the
  # lost tail (its first START at step 1 came with the first file).
  ev = _parse(resumed)[1]
  assert ev.session_log.status == SessionLog.START and ev.step == 4
  assert _parse(first)[1].session_log.status == SessionLog.START

  # A rerun of the finished run trains nothing and writes no file.
  train.train(c, w)
  assert _files(w) == [first, resumed]
  _check_equal_rows(_scalars(w), rows)


def test_off_writes_no_tensorboard_folder(datadir, tmp_path):
  c = _config(**{'train.steps': 3, 'train.tensorboard': False})
  w = workdir(datadir, tmp_path)
  train.train(c, w)
  eval_stage.run(c, w)
  assert (w / 'metrics.jsonl').is_file()
  assert not (w / 'tensorboard').exists()


def test_only_the_writer_process_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(files, 'is_writer', lambda: False)
  with metric_writer.MetricWriter(tmp_path / 'tb', resume_step=0) as tb:
    tb.row({'step': 1, 'loss': 0.5})
  assert not (tmp_path / 'tb').exists()


def test_flush_puts_rows_on_disk_before_close(tmp_path):
  tb = metric_writer.MetricWriter(tmp_path / 'tb')
  tb.row({'step': 7, 'loss': 0.25, 'val_spearman': float('nan'), 'wall_s': 1})
  tb.flush()
  (path,) = sorted((tmp_path / 'tb').iterdir())
  ev = _parse(path)[-1]
  assert ev.step == 7
  assert {v.tag: v.simple_value for v in ev.summary.value} == {
    'train/loss': 0.25,
    'val/spearman': pytest.approx(float('nan'), nan_ok=True),
  }
  tb.close()
  assert metric_writer.read_scalars(tmp_path / 'tb')['train/loss'] == [
    (7, 0.25)
  ]


def test_row_scalars_tags():
  row = dict(
    step=3,
    loss=1.5,
    lr=1e-3,
    pairs_per_s=10.0,
    wall_s=2.0,
    val_spearman=0.5,
    val_n_pairs=100,
    val_n_all=200,
  )
  assert metric_writer.row_scalars(row) == {
    'train/loss': 1.5,
    'train/lr': 1e-3,
    'train/pairs_per_s': 10.0,
    'val/spearman': 0.5,
  }


def test_cloud_folder_is_written_whole_at_each_flush(tmp_path, monkeypatch):
  """Object stores cannot append: each flush writes the file whole."""
  monkeypatch.setattr(metric_writer.paths, 'is_remote', lambda p: True)
  tb = metric_writer.MetricWriter(tmp_path / 'tb', resume_step=0)
  tb.row({'step': 1, 'loss': 1.0})
  tb.flush()
  staging = tb._staging
  assert metric_writer.read_scalars(tmp_path / 'tb') == {
    'train/loss': [(1, 1.0)]
  }
  tb.row({'step': 2, 'loss': 0.5})
  tb.close()
  assert not Path(staging).exists()
  got = metric_writer.read_scalars(tmp_path / 'tb')
  assert got == {'train/loss': [(1, 1.0), (2, 0.5)]}
  # A resume drops the later step, rewriting the object.
  metric_writer.MetricWriter(tmp_path / 'tb', resume_step=1).close()
  assert metric_writer.read_scalars(tmp_path / 'tb') == {
    'train/loss': [(1, 1.0)]
  }


def test_no_tensorflow_or_tensorboard_needed():
  """tensorboardX writes event files on protobuf alone."""
  names = {
    re.split(r'[^A-Za-z0-9_.-]', r.strip())[0].lower()
    for r in metadata.requires('tensorboardX') or []
  }
  assert not names & {'tensorflow', 'tensorflow-cpu', 'tensorboard'}, names
  pyproject = Path(__file__).resolve().parents[3] / 'pyproject.toml'
  deps = tomllib.loads(pyproject.read_text())['project']['dependencies']
  assert any(d.lower().startswith('tensorboardx') for d in deps), deps
  assert not [d for d in deps if re.match(r'tensorflow(?!-datasets)', d)]
