#!/usr/bin/python3
"""A slixmpp external component (XEP-0114) that Parley's end-to-end tests
drive line by line, as a call bridge would connect.

Run by the Go tests (e2e/xmpp_component_test.go) as

    /usr/bin/python3 e2e/testdata/component.py --jid cb1.example.lan \
        --secret SECRET --host 127.0.88.1 --port 5222 [--tls]

It connects with slixmpp's ComponentXMPP (plain, or TLS-wrapped from the
first byte with --tls, as Cisco Meeting Server call bridges connect to
5223; certificates are not verified, the appliance's are self-signed) and
does the handshake with the secret. Then it reads commands from standard
input, one JSON object a line, e.g.

    {"id": "1", "op": "send", "from": "room@cb1.example.lan",
     "to": "alice@example.lan", "body": "hello"}

and writes what happens to standard output, one JSON object a line: events
as they arrive ({"ev": "session"} once the handshake is accepted,
{"ev": "message", ...}, {"ev": "stream_error", ...}, {"ev": "disconnected"})
and one {"ev": "reply", "id": ...} per command (with "error": condition
when the server answered with an error).

It exits when the connection ends, when standard input closes (after a
clean disconnect), or after --timeout seconds ({"ev": "timeout"}, status
3) so that a test never waits forever. It never reconnects by itself,
except with --reconnect.

With --srv DOMAIN --dns IP instead of --host/--port it finds the server as
a Cisco Meeting Server call bridge does: the SRV records
_xmpp-component._tcp.DOMAIN, asked of the DNS server at IP only, tried in
priority order (slixmpp's own resolver, through aiodns). With --reconnect,
a connection that ends is followed by a new one to the next record
({"ev": "disconnected"}, then {"ev": "session"} again), as a call bridge
that loses its node.
"""

import argparse
import asyncio
import json
import ssl
import sys

import slixmpp

from jsondriver import Lifecycle, emit, read_commands


class Component(Lifecycle, slixmpp.ComponentXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.secret, args.host or args.srv, args.port)
        self.args = args
        self.stopping = False
        if args.srv:
            self.dns_service = "xmpp-component"
        self.done = asyncio.get_event_loop().create_future()
        self.reading = False
        self.tasks = set()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ssl_context = ctx
        self.whitespace_keepalive = False
        self.register_plugin("xep_0030")  # answers disco#info: IQs both ways
        self.register_plugin("xep_0199")
        self.add_event_handler("session_start", self.on_session)
        self.add_event_handler("stream_error", self.on_stream_error)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("message_error", self.on_message_error)
        self.add_event_handler("presence", self.on_presence)

    # --- events -----------------------------------------------------------

    async def on_session(self, _):
        ssl_obj = self.transport.get_extra_info("ssl_object") if self.transport else None
        emit("session", jid=str(self.boundjid), tls=ssl_obj.version() if ssl_obj else "")
        if not self.reading:
            self.reading = True
            self.tasks.add(asyncio.ensure_future(read_commands(self)))

    def configure_dns(self, resolver, domain=None, port=None):
        if self.args.dns:
            resolver.nameservers = [self.args.dns]

    def disconnect(self, *a, **kw):
        self.stopping = True
        return super().disconnect(*a, **kw)

    def on_disconnected(self, reason):
        if self.args.reconnect and not self.stopping:
            emit("disconnected", reason=str(reason or ""), reconnecting=True)
            self.connect()
            return
        super().on_disconnected(reason)

    def on_connection_failed(self, err):
        if self.args.reconnect and not self.stopping:
            emit("connection_failed", reason=str(err), retrying=True)
            return  # slixmpp tries the next record by itself
        super().on_connection_failed(err)

    def on_message(self, msg):
        emit("message", **{
            "from": str(msg["from"]), "to": str(msg["to"]), "type": msg["type"],
            "body": msg["body"], "id": msg["id"],
        })

    def on_message_error(self, msg):
        emit("message_error", **{"from": str(msg["from"]), "to": str(msg["to"]),
                                 "body": msg["body"], "condition": msg["error"]["condition"]})

    def on_presence(self, pres):
        emit("presence", **{"from": str(pres["from"]), "to": str(pres["to"]),
                            "type": pres["type"], "status": pres["status"]})

    # --- commands ---------------------------------------------------------

    async def run(self, op, c):
        if op == "send":
            self.send_message(mto=c["to"], mfrom=c["from"], mbody=c.get("body"),
                              mtype=c.get("type") or "chat")
            return {}
        if op == "ping":
            # An IQ ping from the component's domain (or c["from"]) to the
            # server: its reply is a barrier.
            await self.plugin["xep_0199"].ping(jid=c["to"], ifrom=c.get("from") or self.boundjid.bare,
                                               timeout=10)
            return {}
        if op == "disconnect":
            self.disconnect()
            return {}
        raise ValueError("unknown op %r" % op)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jid", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--host")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--srv", help="find the server by _xmpp-component._tcp.SRV")
    p.add_argument("--dns", help="the DNS server to ask (with --srv)")
    p.add_argument("--reconnect", action="store_true", help="connect again when the connection ends")
    p.add_argument("--tls", action="store_true", help="TLS from the first byte (the c2s-tls port)")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    if not args.host and not args.srv:
        p.error("--host or --srv is needed")

    comp = Component(args)
    # Without an explicit host and port, ComponentXMPP resolves an empty
    # host name and never connects.
    comp.connect(args.host or args.srv, args.port, use_ssl=args.tls)
    try:
        code = await asyncio.wait_for(comp.done, args.timeout)
    except asyncio.TimeoutError:
        emit("timeout", seconds=args.timeout)
        code = 3
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.get_event_loop().run_until_complete(main()))
