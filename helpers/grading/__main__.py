"""``python -m helpers.grading ...``: la orden de corrección (``helpers.grading.cli``)."""

import sys

from .cli import main

sys.exit(main())
