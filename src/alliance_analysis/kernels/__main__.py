"""The kernel fork server's process (:class:`~alliance_analysis.kernels.forking.ForkServer`
starts it): ``python -m alliance_analysis.kernels REQUEST_FD REPLY_FD PRELOAD_JSON``.

Run as the package's ``__main__`` rather than as ``-m alliance_analysis.kernels.forking``:
the package imports that module first, and runpy then warns on every run that it is
executed a second time.
"""

import json
import os
import sys

from alliance_analysis.kernels.forking import serve

serve(int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]))
# Every kernel has ended (serve waits for them) and nothing is left to write: exit at once.
# An orderly exit finalises the whole scientific stack the server imported, which took most
# of a second at the end of every run, while the run waited for the server to end.
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
