"""internals.py: each private API the package calls, behind one function,
still answering as the package expects under the installed Ray and torch."""

import logging
import socket
import threading
import time

import pytest

from tune_pipeline import internals


def test_the_ray_temp_folder_and_address_file_follow_ray_tmpdir(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert internals.ray_temp_dir() == tmp_path / "ray"
    assert internals.ray_address_file() == tmp_path / "ray" / "ray_current_cluster"


def test_the_bf16_check_answers_a_bool():
    assert internals.cpu_has_native_bf16() in (True, False)


def test_ray_tunes_unschedulable_warning_is_told_by_its_logger_not_its_words():
    def record(name, level, text="anything"):
        return logging.LogRecord(name, level, __file__, 1, text, None, None)

    assert internals.is_unschedulable_warning(record(internals.RAY_RESOURCE_LOGGER, logging.WARNING))
    assert not internals.is_unschedulable_warning(record(internals.RAY_RESOURCE_LOGGER, logging.INFO))
    assert not internals.is_unschedulable_warning(
        record("ray.tune", logging.WARNING, "the cluster not having enough resources"))
    # The logger the package names is Ray's own module's: a rename in Ray fails here.
    from ray.tune.execution import insufficient_resources_manager
    assert insufficient_resources_manager.logger.name == internals.RAY_RESOURCE_LOGGER


@pytest.mark.slow  # Ray's probe waits for its pubsub connection: about 5 s
def test_a_silent_listener_is_told_apart_from_a_ray_head():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert internals.probe_gcs(f"127.0.0.1:{listener.getsockname()[1]}", 0.5) == internals.GCS_SILENT


def test_an_exception_is_raised_in_another_thread():
    caught = []

    def spin():
        try:
            while True:
                time.sleep(0.01)
        except KeyboardInterrupt:
            caught.append(True)

    thread = threading.Thread(target=spin)
    thread.start()
    assert not internals.thread_may_be_importing(thread.ident)  # sleeping, not importing
    internals.raise_in_thread(thread.ident, KeyboardInterrupt)
    thread.join(10)
    assert caught == [True] and not thread.is_alive()
