"""`--cache-scope session`: a visitor's results are not served to other visitors.

With the default global scope a hit tells a visitor that someone uploaded that photo
recently; the session scope closes that side channel at the cost of cross-visitor hits.
"""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file

from tests.support.app import launch_app, stop

pytestmark = pytest.mark.slow


def kind(client: Client, path) -> str:
    _, _, info = client.predict(handle_file(str(path)), "hayao", api_name="/stylize")
    return info["kind"]


@pytest.mark.parametrize("scope", ["global", "session"])
def test_results_are_shared_across_visitors_only_in_the_global_scope(
    tmp_path, weights_dir, unseen_photos, scope
):
    proc, url, _ = launch_app(tmp_path, weights_dir, "--cache-scope", scope)
    try:
        first, second = Client(url, verbose=False), Client(url, verbose=False)
        photo = unseen_photos[8]
        assert kind(first, photo) == "miss"
        assert kind(first, photo) == "exact"  # the same visitor always gets its own results
        assert kind(second, photo) == ("exact" if scope == "global" else "miss")
    finally:
        stop(proc)
