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
    whole table, once per item, so each transaction costs time in proportion to the table:
    after a few thousand single-use markers (DPoP proofs, client assertions) a transaction took
    over 2 s, past the functions' SDK timeout. Real DynamoDB has no such cost. Under the global
    lock nothing else changes the table during a transaction, so the backup only needs the
    items the transaction writes: a shallow copy of the table and its item map, with those
    items deep-copied. Rollback (moto puts the backup in place) is unchanged."""
    import copy
    import types

    import moto.dynamodb.models as models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    touched = threading.local()
    real_deepcopy = copy.deepcopy

    def backup(obj, memo=None):
        keys = getattr(touched, "keys", None)
        if not isinstance(obj, Table) or keys is None or obj.range_key_attr is not None:
            return real_deepcopy(obj, memo)
        clone = copy.copy(obj)
        clone.items = copy.copy(obj.items)
        for hash_value in keys.get(obj.name, ()):
            if hash_value in obj.items:
                clone.items[hash_value] = real_deepcopy(obj.items[hash_value])
        return clone

    models.copy = types.SimpleNamespace(**{**vars(copy), "deepcopy": backup})
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        keys = {}
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key") or op.get("Item") or {}
            if table.hash_key_attr in key:
                keys.setdefault(table.name, set()).add(DynamoType(key[table.hash_key_attr]))
        touched.keys = keys
        try:
            return original(self, transact_items)
        finally:
            touched.keys = None

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
