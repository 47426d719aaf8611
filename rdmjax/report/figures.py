"""Figures drawn beside the computation, not in its way.

Stages call a plot function (module-level in `rdmjax.report`, arrays in, a
PNG out: a parameter named `path`) through `draw(fn, *args, **kw)`, which
returns that path at once. Inside `collecting(workdir, stage)`, which
`rdmjax.run.pipeline.run_stages` opens around each stage, the call is
queued to worker processes (`Workers`: started on first use, importing
numpy, matplotlib and the plot's module, never JAX) while the stage goes on
computing; the stage ends by waiting for its figures, and the seconds it
waited are its figure overhead (`Collected.wait_s`). Outside, `draw` draws
in place, as a library call or a test expects.

A figure that fails, or a worker that dies, costs that figure alone: one
line on stderr, the run's results and report still written.

Each stage's figures are recorded in WORKDIR/report/figures/<stage>.pkl
(each plot function's name and its inputs), so that `--mode=report`
(`rdmjax.stages.report`) redraws them after a change to a plot function,
without recomputing anything (`redraw`).

Workers: `$RDMJAX_FIGURE_WORKERS` (0: draw in place, in the stage's
process), else half the CPU cores, 1 to 4.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rdmjax import paths
from rdmjax.files import atomic_write, is_writer
from rdmjax.report import plots

WORKERS_ENV = 'RDMJAX_FIGURE_WORKERS'
RECORDS = 'report/figures'  # WORKDIR/RECORDS/<stage>.pkl


def default_workers() -> int:
  """`$RDMJAX_FIGURE_WORKERS` if set, else half the cores (1 to 4)."""
  env = os.environ.get(WORKERS_ENV, '').strip()
  if env:
    return max(0, int(env))
  return min(4, max(1, (os.cpu_count() or 1) // 2))


@dataclasses.dataclass(frozen=True)
class Job:
  """One figure: its plot function by name, its pickled inputs, the PNG it
  writes and the vector formats beside it (`plots.vector_formats()` of the
  process that asked for it)."""

  fn: str  # 'module:qualname'
  inputs: bytes  # pickle of (args, kwargs)
  path: str
  vector: tuple[str, ...]


def _job(fn: Callable, args: tuple, kw: dict) -> Job:
  bound = inspect.signature(fn).bind(*args, **kw)
  if 'path' not in bound.arguments:
    raise TypeError(f'{fn.__qualname__}: a plot function takes path=')
  name = f'{fn.__module__}:{fn.__qualname__}'
  if '<' in name:
    raise TypeError(f'{name}: plot functions are module-level')
  return Job(
    name,
    pickle.dumps((args, kw), protocol=5),
    os.fspath(bound.arguments['path']),
    plots.vector_formats(),
  )


def _function(name: str) -> Callable:
  """The plot function a job names ('module:qualname')."""
  module, qualname = name.split(':')
  return getattr(importlib.import_module(module), qualname)


def run_job(job: Job) -> None:
  """Draws one figure here (a worker, or in place)."""
  fn = _function(job.fn)
  args, kw = pickle.loads(job.inputs)
  old = plots.VECTOR_FORMATS
  plots.VECTOR_FORMATS = job.vector
  try:
    fn(*args, **kw)
  finally:
    plots.VECTOR_FORMATS = old


def _describe(e: BaseException) -> str:
  return f'{type(e).__name__}: {e}'.splitlines()[0][:300]


class Workers:
  """Worker processes that draw `Job`s from a queue, one feeding thread
  each (the stage's thread only puts jobs on the queue). A worker that
  dies is replaced for the next job."""

  def __init__(self, n: int):
    self.n = n
    self._queue: queue.Queue = queue.Queue()
    self._threads: list[threading.Thread] = []
    self._lock = threading.Lock()
    self._failures: list[tuple[str, str]] = []

  def start(self) -> None:
    """Starts the workers now (else on the first job): they load
    matplotlib while the stage reads its data."""
    if not self._threads:
      for k in range(self.n):
        t = threading.Thread(
          target=self._feed, name=f'figures-{k}', daemon=True
        )
        t.start()
        self._threads.append(t)

  def put(self, job: Job) -> None:
    self.start()
    self._queue.put(job)

  def join(self) -> list[tuple[str, str]]:
    """Waits for every queued job; returns (path, why) of each failure
    since the last join."""
    self._queue.join()
    with self._lock:
      out, self._failures = self._failures, []
    return out

  def close(self) -> None:
    for _ in self._threads:
      self._queue.put(None)
    for t in self._threads:
      t.join(timeout=30)
    self._threads = []

  def _feed(self) -> None:
    try:
      proc = _spawn()  # at once: it loads matplotlib while the stage works
    except OSError:
      proc = None  # tried again for the first job, which reports it
    while True:
      job = self._queue.get()
      if job is None:
        self._queue.task_done()
        break
      try:
        if proc is None:
          proc = _spawn()
        pickle.dump(job, proc.stdin, protocol=5)
        proc.stdin.flush()
        why = pickle.load(proc.stdout)
      except (EOFError, OSError, pickle.UnpicklingError):
        code = proc.wait() if proc is not None else None
        why = f'the figure worker died (exit code {code})'
        proc = None
      except Exception as e:  # noqa: BLE001 (reported, never raised)
        why = _describe(e)
      if why:
        with self._lock:
          self._failures.append((job.path, why))
      self._queue.task_done()
    if proc is not None:
      proc.stdin.close()
      proc.wait()


def _spawn() -> subprocess.Popen:
  """A worker: this Python, `serve` on its stdin and stdout (its prints go
  to stderr), inheriting the environment."""
  return subprocess.Popen(
    [
      sys.executable,
      '-c',
      'from rdmjax.report import figures; figures.serve()',
    ],
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
  )


def serve() -> None:
  """A worker's loop: a pickled `Job` in, '' (drawn) or why not out, until
  its input closes."""
  out = os.fdopen(os.dup(1), 'wb')
  os.dup2(2, 1)  # a plot's stray print cannot break the replies
  inp = sys.stdin.buffer
  # The plot modules before the first job, while the stage computes.
  importlib.import_module('rdmjax.report.rdm_plots')
  importlib.import_module('rdmjax.report.train_plots')
  plots.pyplot()
  while True:
    try:
      job = pickle.load(inp)
    except EOFError:
      return
    try:
      run_job(job)
      why = ''
    except Exception as e:  # noqa: BLE001 (the parent reports it)
      why = _describe(e)
    pickle.dump(why, out)
    out.flush()


@dataclasses.dataclass
class Collected:
  """A stage's figures: how many, those that failed, and the seconds the
  stage waited for them at its end."""

  n: int = 0
  failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  wait_s: float = 0.0


class _Stage:
  def __init__(self, workers: Workers | None):
    self.workers = workers
    self.jobs: list[Job] = []  # recorded for --mode=report
    self.n = 0  # drawn
    self.failed: list[tuple[str, str]] = []

  def put(self, job: Job) -> None:
    self.n += 1
    if self.workers is None:
      _in_place(job, self.failed)
    else:
      self.workers.put(job)


_active: _Stage | None = None


def draw(fn: Callable, *args, **kw) -> Path:
  """fn(*args, **kw), a plot function writing the PNG at its `path`: in a
  worker inside `collecting`, else here; returns that path."""
  if _active is None:
    return paths.path(fn(*args, **kw))
  if not is_writer():  # the writer draws; the others pickle nothing
    return paths.path(inspect.signature(fn).bind(*args, **kw).arguments['path'])
  job = _job(fn, args, kw)
  _active.jobs.append(job)
  _active.put(job)
  return paths.path(job.path)


def _in_place(job: Job, failed: list) -> None:
  try:
    run_job(job)
  except Exception as e:  # noqa: BLE001 (reported as one line)
    failed.append((job.path, _describe(e)))


@contextlib.contextmanager
def collecting(
  workdir, stage: str, workers: Workers | None = None
) -> Iterator[Collected]:
  """Figures drawn inside go to `workers` (None: in place) and are waited
  for, and recorded for `--mode=report`, on the way out; each failure is
  one line on stderr."""
  global _active
  outer, _active = _active, _Stage(workers)
  got = Collected()
  try:
    yield got
  finally:
    st, _active = _active, outer
    t0 = time.perf_counter()
    failed = st.failed + (workers.join() if workers is not None else [])
    got.wait_s, got.n, got.failed = (
      time.perf_counter() - t0,
      st.n,
      failed,
    )
    if st.jobs and is_writer():
      record = paths.path(workdir) / RECORDS / f'{stage}.pkl'
      rec = {'workdir': os.fspath(workdir), 'jobs': st.jobs}
      atomic_write(record, pickle.dumps(rec, protocol=5))
    for path, why in failed:
      print(f'rdmjax: figure {path} not drawn: {why}', file=sys.stderr)


def recorded(workdir) -> dict[str, list[Job]]:
  """Stage -> its recorded figures (`collecting`), in the order drawn, each
  writing into workdir (also a workdir moved since)."""
  folder = paths.path(workdir) / RECORDS
  if not folder.is_dir():
    return {}
  out = {}
  for p in sorted(folder.glob('*.pkl')):
    rec = pickle.loads(p.read_bytes())
    out[p.stem] = [_moved(j, rec['workdir'], workdir) for j in rec['jobs']]
  return out


def _moved(job: Job, old, new) -> Job:
  """job with its path under workdir new where it was under old."""
  try:
    rel = Path(job.path).relative_to(os.fspath(old))
  except ValueError:
    return job
  path = paths.path(new) / rel
  if os.fspath(path) == job.path:
    return job
  args, kw = pickle.loads(job.inputs)
  bound = inspect.signature(_function(job.fn)).bind(*args, **kw)
  bound.arguments['path'] = path
  inputs = pickle.dumps((bound.args, bound.kwargs), protocol=5)
  return dataclasses.replace(job, inputs=inputs, path=os.fspath(path))


def redraw(workdir) -> int:
  """Draws every recorded figure of workdir again (`--mode=report`), with
  today's plot code and vector formats: inside `collecting`, by its
  workers (not recorded again), else here; returns how many."""
  st = _active or _Stage(None)
  # Today's vector formats (--vector_figures), not those of the run.
  vector = plots.vector_formats()
  jobs = [
    dataclasses.replace(j, vector=vector)
    for js in recorded(workdir).values()
    for j in js
  ]
  for job in jobs:
    st.put(job)
  for path, why in st.failed if st is not _active else ():
    print(f'rdmjax: figure {path} not drawn: {why}', file=sys.stderr)
  return len(jobs)
