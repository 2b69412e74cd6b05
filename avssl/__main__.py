import sys

from avssl.cli import main

sys.exit(main())
