"""A Gradio app that does nothing: the floor under any request to the real app.

Same components and event settings as `app.py` (an image input that hands over the
uploaded file untouched, a style radio; outputs a PNG image path, a badge and a JSON),
so a round trip here costs exactly what Gradio and gradio_client cost: upload, queue,
SSE, output file serving and download. The handler returns a fixed PNG path at once:
`/stylize` an 8x8 PNG, `/stylize_sized` a real result (`--reply`), so that the cost of
sending a full-size result back is seen apart. A cache hit in the real app is compared
with this in the same run.

Run: ``python -m bench.e2e.noop_app --port P [--reply PNG]`` (127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from pathlib import Path

import gradio as gr
from PIL import Image


def uploaded_image(**options) -> gr.Image:
    """As app.py's UploadedImage: the upload's path, without Gradio opening it with Pillow.

    Patched on the instance: a Component subclass would make Gradio write a .pyi stub
    next to this file at import time.
    """
    image = gr.Image(**options)
    standard = image.preprocess

    def preprocess(payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return standard(payload)

    image.preprocess = preprocess
    return image


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def build(small: Path, sized: Path) -> gr.Blocks:
    info = {
        "kind": "noop",
        "distance": 0,
        "threshold": 0,
        "latency_ms": 0.0,
        "style": "hayao",
        "width": 0,
        "height": 0,
        "cached": True,
    }

    async def stylize(image: str | None, style: str):
        return str(small), "no-op", info

    async def stylize_sized(image: str | None, style: str):
        return str(sized), "no-op", info

    with gr.Blocks(title="no-op") as demo:
        image = uploaded_image(label="Photo", type="filepath", image_mode=None)
        style = gr.Radio(choices=[("Hayao", "hayao")], value="hayao", label="Style")
        go = gr.Button("Stylize")
        output = gr.Image(label="Anime", type="filepath", format="png", interactive=False)
        badge = gr.Textbox(label="Cache", interactive=False)
        details = gr.JSON(label="cache_info")
        for fn, name in [(stylize, "stylize"), (stylize_sized, "stylize_sized")]:
            go.click(fn, [image, style], [output, badge, details], api_name=name, concurrency_limit=None)
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", type=Path, help="PNG that /stylize_sized answers with (a real result)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="noop-reply-"))
    small, sized = folder / "small.png", folder / "sized.png"
    small.write_bytes(small_png())
    if args.reply:
        shutil.copyfile(args.reply, sized)
    else:
        shutil.copyfile(small, sized)
    demo = build(small, sized)
    demo.queue(max_size=4 * 24 + 64, default_concurrency_limit=1)  # as app.py with default settings
    demo.launch(server_name="127.0.0.1", server_port=args.port, max_file_size="30mb")


if __name__ == "__main__":
    main()
