"""User-facing errors.

Every problem with what a user gave us (a photo, a recording, a landmark file) is raised as an
:class:`InputError` whose message is one readable sentence. The CLI prints it and exits non-zero; the
app shows it in the page. Anything else that escapes is a bug.
"""

from __future__ import annotations


class InputError(ValueError):
    """A problem with user input, explained in one human sentence."""


class NoFaceError(InputError):
    """No usable face was found in an image."""


class AudioError(InputError):
    """The audio could not be used."""


class TrackError(InputError):
    """A landmark track file is malformed."""
