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

import sys

from stylize_service import settings as settings_module

if __name__ == "__main__":  # --help and bad flags answer before Gradio and torch are imported
    SETTINGS = settings_module.app_settings(sys.argv[1:])

import asyncio
import contextvars
import html
import json
import logging
import os
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import gradio as gr

from animegan.errors import AnimeGANError
from animegan.formats import HEAD_BYTES, is_photo, sniff
from cache_store import KINDS
from stylize_service import build_clips, build_service, format_duration
from stylize_service.catalog import StyleStatus, style_catalog
from stylize_service.clips import UPLOAD_SUBJECT as CLIP_SUBJECT
from stylize_service.clips import ClipService
from stylize_service.janitor import Janitor
from stylize_service.memory import return_large_buffers
from stylize_service.outcome import KIND_LABELS
from stylize_service.result_files import ResultFiles
from stylize_service.scratch import private_dir
from stylize_service.service import MAX_UPLOAD_BYTES, UPLOAD_SUBJECT, Client, Job, Received, StylizeService
from stylize_service.warmup import start_warming

log = logging.getLogger("app")

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

CSS = """
#badge input, #badge textarea { font-weight: 600; font-size: 1.05rem; text-align: center; }
.style-note, .badge-help { font-size: 0.85rem; opacity: 0.85; }
.badge-help p { margin: 0; }
footer { display: none !important; }
"""
#: The cache panel is recomputed at most this often, however many pages ask for it.
PANEL_TTL_S = 2.0


def _untouched_preprocess(self, payload):
    """Hand over the uploaded file's path as it is (the component's own preprocessing opens
    the file in the server, or runs a system ffmpeg over it)."""
    return _untouched(payload) or type(self).__base__.preprocess(self, payload)


async def _async_move_refusing(self, url_or_file_path):
    _refuse_url(url_or_file_path)
    return await type(self).__base__.async_move_resource_to_block_cache(self, url_or_file_path)


def _move_refusing(self, url_or_file_path):
    _refuse_url(url_or_file_path)
    return type(self).__base__.move_resource_to_block_cache(self, url_or_file_path)


class UploadedImage(gr.Image):
    """An image input that hands over the uploaded file untouched, and only uploaded files.

    `gr.Image(type="filepath")` still opens the file with Pillow before returning its
    path, so a broken upload fails inside Gradio with a generic error. Skipping that lets
    the service hash the raw bytes first, decode them where they cannot hurt the server,
    and give bad files a clear message. An API caller may also pass an http(s) URL, which
    Gradio would download without a size cap, or a path that is not a file: refused, so
    every input goes through the upload route and its size limit.
    """

    is_template = True  # rendered by the frontend's Image component (`__base__`)
    preprocess = _untouched_preprocess
    async_move_resource_to_block_cache = _async_move_refusing
    move_resource_to_block_cache = _move_refusing


class UploadedVideo(gr.Video):
    """A clip input that hands over the uploaded file untouched (`gr.Video` may run a system
    ffmpeg over it), with `UploadedImage`'s refusals."""

    is_template = True  # rendered by the frontend's Video component (`__base__`)
    preprocess = _untouched_preprocess
    async_move_resource_to_block_cache = _async_move_refusing
    move_resource_to_block_cache = _move_refusing


def _untouched(payload) -> str | None:
    """The uploaded file's path as it is, for an upload (not a data: URL)."""
    if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
        return str(payload.path)
    return None


def _refuse_url(url_or_file_path) -> None:
    """Links are not fetched, and a path must name a file (an API caller may name a folder)."""
    if url_or_file_path is None:
        return
    if str(url_or_file_path).lower().startswith(("http://", "https://")):
        raise _user_error("This server does not fetch photos from links: upload the photo file itself.")
    if not str(url_or_file_path).startswith("data:") and not os.path.isfile(url_or_file_path):
        raise _user_error("That is not an uploaded file: upload the photo file itself.")


def _user_error(message: str) -> gr.Error:
    """A refusal the visitor reads; the log gets one line, not a traceback."""
    log.info("refused: %s", message)
    return gr.Error(message, print_exception=False)


def stats_markdown(service: StylizeService) -> str:
    """The cache panel: hit rate, size, and per kind of outcome its count and latency (from
    the request's arrival, as the badge counts it), as short lines that wrap on a phone."""
    cache = service.cache
    if cache is None:
        return "**Cache off**: every request runs the model."
    stats = cache.stats()
    lines = []
    if not stats.healthy:
        lines.append("**Cache unavailable**: requests still work, uncached.\n")
    lines.append(
        f"**{stats.hit_rate * 100:.0f} %** of {stats.lookups} requests answered from the cache · "
        f"**{stats.entries}** results stored ({stats.bytes / 2**20:.0f} MB) · "
        f"{service.pending} waiting for the model"
    )
    lines.append("")
    for kind in KINDS:
        mean, p95 = stats.mean_ms.get(kind), stats.p95_ms.get(kind)
        timing = f" · mean {format_duration(mean)} · p95 {format_duration(p95)}" if mean and p95 else ""
        lines.append(f"- {KIND_LABELS[kind]}: **{stats.count(kind)}**{timing}")
    return "\n".join(lines)


def style_note(status: StyleStatus) -> str:
    style = status.style
    return (
        f'<div class="style-note"><b>{html.escape(style.label)}</b>: {html.escape(style.description)} '
        f"Weights license: {html.escape(style.license)}.</div>"
    )


#: Under the badge: what each kind of answer means.
BADGE_HELP = (
    "**exact hit**: this very photo was stylized before · **near-duplicate**: the same photo "
    "re-saved (another size, quality or format), checked region by region before it is served; "
    "*distance* = bits that differ of the 64 in its perceptual hash · **generated**: the model ran "
    "· **waited**: an identical request was already running. Times count from your request's arrival."
)
BADGE_EMPTY = "Pick an example or upload a photo, then press Stylize."


class StylizeHandlers:
    """The event handlers, with what they share: the service, its thread pools and the
    files that hold results for the browser.

    Three pools, so that no kind of work waits behind a slower kind: reading and hashing
    the file (an exact hit ends here), decoding it for a look-up, and the model.
    """

    def __init__(
        self,
        service: StylizeService,
        catalog: list[StyleStatus],
        *,
        cache_scope: str,
        clips: ClipService | None = None,
    ) -> None:
        self.service = service
        self.clips = clips
        self.by_name = {status.style.name: status for status in catalog}
        self.cache_scope = cache_scope
        # Results are written where Gradio serves files from, so it serves them without a copy.
        gradio_temp = os.environ.get("GRADIO_TEMP_DIR")
        self.files = ResultFiles(Path(gradio_temp) / "results" if gradio_temp else None)
        self.receiving = ThreadPoolExecutor(max_workers=4, thread_name_prefix="receive")
        self.lookups = ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="lookup"
        )  # the decoders' slots are the gate
        self.inference = ThreadPoolExecutor(max_workers=service.max_pending + 2, thread_name_prefix="miss")
        self._panel_lock = threading.Lock()
        self._panel: tuple[float, str] = (-PANEL_TTL_S, "")

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

    def cache_panel(self) -> str:
        """The panel's text, computed at most every `PANEL_TTL_S` however often it is asked."""
        now = time.monotonic()
        with self._panel_lock:
            if now - self._panel[0] > PANEL_TTL_S:
                self._panel = (now, stats_markdown(self.service))
            return self._panel[1]

    def check_upload(self, image: str | None) -> str | None:
        """Right after an upload: a file that is not a photo is cleared with a message,
        before anyone presses Stylize (its first bytes are read, nothing is decoded)."""
        if not image:
            return image
        try:
            with open(image, "rb") as handle:
                head = handle.read(HEAD_BYTES)
        except OSError:
            return None
        if not is_photo(sniff(head)):
            gr.Warning(
                "That file is not a photo this app can read: use a JPEG, PNG, WebP, HEIC, AVIF, "
                "GIF, BMP or TIFF file."
            )
            return None
        return image

    async def _run(
        self, image: str | None, style: str, use_cache: bool, progress: gr.Progress, request: gr.Request
    ) -> tuple[str, str, dict]:
        started = time.perf_counter()  # the badge's time includes any wait for a pool
        if not image:
            raise _user_error("Upload a photo first (or pick an example).")
        if style not in self.by_name or not self.by_name[style].available:
            raise _user_error(f"The style {style!r} is not available on this server.")
        scope = self._scope(request)
        client = _client(request)
        service, loop = self.service, asyncio.get_running_loop()

        report = _reporter(progress)

        receive = partial(
            service.receive,
            image,
            style,
            use_cache=use_cache,
            scope=scope,
            started=started,
            client=client,
            subject=UPLOAD_SUBJECT,
        )
        try:
            result = await loop.run_in_executor(self.receiving, receive)
            if isinstance(result, Received):
                with service.admitted(client):
                    progress(0.0, desc="Reading the photo")
                    result = await loop.run_in_executor(self.lookups, service.look_up, result)
                    if isinstance(result, Job):
                        result = await loop.run_in_executor(self.inference, service.finish, result, report)
            path = self.files.path_for(result.png, style)
        except AnimeGANError as exc:
            raise _user_error(str(exc)) from None
        except Exception:
            log.exception("stylize failed")
            raise gr.Error("Something went wrong while stylizing this photo. Please try another.") from None
        return path, result.badge(), result.cache_info()

    async def stylize_video(
        self,
        video: str | None,
        style: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a progress bar)
    ) -> tuple[str, str, dict]:
        """Stylize a clip (MP4, MOV, WebM, animated GIF or WebP) frame by frame through the
        cache; a clip seen before comes back whole from the cache."""
        started = time.perf_counter()
        if self.clips is None:
            raise _user_error("Video is not enabled on this server.")
        if not video:
            raise _user_error("Upload a clip first.")
        if style not in self.by_name or not self.by_name[style].available:
            raise _user_error(f"The style {style!r} is not available on this server.")
        client = _client(request)

        report = _reporter(progress)

        run = partial(
            self.clips.stylize,
            video,
            style,
            scope=self._scope(request),
            client=client,
            started=started,
            progress=report,
            subject=CLIP_SUBJECT,
        )
        try:
            with self.service.admitted(client):
                outcome = await asyncio.get_running_loop().run_in_executor(self.inference, run)
            path = self.files.path_for(outcome.mp4, style, ".mp4")
            info = outcome.cache_info()
            if outcome.gif is not None:
                info["gif_file"] = Path(self.files.path_for(outcome.gif, style, ".gif")).name
        except AnimeGANError as exc:
            raise _user_error(str(exc)) from None
        except Exception:
            log.exception("stylize_video failed")
            raise gr.Error("Something went wrong while stylizing this clip. Please try another.") from None
        return path, outcome.badge(), info

    async def stylize_video_page(
        self,
        video: str | None,
        animation: str | None,
        style: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a progress bar)
    ) -> tuple[str, dict, str, dict]:
        """The page's Video tab: a clip, or an animated GIF / WebP (which the video player
        cannot show), and the GIF made for a GIF beside the MP4."""
        path, badge, info = await self.stylize_video(animation or video, style, request, progress)
        name = info.get("gif_file")
        gif = str(self.files.directory / name) if isinstance(name, str) else None
        return path, gr.update(value=gif, visible=gif is not None), badge, info

    def _scope(self, request: gr.Request) -> str | None:
        """Whose results a request may share: everyone's, or (`--cache-scope session`) its session's."""
        if self.cache_scope != "session":
            return None
        return getattr(request, "session_hash", None) or "anonymous"


def _reporter(progress: gr.Progress):
    """`progress` for the service's threads: Gradio finds the request's progress bar through
    context variables, which a worker thread does not have, so each report runs on the event
    loop in the handler's context."""
    loop, context = asyncio.get_running_loop(), contextvars.copy_context()

    def report(done: float, stage: str) -> None:
        loop.call_soon_threadsafe(partial(progress, done, desc=stage), context=context)

    return report


def _client(request: gr.Request) -> Client:
    """Who sent `request`: its session (a browser tab, or a `gradio_client` Client) and
    its network address, for the per-visitor caps and turns."""
    address = getattr(getattr(request, "client", None), "host", None)
    return Client(session=getattr(request, "session_hash", None), address=address)


def build_ui(
    service: StylizeService,
    catalog: list[StyleStatus],
    *,
    cache_scope: str = "global",
    clips: ClipService | None = None,
) -> gr.Blocks:
    handlers = StylizeHandlers(service, catalog, cache_scope=cache_scope, clips=clips)
    available = [s for s in catalog if s.available]
    missing = [s for s in catalog if not s.available]
    notes = {s.style.name: style_note(s) for s in available}
    choices = [(s.style.label, s.style.name) for s in available]
    default = choices[0][1] if choices else None

    with gr.Blocks(title="Photo to anime", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Photo → anime\n"
            "**Pick an example or upload a photo, choose a style, press Stylize.** "
            "A photo stylized before comes back from the cache in milliseconds, also re-saved "
            "as another JPEG quality, size or format. Clips and animated GIFs: the Video tab."
        )
        if not available:
            gr.Markdown("## No style is installed on this server yet\nPlease come back later.")
        with gr.Tabs():
            with gr.Tab("Photo"):
                _photo_tab(handlers, choices, default, notes, missing)
            if clips is not None:
                with gr.Tab("Video"):
                    _video_tab(handlers, choices, default, notes, clips)
        with gr.Accordion("Cache statistics", open=False):
            panel = gr.Markdown()
        demo.load(fn=handlers.cache_panel, outputs=panel, api_visibility="private", queue=False)
        gr.Timer(10).tick(fn=handlers.cache_panel, outputs=panel, api_visibility="private", queue=False)
    return demo


def _photo_tab(
    handlers: StylizeHandlers,
    choices: list[tuple[str, str]],
    default: str | None,
    notes: dict[str, str],
    missing: list[StyleStatus],
) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            image = UploadedImage(
                label="Photo",
                type="filepath",
                image_mode=None,
                sources=["upload", "webcam", "clipboard"],
                height=340,
            )
            example_slot = gr.Column()
            style = gr.Radio(choices=choices, value=default, label="Style")
            note = gr.HTML(notes[default] if default else "")
            with gr.Row():
                go = gr.Button("Stylize", variant="primary", interactive=bool(choices), scale=2)
                again = gr.Button(
                    "Regenerate (skip cache)", variant="secondary", interactive=bool(choices), scale=1
                )
            if missing:
                gr.Markdown(
                    "Not installed on this server: " + ", ".join(s.style.label for s in missing) + ".",
                    elem_classes="style-note",
                )
        with gr.Column(scale=1, min_width=320):
            badge = gr.Textbox(
                label="Result", value=BADGE_EMPTY, interactive=False, elem_id="badge", max_lines=2
            )
            gr.Markdown(BADGE_HELP, elem_classes="badge-help")
            with gr.Tabs():
                with gr.Tab("Anime"):
                    output = gr.Image(
                        label="Anime",
                        type="filepath",
                        format="png",
                        interactive=False,
                        buttons=["download", "fullscreen"],
                        height=400,
                    )
                with gr.Tab("Before / after"):
                    slider = gr.ImageSlider(
                        label="Before / after", type="filepath", interactive=False, height=400
                    )
            with gr.Accordion("Details (cache_info)", open=False):
                info = gr.JSON(label="cache_info")

    # Only /stylize and /regenerate are API endpoints; what only keeps the page in step runs
    # in the browser (style notes, the before/after pair) or is private.
    style.change(fn=None, inputs=style, outputs=note, js=_pick_js(notes))
    image.upload(fn=handlers.check_upload, inputs=image, outputs=image, api_visibility="private", queue=False)
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
        )
        button.click(fn=None, js=_show_js("badge"))
    badge.change(fn=None, js=_show_js("badge"))
    output.change(fn=None, inputs=[image, output], outputs=slider, js="(before, after) => [[before, after]]")

    # After the buttons' events, so that /stylize is theirs (the examples' event is private)
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
    if examples and default:
        with example_slot:  # under the upload: on screen without scrolling
            gr.Examples(
                examples=[[path, default] for path in examples],
                inputs=[image, style],
                outputs=[output, badge, info],
                fn=handlers.stylize,
                run_on_click=True,  # cached at start (the warm-up): a click shows the result
                cache_examples=False,
                visible_columns=[0],
                examples_per_page=8,
                label="Examples: click one (public domain / CC0, see examples/ATTRIBUTION.md)",
                api_visibility="private",
            )


def _video_tab(
    handlers: StylizeHandlers,
    choices: list[tuple[str, str]],
    default: str | None,
    notes: dict[str, str],
    clips: ClipService,
) -> None:
    limits = clips.limits
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            video = UploadedVideo(
                label=f"Clip: MP4, MOV or WebM, up to {limits.max_duration:g} s",
                sources=["upload"],
                format=None,
                height=300,
                elem_id="clip-in",
            )
            animation = gr.File(
                label="…or an animated GIF / WebP",
                file_types=[".gif", ".webp"],
                height=120,
                type="filepath",
                elem_id="animation-in",
            )
            style = gr.Radio(choices=choices, value=default, label="Style")
            note = gr.HTML(notes[default] if default else "")
            go = gr.Button("Stylize clip", variant="primary", interactive=bool(choices))
            gr.Markdown(
                f"Frames are stylized at up to {clips.max_side} px, each through the cache: repeated "
                "and still frames run the model once; the same clip again comes back whole from the "
                f"cache. At most {limits.max_frames} frames, {limits.max_bytes >> 20} MB.",
                elem_classes="style-note",
            )
        with gr.Column(scale=1, min_width=320):
            badge = gr.Textbox(
                label="Result",
                value="Upload a clip, then press Stylize clip.",
                interactive=False,
                elem_id="clip-badge",
                max_lines=3,
            )
            output = gr.Video(
                label="Anime clip", format=None, interactive=False, height=360, elem_id="clip-out"
            )
            gif = gr.Image(
                label="Animated GIF", type="filepath", interactive=False, visible=False, format="gif"
            )
            with gr.Accordion("Details (cache_info)", open=False):
                info = gr.JSON(label="cache_info")

    style.change(fn=None, inputs=style, outputs=note, js=_pick_js(notes))
    video.upload(fn=None, outputs=animation, js="() => null")  # the newest upload is the one
    animation.upload(fn=None, outputs=video, js="() => null")
    go.click(
        fn=handlers.stylize_video_page,
        inputs=[video, animation, style],
        outputs=[output, gif, badge, info],
        api_visibility="private",
        concurrency_limit=None,  # the service bounds the decoders' and the model's work
    )
    go.click(fn=None, js=_show_js("clip-badge"))
    # The API's endpoint, with the inputs and outputs an API caller expects: (clip, style) in,
    # (video, badge, cache_info) out. Its button is never shown.
    gr.Button(visible=False).click(
        fn=handlers.stylize_video,
        inputs=[video, style],
        outputs=[output, badge, info],
        api_name="stylize_video",
        concurrency_limit=None,
    )


def _pick_js(notes: dict[str, str]) -> str:
    return f"(name) => ({json.dumps(notes)})[name] || ''"


def _show_js(element: str) -> str:
    """On a phone the result column is below the buttons: bring `element` (and the progress
    under it) into view."""
    return (
        "() => { if (window.innerWidth < 768) "
        f"document.getElementById('{element}')?.scrollIntoView({{behavior: 'smooth', block: 'start'}}); }}"
    )


def main(argv: list[str] | None = None, settings: settings_module.Settings | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings if settings is not None else settings_module.app_settings(argv)
    return_large_buffers()  # decoded uploads must not ratchet the process's memory up
    # Gradio keeps uploads in GRADIO_TEMP_DIR and deletes only its own run's files, at a clean
    # exit: give this process a folder of its own there, which the next start sweeps if we crash.
    uploads = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    temp = private_dir(uploads, "animegan-")
    os.environ["GRADIO_TEMP_DIR"] = str(temp)
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
    clips = build_clips(settings, service)
    demo = build_ui(service, catalog, cache_scope=settings.cache_scope, clips=clips)
    # Uploads nobody stylizes, and old results, leave the temporary folder; the example
    # files that building the page put there stay.
    janitor = Janitor(temp)
    janitor.protect_present()
    janitor.start()
    demo.queue(max_size=4 * settings.max_pending + 64, default_concurrency_limit=1)
    if default is not None:
        examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
        start_warming(service, examples, default, ready=lambda: demo.is_running)
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        mcp_server=settings.mcp,
        max_file_size=max(MAX_UPLOAD_BYTES, clips.limits.max_bytes if clips else 0),
        theme=gr.themes.Soft(primary_hue="indigo"),
        css=CSS,
    )


if __name__ == "__main__":
    main(settings=SETTINGS)
