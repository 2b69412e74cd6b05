"""``python -m avssl``: the ``avssl`` command (:func:`avssl.cli.main`)."""

import sys

from avssl.cli import main

sys.exit(main())
