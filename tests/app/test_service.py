"""The cached stylize service end to end, in process, with the real model and a real cache."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from animegan.errors import ImageError, UnknownStyleError
from cache_store import ResultCache
from stylize_service.service import StylizeService
from tests.support.app import TEST_MAX_SIDE


@pytest.fixture()
def service(tmp_path, weights_dir):
    cache = ResultCache(tmp_path / "cache")
    yield StylizeService(cache, weights_dir=weights_dir, max_side=TEST_MAX_SIDE)
    cache.close()


def decode(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


def test_miss_then_exact_then_fuzzy_then_other_photo(service, photo_paths):
    photo = photo_paths[0]
    first = service.stylize(photo, "hayao")
    assert first.kind == "miss"
    out = decode(first.png)
    assert max(out.size) == TEST_MAX_SIDE
    src = Image.open(photo)
    assert abs(out.width / out.height - src.width / src.height) < 0.02  # never stretched

    again = service.stylize(photo.read_bytes(), "hayao")
    assert (again.kind, again.distance) == ("exact", 0)
    assert again.png == first.png

    small_jpeg = io.BytesIO()
    Image.open(photo).convert("RGB").resize((src.width // 2, src.height // 2)).save(
        small_jpeg, "JPEG", quality=60
    )
    near = service.stylize(small_jpeg.getvalue(), "hayao")
    assert near.kind == "fuzzy"
    assert 0 <= near.distance <= near.threshold
    # fitted to what a miss would have produced for this upload
    expected = Image.open(io.BytesIO(small_jpeg.getvalue()))
    expected_side = min(TEST_MAX_SIDE, max(expected.size))
    assert max(decode(near.png).size) == expected_side

    other = service.stylize(photo_paths[-1], "hayao")
    assert other.kind == "miss"
    assert other.png != first.png


def test_regenerate_skips_the_cache_and_refreshes_it(service, photo_paths):
    photo = photo_paths[1]
    service.stylize(photo, "hayao")
    regenerated = service.stylize(photo, "hayao", use_cache=False)
    assert regenerated.kind == "miss" and not regenerated.cached
    assert "cache skipped" in regenerated.badge()
    assert service.stylize(photo, "hayao").kind == "exact"


@pytest.mark.parametrize(
    "payload, reason",
    [(b"", "empty"), (b"this is not an image at all", "not_image")],
)
def test_bad_uploads_raise_typed_errors_and_keep_the_cache(service, photo_paths, payload, reason):
    photo = photo_paths[2]
    service.stylize(photo, "hayao")
    with pytest.raises(ImageError) as info:
        service.stylize(payload, "hayao")
    assert info.value.reason == reason
    assert str(info.value)  # a sentence for the user
    assert service.stylize(photo, "hayao").kind == "exact"


def test_truncated_upload_is_refused(service, photo_paths):
    data = photo_paths[3].read_bytes()
    with pytest.raises(ImageError):
        service.stylize(data[: len(data) // 2], "hayao")


def test_unknown_style_is_a_user_error(service, photo_paths):
    with pytest.raises(UnknownStyleError):
        service.stylize(photo_paths[0], "no-such-style")


def test_alpha_survives_and_hits_keep_it(service):
    image = Image.new("RGBA", (200, 120), (200, 80, 40, 255))
    for x in range(200):
        for y in range(60, 120):
            image.putpixel((x, y), (30, 120, 200, 0 if x < 100 else 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    first = service.stylize(buffer.getvalue(), "hayao")
    out = decode(first.png)
    assert out.mode == "RGBA" and out.size == (200, 120)
    assert out.getpixel((10, 100))[3] == 0 and out.getpixel((150, 100))[3] == 255
    assert service.stylize(buffer.getvalue(), "hayao").png == first.png


def test_identical_concurrent_requests_run_the_model_once(service, photo_paths, monkeypatch):
    stylizer = service.stylizer("hayao")
    calls = []
    real = stylizer.stylize

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stylizer, "stylize", counting)
    data = photo_paths[4].read_bytes()
    barrier = threading.Barrier(6)
    kinds: list[str] = []

    def request():
        barrier.wait()
        kinds.append(service.stylize(data, "hayao").kind)

    threads = [threading.Thread(target=request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert kinds.count("miss") == 1
    assert set(kinds) <= {"miss", "coalesced", "exact"}


def test_a_broken_cache_never_fails_a_request(tmp_path, weights_dir, photo_paths):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache directory should be")
    cache = ResultCache(blocked / "cache")
    service = StylizeService(cache, weights_dir=weights_dir, max_side=TEST_MAX_SIDE)
    assert service.stylize(photo_paths[0], "hayao").kind == "miss"
    assert service.stylize(photo_paths[0], "hayao").kind == "miss"


def test_uncached_service(weights_dir, photo_paths):
    service = StylizeService(None, weights_dir=weights_dir, max_side=TEST_MAX_SIDE)
    outcome = service.stylize(photo_paths[0], "hayao")
    assert outcome.kind == "miss" and not outcome.cached


def test_the_latency_counts_from_the_requests_arrival(service, photo_paths):
    """The app passes when a request arrived, so time spent waiting for a thread counts."""
    import time

    photo = photo_paths[0]
    service.stylize(photo, "hayao")
    waited = service.prepare(photo, "hayao", started=time.perf_counter() - 2.0)
    assert waited.kind == "exact" and waited.latency_ms >= 2000


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(service, tmp_path):
    from stylize_service.service import MAX_UPLOAD_BYTES

    big = tmp_path / "big.jpg"
    with open(big, "wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(ImageError) as refused:
        service.stylize(big, "hayao")
    assert refused.value.reason == "too_large" and "MB" in str(refused.value)


def test_a_near_duplicate_of_the_same_output_size_is_served_byte_for_byte(service, photo_paths):
    """A resized copy that fits to the same size as the original: the stored PNG as it is."""
    source = Image.open(photo_paths[-1]).convert("RGB")
    big = source.resize((2000, 1400), Image.Resampling.LANCZOS)  # both sizes fit to the same 256 x 179
    first = service.stylize(reencode_image(big, "JPEG", quality=92), "hayao")
    copy = big.resize((round(big.width * 0.8), round(big.height * 0.8)), Image.Resampling.BICUBIC)
    near = service.stylize(reencode_image(copy, "WEBP", quality=80), "hayao")
    assert near.kind == "fuzzy" and near.png == first.png


def reencode_image(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_the_same_pixels_in_another_file_are_an_exact_hit(service, photo_paths):
    """Another PNG of the very same pixels (other compression, a text chunk): exact, by the
    pixels' SHA-256, although the file differs and was found through the fuzzy tier."""
    from PIL import ImageOps, PngImagePlugin

    picture = ImageOps.mirror(Image.open(photo_paths[2]).convert("RGB"))  # a picture nobody sent
    first = service.stylize(reencode_image(picture, "PNG", compress_level=1), "hayao")
    assert first.kind == "miss"
    notes = PngImagePlugin.PngInfo()
    notes.add_text("Comment", "saved again by another app")
    again = service.stylize(reencode_image(picture, "PNG", compress_level=9, pnginfo=notes), "hayao")
    assert (again.kind, again.distance) == ("exact", 0) and again.png == first.png


def test_a_small_copy_stylized_first_is_not_enlarged_for_the_full_photo(service, photo_paths):
    """A 0.45x JPEG q35 of the photo is stylized first; the full-size photo must not get
    that small output enlarged (blurred far below a re-encode): it is a miss, stored anew,
    and from then on the full photo's entry serves both."""
    original = Image.open(photo_paths[-2]).convert("RGB")
    original.thumbnail((2 * TEST_MAX_SIDE, 2 * TEST_MAX_SIDE))  # the copy fits below the model's side
    small = original.resize((round(original.width * 0.45), round(original.height * 0.45)))
    full = reencode_image(original, "JPEG", quality=92)
    assert max(small.size) < 0.9 * TEST_MAX_SIDE <= max(original.size)  # the case: a smaller output
    assert service.stylize(reencode_image(small, "JPEG", quality=35), "hayao").kind == "miss"
    assert service.stylize(full, "hayao").kind == "miss"
    again = service.stylize(reencode_image(original, "WEBP", quality=80), "hayao")
    assert again.kind == "fuzzy" and max(decode(again.png).size) == TEST_MAX_SIDE


def test_one_client_cannot_hold_more_than_its_share(service):
    from stylize_service.service import Client, ClientLimitError

    tab = Client(session="tab-1", address="192.0.2.7")
    holds = [service.admitted(tab) for _ in range(service.in_flight.caps["session"])]
    for hold in holds:
        hold.__enter__()
    try:
        with pytest.raises(ClientLimitError) as refused, service.admitted(tab):
            pass
        assert "already have" in str(refused.value)
        with service.admitted(Client(session="tab-2", address="198.51.100.1")):
            pass  # everyone else still gets in
    finally:
        for hold in holds:
            hold.__exit__(None, None, None)
    with service.admitted(tab):
        pass
