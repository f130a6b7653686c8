import sys

from TwinTrackCLI import main

sys.exit(main())
