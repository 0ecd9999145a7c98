"""Photo to anime: the Gradio app (UI only; the work happens in `stylize_service`).

Run `python app.py` (127.0.0.1:7860) or `python app.py --help`. The same file runs
unchanged as a Hugging Face Space.

Cache hits never queue behind inference: the stylize handler is async and unlimited,
reads and looks up the upload on small thread pools of their own, and only a miss goes on
to the model's pool, where the service runs at most `--inference-workers` inferences at a
time per process (one by default).

Read top to bottom like a Gradio demo: the upload component, the handlers
(`StylizeHandlers`), the layout in `build_ui`, and the event wiring at its end.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import os
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import gradio as gr

from animegan.errors import AnimeGANError
from cache_store import KINDS
from stylize_service import build_service, format_duration
from stylize_service import settings as settings_module
from stylize_service.catalog import StyleStatus, style_catalog
from stylize_service.memory import return_large_buffers
from stylize_service.outcome import KIND_LABELS
from stylize_service.result_files import ResultFiles
from stylize_service.scratch import private_dir
from stylize_service.service import MAX_UPLOAD_BYTES, Job, Received, StylizeService
from stylize_service.warmup import start_warming

log = logging.getLogger("app")

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

CSS = """
#badge input, #badge textarea { font-weight: 600; font-size: 1.05rem; text-align: center; }
.style-note { font-size: 0.9rem; opacity: 0.85; }
footer { display: none !important; }
"""


class UploadedImage(gr.Image):
    """An image input that hands over the uploaded file untouched, and only uploaded files.

    `gr.Image(type="filepath")` still opens the file with Pillow before returning its
    path, so a broken upload fails inside Gradio with a generic error. Skipping that lets
    the service hash the raw bytes first and give bad files a clear message. An API caller
    may also pass an http(s) URL, which Gradio would download without a size cap: refused,
    so every input goes through the upload route and its size limit.
    """

    is_template = True  # rendered by the frontend's Image component

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)

    async def async_move_resource_to_block_cache(self, url_or_file_path):
        _refuse_url(url_or_file_path)
        return await super().async_move_resource_to_block_cache(url_or_file_path)

    def move_resource_to_block_cache(self, url_or_file_path):
        _refuse_url(url_or_file_path)
        return super().move_resource_to_block_cache(url_or_file_path)


def _refuse_url(url_or_file_path) -> None:
    if url_or_file_path is not None and str(url_or_file_path).lower().startswith(("http://", "https://")):
        raise gr.Error("This server does not fetch photos from links: upload the photo file itself.")


def parse_args(argv: list[str] | None = None) -> settings_module.Settings:
    parser = argparse.ArgumentParser(description="Photo to anime, with a result cache.")
    settings_module.add_arguments(
        parser,
        [
            "host",
            "port",
            "share",
            "mcp",
            "cache_dir",
            "cache_url",
            "no_cache",
            "cache_size",
            "ttl",
            "threshold",
            "cache_scope",
            "weights_dir",
            "offline",
            "download_mirror",
            "max_side",
            "precision",
            "engine",
            "inference_workers",
            "max_pending",
        ],
    )
    return settings_module.resolve(parser.parse_args(argv))


def stats_markdown(service: StylizeService) -> str:
    """The cache panel: hit rate, size, and per kind of outcome its count and latency."""
    cache = service.cache
    if cache is None:
        return "**Cache off**: every request runs the model."
    stats = cache.stats()
    lines = []
    if not stats.healthy:
        lines.append(f"**Cache unavailable**: {cache.status_message} Requests still work, uncached.\n")
    lines += [
        f"**Hit rate** {stats.hit_rate * 100:.1f} % of {stats.lookups} look-ups · "
        f"**{stats.entries}** results · **{stats.bytes / 2**20:.1f} MB** · "
        f"waiting for the model: {service.pending}",
        "",
        "| kind | count | mean | p95 |",
        "|---|---:|---:|---:|",
    ]
    for kind in KINDS:
        mean, p95 = stats.mean_ms.get(kind), stats.p95_ms.get(kind)
        lines.append(
            f"| {KIND_LABELS[kind]} | {stats.count(kind)} | {format_duration(mean) if mean else '–'} "
            f"| {format_duration(p95) if p95 else '–'} |"
        )
    return "\n".join(lines)


def style_markdown(status: StyleStatus) -> str:
    style = status.style
    return (
        f'<div class="style-note"><b>{html.escape(style.label)}</b>: {html.escape(style.description)}<br>'
        f"Weights license: {html.escape(style.license)}.</div>"
    )


class StylizeHandlers:
    """The event handlers, with what they share: the service, its thread pools and the
    files that hold results for the browser.

    Three pools, so that no kind of work waits behind a slower kind: reading and hashing
    the file (an exact hit ends here), decoding it for a look-up, and the model.
    """

    def __init__(self, service: StylizeService, catalog: list[StyleStatus], *, cache_scope: str) -> None:
        self.service = service
        self.by_name = {status.style.name: status for status in catalog}
        self.cache_scope = cache_scope
        self.files = ResultFiles()
        self.receiving = ThreadPoolExecutor(max_workers=4, thread_name_prefix="receive")
        self.lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lookup")
        self.inference = ThreadPoolExecutor(max_workers=service.max_pending + 2, thread_name_prefix="miss")

    async def stylize(
        self,
        image: str | None,
        style: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a progress bar)
    ) -> tuple[str, str, dict]:
        """Stylize a photo; a photo seen before comes back from the cache in milliseconds."""
        return await self._run(image, style, True, progress, request)

    async def regenerate(
        self,
        image: str | None,
        style: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a progress bar)
    ) -> tuple[str, str, dict]:
        """Stylize a photo with the model even if it is cached, and refresh the cache."""
        return await self._run(image, style, False, progress, request)

    def describe_style(self, name: str) -> str:
        return style_markdown(self.by_name[name]) if name in self.by_name else ""

    def before_after(self, before: str, after: str) -> tuple[str, str]:
        return before, after

    def cache_panel(self) -> str:
        return stats_markdown(self.service)

    async def _run(
        self, image: str | None, style: str, use_cache: bool, progress: gr.Progress, request: gr.Request
    ) -> tuple[str, str, dict]:
        started = time.perf_counter()  # the badge's time includes any wait for a pool
        if not image:
            raise gr.Error("Upload a photo first (or pick an example).")
        if style not in self.by_name or not self.by_name[style].available:
            raise gr.Error(f"The style {style!r} is not available on this server.")
        scope = self._scope(request)
        service, loop = self.service, asyncio.get_running_loop()

        def report(done: float) -> None:
            progress(done, desc="Stylizing")

        receive = partial(service.receive, image, style, use_cache=use_cache, scope=scope, started=started)
        try:
            result = await loop.run_in_executor(self.receiving, receive)
            if isinstance(result, Received):
                result = await loop.run_in_executor(self.lookups, service.look_up, result)
            if isinstance(result, Job):
                progress(0.0, desc="Waiting for the model")
                result = await loop.run_in_executor(self.inference, service.finish, result, report)
        except AnimeGANError as exc:
            raise gr.Error(str(exc)) from None
        except Exception:
            log.exception("stylize failed")
            raise gr.Error("Something went wrong while stylizing this photo. Please try another.") from None
        path = self.files.path_for(result.png, style)
        return path, result.badge(), result.cache_info()

    def _scope(self, request: gr.Request) -> str | None:
        """Whose results a request may share: everyone's, or (`--cache-scope session`) its session's."""
        if self.cache_scope != "session":
            return None
        return getattr(request, "session_hash", None) or "anonymous"


def build_ui(
    service: StylizeService, catalog: list[StyleStatus], *, cache_scope: str = "global"
) -> gr.Blocks:
    handlers = StylizeHandlers(service, catalog, cache_scope=cache_scope)
    available = [s for s in catalog if s.available]
    missing = [s for s in catalog if not s.available]

    with gr.Blocks(title="Photo to anime", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Photo → anime\n"
            "Turn a photo into an anime-style picture with AnimeGANv2. "
            "Photos stylized before come back from the cache in milliseconds, "
            "also when re-saved as another JPEG quality, size or format."
        )
        if not available:
            gr.Markdown(
                "## No style is available\nThis server found no generator weights. "
                + " ".join(f"{s.note}" for s in missing[:1])
            )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                image = UploadedImage(
                    label="Photo",
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "webcam", "clipboard"],
                    height=420,
                )
                choices = [(s.style.label, s.style.name) for s in available]
                style = gr.Radio(
                    choices=choices,
                    value=choices[0][1] if choices else None,
                    label="Style",
                )
                note = gr.HTML(style_markdown(available[0]) if available else "")
                with gr.Row():
                    go = gr.Button("Stylize", variant="primary", interactive=bool(available), scale=2)
                    again = gr.Button(
                        "Regenerate (skip cache)", variant="secondary", interactive=bool(available), scale=1
                    )
                if missing:
                    with gr.Accordion("Styles not installed", open=False):
                        gr.Markdown("\n".join(f"- **{s.style.label}**: {s.note}" for s in missing))
            with gr.Column(scale=1):
                with gr.Tabs():
                    with gr.Tab("Result"):
                        output = gr.Image(
                            label="Anime",
                            type="filepath",
                            format="png",
                            interactive=False,
                            buttons=["download", "fullscreen"],
                            height=420,
                        )
                    with gr.Tab("Before / after"):
                        slider = gr.ImageSlider(
                            label="Before / after", type="filepath", interactive=False, height=420
                        )
                badge = gr.Textbox(label="Cache", interactive=False, elem_id="badge", max_lines=1)
                with gr.Accordion("Details (cache_info)", open=False):
                    info = gr.JSON(label="cache_info")
        examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
        if examples and available:
            gr.Examples(
                examples=examples,
                inputs=image,
                label="Examples (public domain / CC0, see examples/ATTRIBUTION.md)",
            )
        with gr.Accordion("Cache", open=True):
            panel = gr.Markdown(handlers.cache_panel())

        # Events. Only /stylize and /regenerate are API endpoints; the rest keep the page in step.
        style.change(
            fn=handlers.describe_style, inputs=style, outputs=note, api_visibility="private", queue=False
        )
        for button, handler, api_name in [
            (go, handlers.stylize, "stylize"),
            (again, handlers.regenerate, "regenerate"),
        ]:
            button.click(
                fn=handler,
                inputs=[image, style],
                outputs=[output, badge, info],
                api_name=api_name,
                concurrency_limit=None,  # hits must not queue: the service bounds the model's work
            ).success(
                fn=handlers.before_after,
                inputs=[image, output],
                outputs=slider,
                api_visibility="private",
                queue=False,
            ).then(fn=handlers.cache_panel, outputs=panel, api_visibility="private", queue=False)
        gr.Timer(5).tick(fn=handlers.cache_panel, outputs=panel, api_visibility="private", queue=False)
    return demo


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_args(argv)
    return_large_buffers()  # decoded uploads must not ratchet the process's memory up
    # Gradio keeps uploads in GRADIO_TEMP_DIR and deletes only its own run's files, at a clean
    # exit: give this process a folder of its own there, which the next start sweeps if we crash.
    uploads = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    os.environ["GRADIO_TEMP_DIR"] = str(private_dir(uploads, "animegan-"))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: exit handlers run
    catalog = style_catalog(
        settings.weights_dir, download=not settings.offline, mirror=settings.download_mirror
    )
    service = build_service(settings)
    # The page's default style: loaded now so the first miss is not slower, and the style
    # the examples are warmed with (in the background, once the server is up).
    default = next((status.style.name for status in catalog if status.available), None)
    if default is not None:
        service.stylizer(default)
    demo = build_ui(service, catalog, cache_scope=settings.cache_scope)
    demo.queue(max_size=4 * settings.max_pending + 64, default_concurrency_limit=1)
    if default is not None:
        examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
        start_warming(service, examples, default, ready=lambda: demo.is_running)
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        mcp_server=settings.mcp,
        max_file_size=MAX_UPLOAD_BYTES,
        theme=gr.themes.Soft(primary_hue="indigo"),
        css=CSS,
    )


if __name__ == "__main__":
    main()
