"""``python -m bench.common [--record-prompts FILE] [--engine-fault N[,K]] serve …``:
``codefill`` with the engine hooks installed (:func:`bench.common.engine_hooks.main`)."""

import sys

from bench.common.engine_hooks import main

if __name__ == "__main__":
    sys.exit(main())
