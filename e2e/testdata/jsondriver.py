"""What the end-to-end tests' slixmpp drivers share: one JSON object a line
out (emit) and in (read_commands), each command run as its own task by
the driver's command() coroutine."""

import asyncio
import json
import sys


def emit(ev, **fields):
    fields = {"ev": ev, **fields}
    sys.stdout.write(json.dumps(fields, ensure_ascii=False) + "\n")
    sys.stdout.flush()


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
        task = asyncio.ensure_future(driver.command(c))
        driver.tasks.add(task)
        task.add_done_callback(driver.tasks.discard)
