package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClusterSessionsMeasure is a measurement, not a check run by make
// test (issue 11, Measured: sessions held by a 3-node cluster on this box,
// with each node's RSS). It runs only when PARLEY_CLUSTER_SESSIONS names
// the total, e.g.
//
//	PARLEY_CLUSTER_SESSIONS=51000 go test ./e2e -run TestClusterSessionsMeasure -v -timeout 60m
//
// Three appliances form a cluster (the CMS sequence, as TestClusterChat);
// the accounts are imported once, on node 1, through the cluster's log;
// then one load generator (bin/parley-load, built here) per node logs a
// third of the sessions in to that node's address, as clients spread by
// SRV or by address would be, and holds them idle. While every session is
// held, the test reads each node's RSS (VmRSS) and `xmpp cluster status`'s
// SESSIONS column, and logs them; each generator's report follows.
func TestClusterSessionsMeasure(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("PARLEY_CLUSTER_SESSIONS"))
	if total <= 0 {
		t.Skip("a measurement: set PARLEY_CLUSTER_SESSIONS to the number of sessions (docs/benchmarks.md)")
	}
	per := (total + 2) / 3
	loadBin := filepath.Join(t.TempDir(), "parley-load")
	if out, err := exec.Command("go", "build", "-o", loadBin, "../cmd/parley-load").CombinedOutput(); err != nil {
		t.Fatalf("building the load generator: %v\n%s", err, out)
	}
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	one := nodes[1]
	prefixes := []string{"", "a", "b", "c"}
	started := time.Now()
	for n := 1; n <= 3; n++ {
		csv := filepath.Join(local, fmt.Sprintf("users%d.csv", n))
		if out, err := exec.Command(loadBin, "--domain", clusterDomain, "--users", strconv.Itoa(per),
			"--user-format", prefixes[n]+"%d", "--make-csv", csv).CombinedOutput(); err != nil {
			t.Fatalf("making %s: %v\n%s", csv, err, out)
		}
		one.put(t, one.asAdmin(), csv)
		one.mustAdmin(t, "xmpp user import "+filepath.Base(csv))
	}
	t.Logf("%d accounts imported on node 1 through the log in %s", 3*per, time.Since(started).Round(time.Millisecond))
	for _, x := range nodes[1:4] {
		x.waitOutput(t, "xmpp user list "+clusterDomain, "c"+strconv.Itoa(per-1)+"@"+clusterDomain)
	}

	settle := 90 * time.Second
	var wg sync.WaitGroup
	reports := make([]string, 4)
	for n := 1; n <= 3; n++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			cmd := exec.Command(loadBin, "--addr", xmppAddr(n), "--domain", clusterDomain, "--users", strconv.Itoa(per),
				"--user-format", prefixes[n]+"%d", "--messages", "1", "--window", "1", "--login-concurrency", "32",
				"--settle", settle.String(), "--timeout", "40m", "--server-pid", strconv.Itoa(nodes[n].proc.Process.Pid))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			reports[n] = fmt.Sprintf("node %d (%s): %v\n%s", n, xmppAddr(n), err, out.String())
		}(n)
	}
	// While the generators hold their sessions idle: each node's RSS and
	// the sessions the cluster counts, at the moment the most are held.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	best, bestLine := 0, ""
	for tick := time.NewTicker(5 * time.Second); ; {
		select {
		case <-done:
			tick.Stop()
			goto finished
		case <-tick.C:
		}
		st := nodes[2].admin("xmpp cluster status").stdout
		sessions := clusterSessions(st)
		sum := 0
		for _, s := range sessions {
			sum += s
		}
		var line strings.Builder
		fmt.Fprintf(&line, "%s: %d sessions in the cluster (per node %v);", time.Since(started).Round(time.Second), sum, sessions)
		for n := 1; n <= 3; n++ {
			fmt.Fprintf(&line, " node %d RSS %s;", n, rssOf(nodes[n].proc.Process.Pid))
		}
		t.Log(line.String())
		if sum >= best {
			best, bestLine = sum, line.String()
		}
	}
finished:
	for n := 1; n <= 3; n++ {
		t.Log(reports[n])
	}
	t.Logf("most sessions held at once: %s", bestLine)
	if best < 3*per*9/10 {
		t.Errorf("the cluster held at most %d sessions, want about %d", best, 3*per)
	}
}

// clusterSessions reads the SESSIONS column of xmpp cluster status.
func clusterSessions(status string) []int {
	var out []int
	sc := bufio.NewScanner(strings.NewReader(status))
	in := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] == "NODE" {
			in = true
			continue
		}
		if in && len(f) > 0 {
			if n, err := strconv.Atoi(f[len(f)-1]); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// rssOf is a process's resident memory, as /proc shows it.
func rssOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	return "?"
}
