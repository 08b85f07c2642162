"""The process's exit codes, as docs/chat-platforms.md and docs/deploying.md describe them."""

EXIT_USAGE = 2  # input or settings that cannot work: running it again unchanged cannot help
EXIT_FAILURE = 1  # the model, a platform or the web server failed
