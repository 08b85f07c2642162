"""The running service, built from the settings: shared state, engine, chat core, web server and
chat adapters, each owned for its lifetime by ``service.app.Service``; and the commands beside it."""
