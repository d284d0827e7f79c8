package e2e

// The Debian package (issue 12): `make deb` builds it, dpkg-deb shows the
// control fields and the files it holds, systemd-analyze accepts the unit,
// and — as root — dpkg -i installs it, the binary started exactly as the
// unit's ExecStart starts it (flags from /etc/default/parley, user parley,
// the state directory, the limits) is a working appliance reached with the
// real OpenSSH client, dpkg -r removes it and keeps the data, and a purge
// at the end leaves the machine as it was found.

import (
	"debug/elf"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// debAddr is the loopback address of the installed appliance's SSH
// listener: no other e2e test uses 127.0.12.x.
const debAddr = "127.0.12.1"

// debLock serializes the install part across processes (two test runs on
// one machine would otherwise fight over one dpkg database and one user).
const debLock = "/run/lock/parley-e2e-deb.lock"

var debNameRE = regexp.MustCompile(`^parley_([0-9][A-Za-z0-9.+~]*)_([a-z0-9]+)\.deb$`)

// debFile is one line of dpkg-deb --contents.
type debFile struct {
	mode, owner string
}

func TestDebianPackage(t *testing.T) {
	t.Parallel()
	started := time.Now()
	needTools(t, map[string]string{"make": "make", "dpkg-deb": "dpkg", "systemd-analyze": "systemd"})
	root := moduleRoot(t)
	work := t.TempDir()
	deb, version, arch := buildDeb(t, root, work)
	t.Logf("built %s in %v", filepath.Base(deb), time.Since(started).Round(100*time.Millisecond))

	checkControl(t, deb, version, arch)
	checkContents(t, root, deb)

	tree := filepath.Join(work, "tree")
	mustRun(t, "dpkg-deb", "-x", deb, tree)
	control := filepath.Join(work, "control")
	mustRun(t, "dpkg-deb", "-e", deb, control)
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		mustRun(t, "sh", "-n", filepath.Join(control, s))
	}
	checkStatic(t, filepath.Join(tree, "usr/bin/parley"))
	unit := parseUnit(t, filepath.Join(tree, "usr/lib/systemd/system/parley.service"))
	checkUnit(t, unit)
	verifyUnitOffline(t, tree)
	defaults, err := os.ReadFile(filepath.Join(tree, "etc/default/parley"))
	if err != nil {
		t.Fatal(err)
	}
	if env := parseEnvFile(t, string(defaults)); env["PARLEY_OPTS"] != "--ssh-listen :2222" {
		t.Fatalf("/etc/default/parley: PARLEY_OPTS=%q, want the default port \"--ssh-listen :2222\"", env["PARLEY_OPTS"])
	}

	t.Run("install", func(t *testing.T) {
		installed(t, deb, version)
	})
	t.Logf("TestDebianPackage took %v", time.Since(started).Round(100*time.Millisecond))
}

// needTools fails the test unless each tool (key) is installed; the value
// names the Debian package that has it.
func needTools(t *testing.T, tools map[string]string) {
	t.Helper()
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", tool)); err != nil {
				t.Fatalf("%s is missing: install the Debian package %s (make deps does)", tool, pkg)
			}
		}
	}
}

// moduleRoot is the directory of go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// mustRun runs a command and returns its standard output; the test fails
// if it fails.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// buildDeb runs `make deb` into work and returns the package's path, and the
// version and architecture its name says.
func buildDeb(t *testing.T, root, work string) (deb, version, arch string) {
	t.Helper()
	// DEB_GOFLAGS= leaves out -trimpath, which would compile everything
	// again (about a minute on a cold cache) for no difference the test
	// could see; the rest is the release build.
	cmd := exec.Command("make", "-s", "deb", "DEB_DIR="+work, "DEB_BUILD="+filepath.Join(work, "build"), "DEB_GOFLAGS=")
	cmd.Dir = root
	// Not the make that runs `make test`: its jobserver is not ours.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAKEFLAGS=") && !strings.HasPrefix(kv, "MFLAGS=") && !strings.HasPrefix(kv, "MAKELEVEL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb DEB_DIR=%s made %v, want one parley_<version>_<arch>.deb", work, debs)
	}
	m := debNameRE.FindStringSubmatch(filepath.Base(debs[0]))
	if m == nil {
		t.Fatalf("make deb made %s, want parley_<version>_<arch>.deb with a Debian version", filepath.Base(debs[0]))
	}
	if host := strings.TrimSpace(mustRun(t, "dpkg", "--print-architecture")); m[2] != host {
		t.Fatalf("make deb made a package for %s, want this machine's Debian architecture %s", m[2], host)
	}
	return debs[0], m[1], m[2]
}

// checkControl checks the control fields and the control archive's members.
func checkControl(t *testing.T, deb, version, arch string) {
	t.Helper()
	fields := map[string]string{}
	for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Depends", "Section", "Priority", "Description"} {
		fields[f] = strings.TrimSpace(mustRun(t, "dpkg-deb", "--field", deb, f))
	}
	want := map[string]string{"Package": "parley", "Version": version, "Architecture": arch, "Section": "net", "Priority": "optional"}
	for f, v := range want {
		if fields[f] != v {
			t.Errorf("control field %s: %q, want %q", f, fields[f], v)
		}
	}
	if !regexp.MustCompile(`(^|, )adduser($|[ ,])`).MatchString(fields["Depends"]) {
		t.Errorf("Depends: %q, want adduser (the postinst creates the user parley with it)", fields["Depends"])
	}
	if fields["Maintainer"] == "" || !strings.HasPrefix(fields["Description"], "XMPP server appliance") {
		t.Errorf("Maintainer %q, Description %q: want both set", fields["Maintainer"], fields["Description"])
	}
	info := mustRun(t, "dpkg-deb", "--info", deb)
	for _, member := range []string{"control", "md5sums", "conffiles", "postinst", "prerm", "postrm"} {
		if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*?\s+` + member + `\b`).MatchString(info) {
			t.Errorf("dpkg-deb --info shows no control member %s:\n%s", member, info)
		}
	}
	if got := mustRun(t, "dpkg-deb", "--info", deb, "conffiles"); got != "/etc/default/parley\n" {
		t.Errorf("conffiles: %q, want only /etc/default/parley", got)
	}
}

// checkContents checks every file of the data archive, with its mode and
// owner: the binary, the unit, the defaults, the docs; nothing else.
func checkContents(t *testing.T, root, deb string) {
	t.Helper()
	got := map[string]debFile{}
	for _, line := range strings.Split(strings.TrimSpace(mustRun(t, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents: cannot read %q", line)
		}
		got[strings.TrimPrefix(f[5], ".")] = debFile{mode: f[0], owner: f[1]}
	}
	want := map[string]debFile{
		"/usr/bin/parley":                           {"-rwxr-xr-x", "root/root"},
		"/usr/lib/systemd/system/parley.service":    {"-rw-r--r--", "root/root"},
		"/etc/default/parley":                       {"-rw-r--r--", "root/root"},
		"/usr/share/doc/parley/README.md":           {"-rw-r--r--", "root/root"},
		"/usr/share/doc/parley/docs/admin-guide.md": {"-rw-r--r--", "root/root"},
	}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, d := range docs {
		want["/usr/share/doc/parley/docs/"+filepath.Base(d)] = debFile{"-rw-r--r--", "root/root"}
	}
	for path, w := range want {
		if g, ok := got[path]; !ok {
			t.Errorf("the package has no %s", path)
		} else if g != w {
			t.Errorf("%s: %s %s, want %s %s", path, g.mode, g.owner, w.mode, w.owner)
		}
	}
	var paths []string
	for path := range got {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		g := got[path]
		switch {
		case strings.HasPrefix(g.mode, "d"):
			if g != (debFile{"drwxr-xr-x", "root/root"}) {
				t.Errorf("directory %s: %s %s, want drwxr-xr-x root/root", path, g.mode, g.owner)
			}
		case want[path] == (debFile{}):
			t.Errorf("the package holds %s (%s), which it should not (the load generator stays out of the appliance's package)", path, g.mode)
		}
	}
}

// checkStatic checks the packaged binary needs no dynamic loader (so no
// libc dependency is missing from Depends) and runs.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the packaged /usr/bin/parley: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("the packaged /usr/bin/parley is dynamically linked: Depends would need its libraries (build it with CGO_ENABLED=0)")
		}
	}
	if out := mustRun(t, bin, "version"); !strings.HasPrefix(out, "Parley ") {
		t.Fatalf("the packaged parley version: %q", out)
	}
}

// unitFile is a parsed systemd unit: section, then key, then its values in
// order (a key may repeat).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: a continued line; this parser (and the test) does not handle them", path, n+1)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: cannot read %q", path, n+1, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u
}

// get is the value of a key set once (or the last of several).
func (u unitFile) get(section, key string) (string, bool) {
	vs, ok := u[section][key]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

func checkUnit(t *testing.T, u unitFile) {
	t.Helper()
	want := map[string]string{
		"User": "parley", "Group": "parley", "StateDirectory": "parley", "WorkingDirectory": "/var/lib/parley",
		"EnvironmentFile": "-/etc/default/parley", "ExecStart": "/usr/bin/parley serve --data-dir /var/lib/parley $PARLEY_OPTS",
		"Restart": "on-failure", "LimitNOFILE": "20000", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
	}
	for k, w := range want {
		if g, ok := u.get("Service", k); !ok || g != w {
			t.Errorf("parley.service [Service] %s=%q (set: %v), want %q", k, g, ok, w)
		}
	}
	if g, _ := u.get("Install", "WantedBy"); g != "multi-user.target" {
		t.Errorf("parley.service [Install] WantedBy=%q, want multi-user.target", g)
	}
}

// verifyUnitOffline runs systemd-analyze on the unpacked package: verify
// (which also checks that ExecStart's binary is there and executable) and
// security, whose exposure must stay at most 2.0 ("OK"). systemd-analyze
// --root needs the targets the unit depends on: the host's are copied in,
// without replacing the package's files.
func verifyUnitOffline(t *testing.T, tree string) {
	t.Helper()
	if _, err := os.Stat("/usr/lib/systemd/system/sysinit.target"); err != nil {
		t.Fatalf("systemd-analyze needs the host's systemd units (Debian package systemd): %v", err)
	}
	copyMissing(t, "/usr/lib/systemd/system", filepath.Join(tree, "usr/lib/systemd/system"))
	analyze(t, "verify", "--root="+tree, "parley.service")
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--root="+tree, "--threshold=20", "parley.service").CombinedOutput()
	overall := regexp.MustCompile(`Overall exposure level for parley.service: .*`).Find(out)
	if err != nil {
		t.Fatalf("systemd-analyze security: %v: the unit's hardening got weaker (exposure above 2.0)\n%s", err, out)
	}
	t.Logf("systemd-analyze security: %s", overall)
}

// copyMissing copies the tree src into dst (files, directories, symbolic
// links as they are), leaving alone what dst already has.
func copyMissing(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if _, err := os.Lstat(to); err == nil {
			return nil
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(to, data, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s into %s: %v", src, dst, err)
	}
}

// analyze runs systemd-analyze, which must succeed and say nothing: its
// warnings about unknown keys or bad values come with status 0.
func analyze(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// parseEnvFile reads an EnvironmentFile= as systemd does for the forms the
// package uses: KEY=VALUE lines, the value optionally in double or single
// quotes, comments and blank lines skipped.
func parseEnvFile(t *testing.T, data string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for n, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("/etc/default/parley:%d: not KEY=VALUE: %q", n+1, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[strings.TrimSpace(k)] = v
	}
	return env
}

// installed is the part that needs root: install, run as the unit does,
// remove, and purge at the end.
func installed(t *testing.T, deb, version string) {
	if os.Geteuid() != 0 {
		t.Skip("dpkg -i, the user parley and /var/lib/parley need root: the install, run and remove steps are skipped (the package itself was built and checked)")
	}
	needTools(t, map[string]string{"dpkg": "dpkg", "adduser": "adduser", "setpriv": "util-linux", "prlimit": "util-linux", "getent": "libc-bin"})
	lock, err := os.OpenFile(debLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		t.Fatal(err)
	}
	// Cleanups run last-registered first: this one, after the purge.
	t.Cleanup(func() { lock.Close() })

	// Never touch a Parley someone installed or left here.
	if st := dpkgStatus(t); st != "" {
		t.Skipf("a parley package is on this machine (%s): the test installs and purges its own, so it leaves that one alone", st)
	}
	if _, err := user.Lookup("parley"); err == nil {
		t.Skip("a user parley exists on this machine: the test creates and deletes its own, so it leaves that one alone")
	}
	if _, err := os.Stat("/var/lib/parley"); err == nil {
		t.Skip("/var/lib/parley exists on this machine: the test would install over that data, so it leaves it alone")
	}
	wants := "/etc/systemd/system/multi-user.target.wants/parley.service"
	t.Cleanup(func() { purge(t, wants) })

	out := dpkg(t, "-i", deb)
	t.Logf("dpkg -i said:\n%s", out)
	if !strings.Contains(out, "journalctl -u parley") {
		t.Errorf("dpkg -i does not tell where the first-boot password is (journalctl -u parley):\n%s", out)
	}
	if st := dpkgStatus(t); st != "install ok installed "+version {
		t.Fatalf("after dpkg -i: status %q, want install ok installed %s", st, version)
	}
	u, err := user.Lookup("parley")
	if err != nil {
		t.Fatalf("dpkg -i created no user parley: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid >= 1000 || u.HomeDir != "/var/lib/parley" {
		t.Errorf("user parley: uid %d, home %s; want a system user (uid < 1000) at home in /var/lib/parley", uid, u.HomeDir)
	}
	if g, err := user.LookupGroupId(u.Gid); err != nil || g.Name != "parley" {
		t.Errorf("user parley's group: %v %v, want parley", g, err)
	}
	if pw := getent(t, "passwd", "parley"); !strings.HasSuffix(pw, ":/usr/sbin/nologin") {
		t.Errorf("user parley can log in: %s", pw)
	}
	checkOwned(t, "/var/lib/parley", uid, gid, 0o700)
	if _, err := os.Stat("/usr/bin/deb-systemd-helper"); err == nil {
		// (deb-systemd-helper links to /lib/systemd/system: the same
		// directory on a merged-/usr system.)
		target, err := filepath.EvalSymlinks(wants)
		unit, _ := filepath.EvalSymlinks("/usr/lib/systemd/system/parley.service")
		if err != nil || target != unit {
			t.Errorf("the unit is not enabled (%s -> %q, %v)", wants, target, err)
		}
	}
	analyze(t, "verify", "parley.service")

	// The admin sets the flags in /etc/default/parley, as the guide says:
	// a loopback address of this test's own and a host name.
	unit := parseUnit(t, "/usr/lib/systemd/system/parley.service")
	env, _ := unit.get("Service", "EnvironmentFile")
	envFile := strings.TrimPrefix(env, "-")
	shipped, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	var port string
	var app *unitProcess
	for try := 0; ; try++ {
		port = freePortOn(t, debAddr)
		opts := fmt.Sprintf(`PARLEY_OPTS="--ssh-listen %s:%s --hostname deb-e2e"`, debAddr, port)
		edited := regexp.MustCompile(`(?m)^PARLEY_OPTS=.*$`).ReplaceAllLiteralString(string(shipped), opts)
		if err := os.WriteFile(envFile, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		app = startAsUnit(t, unit)
		err := app.waitBoot(net.JoinHostPort(debAddr, port))
		if err == nil {
			break
		}
		app.stop(t)
		if try < 3 && strings.Contains(app.stderr.String(), "address already in use") {
			continue
		}
		t.Fatalf("parley started as parley.service does did not boot: %v\nstdout:\n%s\nstderr:\n%s", err, app.stdout, app.stderr)
	}
	t.Cleanup(func() { app.stop(t) })

	// The first-boot password is in its output (the journal under systemd).
	m := generatedRE.FindStringSubmatch(app.stdout.String())
	if m == nil {
		t.Fatalf("the first start prints no generated admin password:\n%s", app.stdout)
	}
	a := &appliance{t: t, port: port}
	at := []string{"-o", "HostName=" + debAddr}
	generated := login{user: "admin", password: m[1], opts: at}
	mustFail(t, a.ssh(generated, "", "version"), "exec with the generated password", "password has expired")
	const newPassword = "Deb-admin-pw-42"
	s := a.interactive(t, generated)
	s.expect(t, "Your password has expired: choose a new one.", screenTimeout)
	s.expect(t, "New password: ", screenTimeout)
	s.send(newPassword + "\r")
	s.expect(t, "Retype password: ", screenTimeout)
	s.send(newPassword + "\r")
	s.expect(t, "Password changed.", screenTimeout)
	s.expect(t, "deb-e2e> ", screenTimeout)
	s.send("exit\r")
	if code := s.wait(t, screenTimeout); code != 0 {
		t.Fatalf("exit: ssh status %d, want 0", code)
	}
	admin := login{user: "admin", password: newPassword, opts: at}
	if got, want := mustOK(t, a.ssh(admin, "", "version"), "version"), mustRun(t, "/usr/bin/parley", "version"); got != want {
		t.Fatalf("version over SSH: %q, want %q", got, want)
	}
	mustOK(t, a.ssh(admin, "", "health"), "health")
	t.Logf("logged in with the first-boot password from the output, changed it, ran version and health as admin over SSH")

	// What it wrote is parley's, and no one else's to read.
	filepath.WalkDir("/var/lib/parley", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		info, _ := d.Info()
		st := info.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || info.Mode().Perm()&0o007 != 0 {
			t.Errorf("%s: owner %d, mode %v; want the user parley's (%d), nothing for others", path, st.Uid, info.Mode().Perm(), uid)
		}
		return nil
	})
	for _, f := range []string{"parley.db", "ssh_host_ed25519_key", "files"} {
		if _, err := os.Stat(filepath.Join("/var/lib/parley", f)); err != nil {
			t.Errorf("the appliance's data is not in /var/lib/parley: %v", err)
		}
	}
	if code := app.stop(t); code != 0 {
		t.Errorf("parley exited with status %d after SIGTERM:\n%s", code, app.stderr)
	}

	// dpkg -r removes the program and keeps the data, the user and the flags.
	dpkg(t, "-r", "parley")
	if st := dpkgStatus(t); st != "deinstall ok config-files "+version {
		t.Errorf("after dpkg -r: status %q, want deinstall ok config-files %s", st, version)
	}
	for _, gone := range []string{"/usr/bin/parley", "/usr/lib/systemd/system/parley.service", "/usr/share/doc/parley"} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("dpkg -r left %s", gone)
		}
	}
	for _, kept := range []string{"/var/lib/parley/parley.db", "/var/lib/parley/ssh_host_ed25519_key", envFile} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("dpkg -r did not keep %s: %v", kept, err)
		}
	}
	if _, err := user.Lookup("parley"); err != nil {
		t.Errorf("dpkg -r deleted the user parley: %v", err)
	}
}

// dpkg runs dpkg with args and returns its output; the test fails if it
// fails.
func dpkg(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("dpkg", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// dpkgStatus is "<want> <error> <status> <version>" of the package parley,
// or "" when dpkg does not know it.
func dpkgStatus(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status} ${Version}", "parley").Output()
	st := strings.TrimSpace(string(out))
	if err != nil || strings.HasPrefix(st, "unknown ok not-installed") {
		return ""
	}
	return st
}

func getent(t *testing.T, db, key string) string {
	t.Helper()
	out, err := exec.Command("getent", db, key).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// checkOwned checks a path's owner, group and permissions.
func checkOwned(t *testing.T, path string, uid, gid int, perm os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	st := info.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid || info.Mode().Perm() != perm {
		t.Errorf("%s: %d:%d %v, want %d:%d %v", path, st.Uid, st.Gid, info.Mode().Perm(), uid, gid, perm)
	}
}

// purge removes the package with everything it made and checks that the
// machine is as the test found it.
func purge(t *testing.T, wants string) {
	cmd := exec.Command("dpkg", "--purge", "parley")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("dpkg --purge parley: %v\n%s", err, out)
	}
	if st := dpkgStatus(t); st != "" {
		t.Errorf("after dpkg --purge: status %q", st)
	}
	for _, gone := range []string{"/var/lib/parley", "/etc/default/parley", wants,
		"/var/lib/systemd/deb-systemd-helper-enabled/parley.service.dsh-also",
		"/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/parley.service"} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("dpkg --purge left %s", gone)
		}
	}
	if pw := getent(t, "passwd", "parley"); pw != "" {
		t.Errorf("dpkg --purge left the user: %s", pw)
	}
	if gr := getent(t, "group", "parley"); gr != "" {
		t.Errorf("dpkg --purge left the group: %s", gr)
	}
}

// freePortOn returns a TCP port on addr that was free a moment ago.
func freePortOn(t *testing.T, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// unitProcess is the service's main process, started as systemd would.
type unitProcess struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
}

// startAsUnit starts the unit's ExecStart as systemd does for the settings
// the unit uses: the EnvironmentFile and $VAR expansion (split on spaces),
// User and Group with their supplementary groups, the StateDirectory made
// and handed to the user with StateDirectoryMode, WorkingDirectory, UMask,
// LimitNOFILE, NoNewPrivileges and no capabilities, and systemd's plain
// environment. The sandboxing options (ProtectSystem …) need systemd
// itself; systemd-analyze verify checked them.
func startAsUnit(t *testing.T, u unitFile) *unitProcess {
	t.Helper()
	get := func(k string) string {
		v, ok := u.get("Service", k)
		if !ok {
			t.Fatalf("parley.service has no %s=", k)
		}
		return v
	}
	userName, group := get("User"), get("Group")
	usr, err := user.Lookup(userName)
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(usr.Uid)
	gid, _ := strconv.Atoi(grp.Gid)

	env := map[string]string{}
	if ef := get("EnvironmentFile"); ef != "" {
		data, err := os.ReadFile(strings.TrimPrefix(ef, "-"))
		if err != nil && !strings.HasPrefix(ef, "-") {
			t.Fatal(err)
		}
		env = parseEnvFile(t, string(data))
	}
	var argv []string
	for _, w := range strings.Fields(get("ExecStart")) {
		switch {
		case strings.ContainsAny(w, `%"'\`) || strings.Contains(w, "${"):
			t.Fatalf("ExecStart word %q: specifiers, quotes and ${VAR} are not emulated by this test", w)
		case strings.HasPrefix(w, "$"):
			argv = append(argv, strings.Fields(env[w[1:]])...)
		default:
			argv = append(argv, w)
		}
	}
	if strings.ContainsAny(argv[0][:1], "-@:+!") {
		t.Fatalf("ExecStart prefix %q is not emulated by this test", argv[0][:1])
	}

	stateMode, err := strconv.ParseUint(get("StateDirectoryMode"), 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join("/var/lib", get("StateDirectory"))
	if err := os.MkdirAll(state, os.FileMode(stateMode)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, os.FileMode(stateMode)); err != nil {
		t.Fatal(err)
	}

	nofile := get("LimitNOFILE")
	args := []string{"--nofile=" + nofile + ":" + nofile, "--",
		"setpriv", "--reuid=" + usr.Uid, "--regid=" + grp.Gid, "--init-groups",
		"--inh-caps=-all", "--bounding-set=-all"}
	if get("NoNewPrivileges") == "yes" {
		args = append(args, "--no-new-privs")
	}
	args = append(args, "--", "/bin/sh", "-c", "umask "+get("UMask")+` && exec "$0" "$@"`)
	cmd := exec.Command("prlimit", append(args, argv...)...)
	cmd.Dir = get("WorkingDirectory")
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "LANG=C.UTF-8",
		"HOME=" + usr.HomeDir, "USER=" + userName, "LOGNAME=" + userName, "SHELL=/usr/sbin/nologin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &unitProcess{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	return p
}

// waitBoot waits until the process accepts connections on addr and has
// printed how to log in.
func (p *unitProcess) waitBoot(addr string) error {
	deadline := time.Now().Add(bootTimeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("parley exited during boot (%v)", p.cmd.ProcessState)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			if strings.Contains(p.stdout.String(), "Log in with") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SSH listener on %s within %v", addr, bootTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process with SIGTERM, as systemctl stop does (SIGKILL after
// stopTimeout), and returns its exit status.
func (p *unitProcess) stop(t *testing.T) int {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("parley did not stop within %v of SIGTERM", stopTimeout)
	}
	return p.cmd.ProcessState.ExitCode()
}
