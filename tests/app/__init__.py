"""Tests of the Gradio app, the service and the CLI, through real processes where it matters."""
