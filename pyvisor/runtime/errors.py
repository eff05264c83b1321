"""BootError: a problem reported to the user as one line with an exit status.

Kept apart from boot.py so that the verbs that never boot a Sentry (state, list,
kill, ...) start without importing the kernel."""


class BootError(Exception):
    """A configuration or runtime problem reported to the user as one line, with an exit
    code."""

    def __init__(self, msg: str, code: int = 126) -> None:
        super().__init__(msg)
        self.code = code
