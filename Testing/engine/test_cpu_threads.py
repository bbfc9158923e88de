"""The network runs on the cores other programs leave free, and gives the threads back after."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from EoFormerSegmentationLib import cpu_threads, inference
from EoFormerSegmentationLib.benchmark import BusyCores

needs_two_cores = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="needs a machine with at least two cores"
)


class _ThreadRecorder(torch.nn.Module):
    """A point-wise network that records how many threads PyTorch gave each pass."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Conv3d(4, 3, 1)
        self.threads = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.append(torch.get_num_threads())
        return self.layer(x)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_thread_count_follows_the_free_cores():
    assert cpu_threads.threads_for_free_cores(4, None) == 4  # load unknown: as asked
    assert cpu_threads.threads_for_free_cores(4, 0.0) == 1  # never fewer than one
    assert cpu_threads.threads_for_free_cores(2, 0.9) == 1
    assert cpu_threads.threads_for_free_cores(2, 1.8) == 2
    assert cpu_threads.threads_for_free_cores(2, 7.5) == 2  # never more than asked


def test_free_cores_is_a_share_of_this_process_cores():
    free = cpu_threads.free_cores(0.05)
    assert free is not None and 0.0 <= free <= len(os.sched_getaffinity(0))


@needs_two_cores
def test_a_segmentation_pass_avoids_the_cores_others_keep_busy(two_threads):
    network = _ThreadRecorder()
    volume = np.random.default_rng(0).normal(size=(4, 32, 32, 32)).astype(np.float32)
    with BusyCores(len(os.sched_getaffinity(0))):
        busy = inference.predict_probabilities(network, volume, torch.device("cpu"), mode="whole")
    assert network.threads == [1]
    # the process's own setting is back after the pass
    assert torch.get_num_threads() == 2
    # same answer whatever the threads
    network.threads.clear()
    with cpu_threads.adapted_threads(torch.device("cpu"), enabled=False) as threads:
        assert threads == 2
    quiet = inference.predict_probabilities(network, volume, torch.device("cpu"), mode="whole")
    np.testing.assert_allclose(busy, quiet, atol=1e-6)


@needs_two_cores
def test_adaptation_can_be_turned_off(two_threads, monkeypatch):
    monkeypatch.setenv(cpu_threads.ADAPT_THREADS_ENV, "0")
    network = _ThreadRecorder()
    volume = np.zeros((4, 16, 16, 16), dtype=np.float32)
    with BusyCores(len(os.sched_getaffinity(0))):
        inference.predict_probabilities(network, volume, torch.device("cpu"), mode="whole")
    assert network.threads == [2]


def test_the_engines_own_reader_processes_are_not_counted_as_others():
    import subprocess
    import sys

    reader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ticks = cpu_threads._own_ticks()
        assert ticks is not None and os.getpid() in ticks and reader.pid in ticks
    finally:
        reader.kill()
        reader.wait()
