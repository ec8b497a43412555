"""``python -m pipeline ...``: see :mod:`pipeline.cli`.

Start-up (importing torch and diffusers, loading the models) makes millions of objects that live until the process
ends; the garbage collector would walk them all again and again for nothing. So collection is off until the command is
ready to work (:func:`pipeline.cli.ready`), and at the end everything is frozen so that the interpreter's final
collection skips it: together about 2 s less per command on a 2-core machine.
"""

import time

started = time.time()  # the command's start-up figure counts from here (the interpreter itself takes ~0.03 s more)

import gc  # noqa: E402

gc.disable()

from .cli import main  # noqa: E402

code = main(started=started)
gc.freeze()
raise SystemExit(code)
