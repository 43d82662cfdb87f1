import sys

from mechrare.cli import main

sys.exit(main())
