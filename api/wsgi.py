"""The app gunicorn serves (`gunicorn api.wsgi:app`): built once in each worker process.

The objects made while building it (the app, its mappers and schemas, botocore's and Celery's
models: about 280,000) live as long as the process, yet the cyclic garbage collector walks them
all on every full collection, about 0.1 s of CPU each time, in the middle of a request. Freezing
them after start keeps those collections to what requests create (bench.intake: about a fifth of
the API's CPU a page). Tests build apps with `create_app()` and do not freeze: a frozen object is
never collected, and a test process builds many apps.
"""

from __future__ import annotations

import gc

from api import create_app

app = create_app()
gc.collect()  # what building it left unreachable goes now, not into the frozen generation
gc.freeze()
