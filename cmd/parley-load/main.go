// Command parley-load is the load generator of the design's performance
// budget, a binary of its own beside the appliance (bin/parley-load, built
// by make build). It is an XMPP client of its own (it uses nothing of
// server/) and drives any server: N sessions log in over STARTTLS, stay
// idle while the server's memory is read, then each user i sends M chat
// messages to user (i+1) mod N and every receiver counts what arrives.
// With --server-pid the server's CPU time and memory are read from /proc,
// so the figures are the server's alone. --make-csv writes the accounts
// for `xmpp user import`.
//
//	parley-load --domain D [--addr HOST:PORT] [--users N] [--messages M] [--server-pid PID]   (--help for all)
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

func main() {
	if err := loadCmd(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "parley-load: %v\n", err)
		os.Exit(1)
	}
}
