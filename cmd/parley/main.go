// Command parley is the Parley XMPP appliance: `parley serve` runs the SSH
// admin shell over the configuration store and the XMPP engine, handing the
// engine to the commands as it is; `parley version` prints the version;
// `parley docs` prints the command reference. The load generator is a
// command of its own, cmd/parley-load.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/parley-xmpp/parley/commands"
	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/shell"
	"github.com/parley-xmpp/parley/store"
)

// Version is set at build time (-ldflags "-X main.Version=…").
var Version = "0.1.0-dev"

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "parley: %v\n", err)
			os.Exit(1)
		}
	case "version", "--version", "-v":
		fmt.Printf("Parley %s\n", Version)
	case "docs":
		fmt.Print(commands.NewTree().Markdown())
	case "help", "--help", "-h":
		usage(os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "parley: unknown command %q\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage:
  parley serve --data-dir DIR [--ssh-listen ADDR] [--admin-password-file F] [--admin-key F] [--hostname NAME]
  parley version
  parley docs     print the command reference (docs/commands.md)
The load generator is a command of its own: parley-load (bin/parley-load).
`)
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "data directory: store, files area, host key (required)")
	listen := fs.String("ssh-listen", ":2222", "address for the SSH admin shell and SFTP")
	pwFile := fs.String("admin-password-file", "", "first boot: the admin user's password, from this file")
	keyFile := fs.String("admin-key", "", "authorize the SSH public key(s) in this file for the admin user")
	hostname := fs.String("hostname", "", "set the appliance's host name (the shell prompt)")
	maxUpload := fs.Int64("sftp-max-upload", pki.MaxFileSize, "largest file accepted over SFTP, in bytes")
	idle := fs.Duration("xmpp-idle-timeout", 5*time.Minute, "a client silent this long is pinged, and closed after as long again")
	fs.Uint64Var(&raftTuning.SnapshotThreshold, "raft-snapshot-threshold", 8192, "cluster: log entries after which the store is snapshotted and the log truncated")
	fs.DurationVar(&raftTuning.SnapshotInterval, "raft-snapshot-interval", 30*time.Second, "cluster: how often the threshold is checked")
	fs.Uint64Var(&raftTuning.TrailingLogs, "raft-trailing-logs", 10240, "cluster: log entries kept after a snapshot (a node further behind gets the snapshot)")
	pprofAddr := fs.String("debug-pprof", "", "serve Go's profiles (net/http/pprof) on this loopback address:port, for developers measuring memory and CPU; off by default")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			return fmt.Errorf("--debug-pprof: %v", err)
		}
	}
	st, err := store.Open(*dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	area, err := pki.OpenArea(filepath.Join(*dataDir, "files"))
	if err != nil {
		return err
	}
	defer area.Close()
	logs, err := openLogs(*dataDir, st, area)
	if err != nil {
		return err
	}
	defer logs.Close()
	logger := logs.Logger()
	if *hostname != "" {
		if err := commands.CheckHostname(*hostname); err != nil {
			return fmt.Errorf("--hostname: %v", err)
		}
	}
	// The host name is node-local: written here, it needs no leader.
	if current, _ := st.Config(store.ConfigHostname); *hostname != "" && *hostname != current {
		if err := st.SetLocal(store.ConfigHostname, *hostname); err != nil {
			return fmt.Errorf("--hostname: %v", err)
		}
	}
	engine := server.New(server.Config{Store: st, Files: area, Version: Version, Log: logger, IdleTimeout: *idle})
	// The cluster starts before anything replicated is written at boot:
	// on a member, a write goes through the cluster's log (the store
	// refuses to commit it alone: see store.SetClustered).
	settings, err := newClusterSettings(*dataDir, st)
	if err != nil {
		return err
	}
	node, err := newClusterNode(*dataDir, st, area, engine.LocalSessions, settings, logger)
	if err != nil {
		return err
	}
	defer node.Close()
	adminKey := *keyFile
	if !node.waitWritable(bootWriteWait) {
		logging.Problem(logger, "cluster: no leader within %v: --admin-key is not applied at this boot", bootWriteWait)
		adminKey = ""
	}
	generated, err := shell.Bootstrap(st, *pwFile, adminKey)
	if err != nil {
		return err
	}
	hostKey, err := shell.LoadOrCreateHostKey(*dataDir)
	if err != nil {
		return err
	}
	engine.SetNode(func() (string, string) { return node.c.ID(), commands.Hostname(st) })
	engine.Start()
	defer engine.Stop()
	// In a cluster, the engine routes over every node (the route table
	// on the node's mesh); alone, it routes as a single appliance.
	node.joined = func() { engine.JoinMesh(node.Mesh()) }
	node.left = engine.LeaveMesh
	if node.Enabled() {
		node.joined()
	}
	env := &commands.Env{Logs: logs, Store: st, Files: area, Version: Version, Started: time.Now(), XMPP: engine,
		Federation: engine, DNS: engine.Resolver(), Cluster: node, ClusterSettings: settings, Metrics: engine}
	srv := shell.New(shell.Config{
		Env: env, Tree: commands.NewTree(), HostKey: hostKey, Log: logger, MaxUpload: *maxUpload,
	})
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("SSH listener: %w", err)
	}
	host, port, _ := net.SplitHostPort(l.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "<this-host>"
	}
	logging.Major(logger, "SSH admin shell and SFTP on %s, host key %s", l.Addr(), gossh.FingerprintSHA256(hostKey.PublicKey()))
	fmt.Printf("Parley %s is running. Log in with:\n  ssh -p %s %s@%s\n", Version, port, shell.FirstAdmin, host)
	if generated != "" {
		fmt.Printf("First boot: the password of user %q is %s\n(shown only this once; you must change it at the first interactive login)\n", shell.FirstAdmin, generated)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		logging.Major(logger, "%v: shutting down", s)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		return nil
	case err := <-errc:
		return err
	}
}

// openLogs starts the log: standard error (the journal under systemd) and
// log/parley.log in the data directory, rotated; the level, the remote
// collectors and the audit file come from this node's settings and change
// live. The host name of syslog records is the appliance's.
func openLogs(dataDir string, st *store.Store, area *pki.Area) (*logging.Hub, error) {
	file, err := logging.NewRotating(filepath.Join(dataDir, logging.DefaultFileDir, logging.DefaultFileName), logging.DefaultMaxSize, logging.DefaultKeep)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	var hostname atomic.Pointer[string]
	setHost := func() { h := commands.Hostname(st); hostname.Store(&h) }
	setHost()
	logs := logging.New(logging.Config{Stderr: os.Stderr, File: file, Files: area, Hostname: func() string { return *hostname.Load() }})
	st.Watch(func(c store.Change) {
		if op, ok := c.Op.(store.ConfigSet); ok && op.Key == store.ConfigHostname {
			setHost()
		} else if _, ok := c.Op.(store.Restored); ok {
			setHost()
		}
	})
	logs.Watch(st)
	st.OnAudit(logs.Audit)
	return logs, nil
}
