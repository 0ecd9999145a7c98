"""A full disk is not an outage: the app on a 64 MB file system of its own, flooded with
uploads that nobody stylizes, frees the space by itself and keeps answering hits."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.support.app import EXAMPLES, launch_app, stop, wait_for_log
from tests.support.small_disk import tmpfs_prefix

pytestmark = pytest.mark.slow

FLOOD_FILE_BYTES = 2 << 20


def test_a_flood_of_uploads_fills_the_disk_and_the_server_recovers_by_itself(tmp_path, weights_dir):
    disk = tmp_path / "disk"
    disk.mkdir()
    proc, url, log_path = launch_app(
        tmp_path,
        weights_dir,
        env={"GRADIO_TEMP_DIR": str(disk / "gradio")},
        prefix=tmpfs_prefix(disk, "64m"),
        cache_dir=disk / "cache",
    )
    try:
        wait_for_log(log_path, "warm-up finished")
        client = Client(url, verbose=False)
        example = handle_file(str(EXAMPLES[0]))
        assert client.predict(example, "hayao", api_name="/stylize")[1].startswith("exact hit")

        refused = 0
        with httpx.Client(timeout=30) as http:
            for index in range(48):  # 96 MB of uploads nobody will stylize, into 64 MB
                junk = {"files": (f"left-behind-{index}.jpg", os.urandom(FLOOD_FILE_BYTES))}
                try:
                    accepted = http.post(f"{url}/gradio_api/upload", files=junk).status_code == 200
                except httpx.HTTPError:  # Gradio drops the connection when it cannot write
                    accepted = False
                refused += not accepted
        assert refused, "the flood never filled the disk: the test proves nothing"

        answers = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                badge = client.predict(example, "hayao", api_name="/stylize")[1]
            except Exception as error:  # the upload itself may fail while the disk is full
                answers.append(str(error))
                time.sleep(1)
                continue
            answers.append(badge)
            break
        assert answers[-1].startswith("exact hit"), answers  # the cache kept its entry
        assert not any("Something went wrong" in answer for answer in answers), answers
        log = log_path.read_text(errors="replace")
        assert "removed" in log and "temporary files" in log
    finally:
        stop(proc)
