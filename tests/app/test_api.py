"""The running app through `gradio_client`, as an API caller uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.support.app import EXAMPLES, reencode, wait_for_log

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(running_app):
    return Client(running_app, verbose=False)


def call(client, path, style="hayao", api_name="/stylize"):
    image, badge, info = client.predict(handle_file(str(path)), style, api_name=api_name)
    return Image.open(image), badge, info


def test_round_trip_miss_exact_fuzzy_miss_and_bad_file(client, unseen_photos, tmp_path):
    photo = unseen_photos[5]
    image, badge, info = call(client, photo)
    assert info["kind"] == "miss" and badge.startswith("generated")
    assert info["style"] == "hayao" and image.size == (info["width"], info["height"])

    image2, badge, info = call(client, photo)
    assert info["kind"] == "exact" and info["distance"] == 0 and badge.startswith("exact hit")
    assert image2.size == image.size

    copy = tmp_path / "copy.webp"
    copy.write_bytes(reencode(photo, "WEBP", quality=80))
    _, badge, info = call(client, copy)
    assert info["kind"] == "fuzzy"
    assert 0 <= info["distance"] <= info["threshold"]
    assert f"distance {info['distance']} of 64" in badge

    _, _, info = call(client, unseen_photos[6])
    assert info["kind"] == "miss"

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(photo.read_bytes()[:200])
    with pytest.raises(AppError) as error:
        call(client, bad)
    assert "incomplete" in str(error.value).lower()

    # the server is still up and the cache still holds what it had
    _, _, info = call(client, photo)
    assert info["kind"] == "exact"


def test_regenerate_endpoint_skips_the_cache(client, unseen_photos):
    photo = unseen_photos[7]
    call(client, photo)
    _, badge, info = call(client, photo, api_name="/regenerate")
    assert info["kind"] == "miss" and info["cached"] is False and "cache skipped" in badge


def test_empty_file_is_a_clear_error(client, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AppError) as error:
        call(client, empty)
    assert str(error.value).strip()


def test_examples_are_exact_hits_on_the_first_visit(client, running_app_process):
    """The app warms its cache with the examples in the background at start, so the first
    visitor's click on an example is an exact hit (no inference on the request)."""
    _, log_path = running_app_process
    log = wait_for_log(log_path, "warm-up finished")
    assert f"warm-up finished: {len(EXAMPLES)} examples for style hayao" in log
    assert "0 failed" in log
    for example in EXAMPLES:
        _, badge, info = call(client, example)
        assert info["kind"] == "exact" and badge.startswith("exact hit"), example.name


def test_a_photo_given_as_a_link_is_refused_without_fetching_it(client, unseen_photos):
    """Gradio would download an http(s) input path with no size cap; the app refuses it."""
    from tests.support.http_server import running_server

    with running_server() as site:
        site.serve("/photo.jpg", unseen_photos[0].read_bytes())
        with pytest.raises(AppError) as error:
            client.predict(handle_file(site.url("/photo.jpg")), "hayao", api_name="/stylize")
        assert site.requests == []  # nothing was fetched
    assert "link" in str(error.value).lower()
    _, _, info = call(client, unseen_photos[0])  # the same photo uploaded as a file works
    assert info["kind"] in ("miss", "exact")


def test_a_refusal_logs_one_line_not_a_traceback(client, running_app_process, tmp_path):
    _, log_path = running_app_process
    text = tmp_path / "notes.jpg"
    text.write_bytes(b"just some text, named like a photo\n" * 10)
    for _ in range(3):
        with pytest.raises(AppError) as error:
            call(client, text)
        assert "not an image" in str(error.value)
    log = wait_for_log(log_path, "refused: The uploaded file is not an image")
    assert log.count("refused: The uploaded file is not an image") >= 3
    assert "Traceback" not in log


def test_an_api_path_that_is_not_a_file_is_refused(running_app_process):
    """A raw API call may name a folder (Gradio's own upload folder, say) as the photo."""
    import httpx

    url, log_path = running_app_process
    with httpx.Client(timeout=30) as http:
        uploaded = http.post(f"{url}/gradio_api/upload", files={"files": ("a.jpg", EXAMPLES[0].read_bytes())})
        upload_folder = Path(uploaded.json()[0]).parent.parent  # the folder Gradio puts uploads in
        folder = {"path": str(upload_folder), "meta": {"_type": "gradio.FileData"}}
        event = http.post(f"{url}/gradio_api/call/stylize", json={"data": [folder, "hayao"]}).json()
        stream = http.get(f"{url}/gradio_api/call/stylize/{event['event_id']}").text
    assert "event: error" in stream and "not an uploaded file" in stream
    assert "Traceback" not in log_path.read_text(errors="replace")


def test_the_api_names_exactly_its_three_endpoints(client):
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(named) == ["/regenerate", "/stylize", "/stylize_video"]


def test_a_clip_through_the_api_then_again_from_the_cache(client, tmp_path):
    from tests.support import clips

    source = clips.write_video(
        tmp_path / "api.mp4",
        clips.still_shot(6, (200, 112)) + clips.cut(6, (200, 112)),
        fps=6,
        sound=clips.Tone(),
    )
    video, badge, info = client.predict(handle_file(str(source)), "hayao", api_name="/stylize_video")
    assert Path(video).suffix == ".mp4" and Path(video).stat().st_size > 0
    assert info["kind"] == "miss" and info["frames"] == 12 and info["audio"] is True
    assert info["model_runs"] == info["miss"] < 12  # the still frames ran the model once each shot
    assert info["exact"] + info["fuzzy"] + info["coalesced"] + info["miss"] == 12
    assert badge.startswith("12 frames:") and "model runs" in badge
    _, badge, info = client.predict(handle_file(str(source)), "hayao", api_name="/stylize_video")
    assert (
        info["kind"] == "exact" and info["model_runs"] == 0 and badge.startswith("whole clip from the cache")
    )
