// Package e2e drives the built parley binary with the real OpenSSH ssh and sftp clients,
// and its XMPP service with real XMPP clients (slixmpp, go-sendxmpp) and raw sockets.
//
// It holds only tests: each one starts its own appliance (the binary built
// once by TestMain) on a free 127.0.0.1 port with its own data directory,
// and asserts what an administrator sees through /usr/bin/ssh, /usr/bin/sftp
// and, for interactive sessions, a real pseudo-terminal. Run it with
//
//	go test ./e2e/
package e2e
