"""Start moto's server on a loopback port, with two fixes that make it behave as AWS does.

moto 5.2 writes `containers[].cpu` and `.memory` as JSON numbers where the ECS API says strings,
and aws-sdk-ecs rejects the whole RunTask / DescribeTasks response ("type mismatch: expected
string"). We wrap `moto.ecs.models.Container.__init__` to store those two fields as strings.

DynamoDB evaluates a write's condition and applies the write atomically; moto's threaded server
checks and writes without a lock, so two concurrent conditional writes of one item can both
pass (seen in functions/tests/store.rs, the concurrent transition checks). We serialise moto's
DynamoDB write operations with one lock, which restores that atomicity.

Usage: python moto_server.py [--port N] [--port-file PATH]
Port 0 (the default) picks a free port; the chosen port is printed and written to --port-file.
"""

import argparse
import signal
import socket
import sys
import threading

import moto.dynamodb.models as dynamodb_models
import moto.ecs.models as ecs_models
from moto.server import ThreadedMotoServer

_original_init = ecs_models.Container.__init__


def _init_with_string_sizes(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    for field in ("cpu", "memory"):
        value = getattr(self, field, None)
        if isinstance(value, int):
            setattr(self, field, str(value))


ecs_models.Container.__init__ = _init_with_string_sizes

_dynamodb_writes = threading.RLock()


def _atomic(method):
    def locked(*args, **kwargs):
        with _dynamodb_writes:
            return method(*args, **kwargs)

    locked.__name__ = method.__name__
    locked.__doc__ = method.__doc__
    return locked


for _name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
    setattr(
        dynamodb_models.DynamoDBBackend,
        _name,
        _atomic(getattr(dynamodb_models.DynamoDBBackend, _name)),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()
    port = args.port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    if args.port_file:
        with open(args.port_file, "w", encoding="utf-8") as f:
            f.write(str(port))
    print(f"moto listening on http://127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
