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


def _cheap_transaction_backups():
    """moto's TransactWriteItems backs up every table it touches with `copy.deepcopy` of the
    whole table (once per item) and, on failure, swaps the copy in. Each transaction so cost
    time and memory in proportion to the table, and the copies were never freed: after a few
    thousand single-use markers (DPoP proofs, client assertions) a transaction took over 2 s,
    past the functions' SDK timeout, and the emulator grew by gigabytes. Real DynamoDB has no
    such cost. Under the global lock nothing else changes a table during a transaction, so
    here the backup is only the items the transaction writes: moto's "copy" of the table is
    the table itself, and a failed transaction puts those items back as they were."""
    import copy
    import types

    import moto.dynamodb.models as models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    active = threading.local()
    real_deepcopy = copy.deepcopy

    def backup(obj, memo=None):
        if isinstance(obj, Table) and getattr(active, "on", False) and obj.range_key_attr is None:
            return obj
        return real_deepcopy(obj, memo)

    models.copy = types.SimpleNamespace(**{**vars(copy), "deepcopy": backup})
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        saved = {}
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            key = op.get("Key") or op.get("Item") or {}
            if table is None or table.range_key_attr is not None or table.hash_key_attr not in key:
                continue
            hash_value = DynamoType(key[table.hash_key_attr])
            before = table.items.get(hash_value)
            saved[(table.name, hash_value)] = None if before is None else real_deepcopy(before)
        active.on = True
        try:
            return original(self, transact_items)
        except Exception:
            for (name, hash_value), before in saved.items():
                items = self.tables[name].items
                if before is None:
                    items.pop(hash_value, None)
                else:
                    items[hash_value] = before
            raise
        finally:
            active.on = False

    models.DynamoDBBackend.transact_write_items = transact_write_items


_cheap_transaction_backups()


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
