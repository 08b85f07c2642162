"""The web front end: the guide's Gradio app, an HTTP API, health, readiness and metrics, served by
uvicorn in the bots' own event loop on the one chat core and engine."""
