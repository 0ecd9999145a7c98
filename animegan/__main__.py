"""`python -m animegan`: the batch CLI.

It lives in `stylize_service.cli` because it runs through the cached service, the same
path as the app; the `animegan` library itself never imports the service.
"""

import sys

from stylize_service.cli import main

sys.exit(main())
