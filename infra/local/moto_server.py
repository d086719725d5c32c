"""Local AWS emulator: moto's WSGI app behind one global lock.

Stock `moto_server` serves requests on threads without a lock, so concurrent conditional
UpdateItems can interleave; real DynamoDB is atomic per item. Serialising every request makes
the emulator exact enough to prove the rate limiter under concurrency.

Usage: python moto_server.py PORT [PARENT_PID]
With PARENT_PID the server exits once that process is gone (test binaries cannot always
stop what they started).
"""

import os
import sys
import threading
import time

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, run_simple

_app = DomainDispatcherApplication(create_backend_app)
_lock = threading.Lock()


def locked_app(environ, start_response):
    with _lock:
        result = _app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close:
                close()
    return [body]


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # one line per request is noise here
        pass


def exit_with_parent(pid):
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
        time.sleep(1)


if __name__ == "__main__":
    port = int(sys.argv[1])
    if len(sys.argv) > 2:
        threading.Thread(target=exit_with_parent, args=(int(sys.argv[2]),), daemon=True).start()
    run_simple("127.0.0.1", port, locked_app, threaded=True, request_handler=QuietHandler)
