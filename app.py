"""Chat about a 3D Gaussian-splat scene, offline: `python app.py`, then open http://127.0.0.1:7860.

Left: pick a demo room or upload a scene (.ply, .splat, .npz, .zip of a SceneSplat folder) and look at it;
type a word ("lamp") to highlight the matching Gaussians. Right: ask questions; answers stream in, and the
objects an answer (or its question) names are highlighted in the viewer.

This file is layout and wiring only; the logic lives in ``chorus_qa.app_service``.
"""

from __future__ import annotations

import argparse
import os

# Offline and private before gradio / transformers are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from chorus_qa.app_service import AppConfig, ChorusAppService, UserError  # noqa: E402

INTRO = """# Chorus-QA · chat about a 3D Gaussian-splat scene
Pick a room (or upload your own scene), ask a question, or type an object name in the search box to highlight it.
Answers are grounded by searching the object names they mention (or, if none, those of the question) with the
same open-vocabulary scoring: the matching Gaussians light up in the viewer and in the top-down heat map."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes the app to your network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--checkpoint", default="checkpoints/demo", help="Q&A checkpoint folder (default checkpoints/demo; `make demo-checkpoint` makes it)")
    p.add_argument("--llm", default=None, help="override the checkpoint's LLM (alias, Hub id, local folder or .gguf)")
    p.add_argument("--scene", default=None, help="a scene file to open at start instead of the first demo room")
    p.add_argument("--max-upload-mb", type=float, default=300.0, help="largest accepted upload in MB (default 300)")
    p.add_argument("--max-gaussians", type=int, default=1_500_000, help="largest scene that is encoded (default 1.5M)")
    p.add_argument("--demo-density", type=float, default=None, help="Gaussian density of the demo rooms (default 0.3, as in training)")
    p.add_argument("--demo-rooms", type=int, default=None, help="how many demo rooms to offer (default all 5)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="longest answer in tokens")
    p.add_argument("--no-heatmap", action="store_true", help="skip the top-down heat-map render of searches (faster on slow CPUs)")
    p.add_argument("--no-preload", action="store_true", help="do not encode the first scene before serving")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> AppConfig:
    from chorus_qa.demo import DEFAULT_DENSITY, DEMO_SEEDS

    seeds = DEMO_SEEDS[: args.demo_rooms] if args.demo_rooms else DEMO_SEEDS
    return AppConfig(checkpoint=args.checkpoint, llm=args.llm, scene=args.scene, max_upload_mb=args.max_upload_mb,
                     max_gaussians=args.max_gaussians, demo_seeds=seeds, demo_density=args.demo_density or DEFAULT_DENSITY,
                     max_new_tokens=args.max_new_tokens, render_heatmap=not args.no_heatmap)


def build_ui(service: ChorusAppService, initial=None):
    """The Blocks app. ``initial``: a SceneView opened before serving (or None)."""
    import gradio as gr

    def progress_fn(progress):
        return lambda fraction, desc: progress(fraction, desc=desc)

    def example_samples(view):
        return [[q] for q in (view.examples if view else [])]

    def scene_outputs(view):
        state = {"key": view.key, "viewer": view.viewer_path}
        return state, view.viewer_path, view.status, gr.Dataset(samples=example_samples(view)), [], None, ""

    def select_demo(key, progress=gr.Progress()):
        try:
            return scene_outputs(service.open_demo(key, progress_fn(progress)))
        except UserError as err:
            return gr.update(), gr.update(), f"❌ {err}", gr.update(), gr.update(), gr.update(), gr.update()

    def upload_scene(path, progress=gr.Progress()):
        try:
            return scene_outputs(service.open_file(path, progress_fn(progress)))
        except UserError as err:
            return gr.update(), gr.update(), f"❌ {err}", gr.update(), gr.update(), gr.update(), gr.update()

    def ask(question, history, state):
        history = list(history or [])
        question = (question or "").strip()
        key = (state or {}).get("key")
        history.append({"role": "user", "content": question or "(empty question)"})
        history.append({"role": "assistant", "content": "…"})
        yield history, "", gr.update(), gr.update(), gr.update()
        try:
            text = ""
            for text in service.ask(key, question):
                history[-1] = {"role": "assistant", "content": text}
                yield history, "", gr.update(), gr.update(), gr.update()
            shown = text or "(the model gave an empty answer)"
            names = service.ground(key, question, text)
            if not names or service.models is None or service.models.search is None:
                history[-1] = {"role": "assistant", "content": shown}
                yield history, "", gr.update(), gr.update(), gr.update()
                return
            hit = service.search(key, names)
            where = "highlighted in the viewer" if hit.num_matches else "none found by search"
            history[-1] = {"role": "assistant", "content": f"{shown}\n\n*Objects: {', '.join(names)} ({where})*"}
            yield history, "", hit.viewer_path, hit.image, hit.message
        except UserError as err:
            history[-1] = {"role": "assistant", "content": f"⚠️ {err}"}
            yield history, "", gr.update(), gr.update(), gr.update()

    def search(query, state):
        try:
            hit = service.search((state or {}).get("key"), query)
            return hit.viewer_path, hit.image, hit.message
        except UserError as err:
            return gr.update(), gr.update(), f"❌ {err}"

    def reset_view(state):
        return [], "", (state or {}).get("viewer"), None, ""

    with gr.Blocks(title="Chorus-QA") as demo:
        gr.Markdown(INTRO)
        gr.Markdown(service.status_markdown(), elem_id="model-status")
        state = gr.State({"key": initial.key, "viewer": initial.viewer_path} if initial else {})
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                picker = gr.Dropdown(choices=service.demo_choices(), value=initial.demo_key if initial else None,
                                     label="Demo room", info="procedural rooms from fixed seeds")
                upload = gr.File(label=f"…or upload a scene (.ply, .splat, .npz, .zip SceneSplat folder; ≤ {service.config.max_upload_mb:.0f} MB)",
                                 file_types=[".ply", ".splat", ".npz", ".zip"], type="filepath", height=130)
                scene_status = gr.Markdown(initial.status if initial else "Choose a room.", elem_id="scene-status")
                viewer = gr.Model3D(value=initial.viewer_path if initial else None, label="Scene (you stand in the room: drag to look around, scroll to move)",
                                    height=420, clear_color=(0.08, 0.08, 0.1, 1.0))
                with gr.Row():
                    query = gr.Textbox(label="Open-vocabulary search", placeholder="lamp, couch, a red chair …", scale=3, elem_id="search-box")
                    search_btn = gr.Button("Highlight", scale=1, elem_id="search-button")
                search_msg = gr.Markdown(elem_id="search-status")
                heat = gr.Image(label="Top-down heat map of the last search", height=300, interactive=False)
            with gr.Column(scale=1):
                chatbot = gr.Chatbot(label="Chat", height=520, elem_id="chat")
                question = gr.Textbox(label="Question", placeholder="how many chairs are in the room?", elem_id="question")
                with gr.Row():
                    send = gr.Button("Ask", variant="primary", elem_id="ask")
                    clear = gr.Button("Clear", elem_id="clear")
                examples = gr.Dataset(components=[question], samples=example_samples(initial), label="Example questions for this scene", elem_id="examples")

        scene_out = [state, viewer, scene_status, examples, chatbot, heat, search_msg]
        picker.input(select_demo, [picker], scene_out, api_name="select_demo")
        upload.upload(upload_scene, [upload], scene_out, api_name="upload_scene")
        ask_out = [chatbot, question, viewer, heat, search_msg]
        send.click(ask, [question, chatbot, state], ask_out, api_name="ask")
        question.submit(ask, [question, chatbot, state], ask_out, api_name=False)
        examples.click(lambda sample: sample[0], [examples], [question], api_name=False)
        search_btn.click(search, [query, state], [viewer, heat, search_msg], api_name="search")
        query.submit(search, [query, state], [viewer, heat, search_msg], api_name=False)
        clear.click(reset_view, [state], [chatbot, question, viewer, heat, search_msg], api_name="clear")
    return demo


def app_theme():
    """System fonts only: the default theme would fetch Google Fonts, and the app must work offline."""
    import gradio as gr

    return gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def main(argv=None) -> int:
    args = parse_args(argv)
    service = ChorusAppService(config_from_args(args))
    print(service.status_markdown().replace("**", ""), flush=True)
    initial = None
    if not args.no_preload or args.scene:
        try:
            initial = service.open_file(args.scene) if args.scene else service.open_demo(service.demo_rooms[0].key)
        except UserError as err:
            print(f"could not open the start scene: {err}", flush=True)
    demo = build_ui(service, initial)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=f"{args.max_upload_mb:g}mb",
                allowed_paths=[str(service.config.cache_root)], show_error=True, theme=app_theme(),
                footer_links=["api"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
