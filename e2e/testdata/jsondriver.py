"""What the end-to-end tests' slixmpp drivers share: one JSON object a line
out (emit) and in (read_commands), each command run as its own task by
command(): the driver's run(op, c) coroutine, answered with one reply."""

import asyncio
import json
import sys

from slixmpp.exceptions import IqError, IqTimeout


def emit(ev, **fields):
    fields = {"ev": ev, **fields}
    sys.stdout.write(json.dumps(fields, ensure_ascii=False) + "\n")
    sys.stdout.flush()


async def command(driver, c):
    op = c.get("op")
    rid = c.get("id", "")
    try:
        fields = await driver.run(op, c)
        emit("reply", id=rid, op=op, **(fields or {}))
    except IqError as e:
        emit("reply", id=rid, op=op, error=e.iq["error"]["condition"],
             text=e.iq["error"]["text"], type=e.iq["error"]["type"])
    except IqTimeout:
        emit("reply", id=rid, op=op, error="timeout")
    except Exception as e:  # a bug in the command: say so, loudly
        emit("reply", id=rid, op=op, error="client-exception", text=repr(e))


async def read_commands(driver):
    loop = asyncio.get_event_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            # The test is done with us: leave cleanly.
            driver.disconnect()
            return
        line = line.strip()
        if not line:
            continue
        try:
            c = json.loads(line)
        except ValueError:
            emit("reply", error="client-exception", text="not JSON: %r" % line)
            continue
        task = asyncio.ensure_future(command(driver, c))
        driver.tasks.add(task)
        task.add_done_callback(driver.tasks.discard)


class Lifecycle:
    """The stream's life as events, shared by the client and component
    drivers: errors, disconnection (exit status 0) and connection failure
    (exit status 2, through self.done)."""

    def on_stream_error(self, err):
        emit("stream_error", condition=err["condition"], text=err["text"])

    def on_disconnected(self, reason):
        emit("disconnected", reason=str(reason or ""))
        if not self.done.done():
            self.done.set_result(0)

    def on_connection_failed(self, err):
        emit("connection_failed", reason=str(err))
        if not self.done.done():
            self.done.set_result(2)
