package commands

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/parley-xmpp/parley/pki"
)

const attrHelp = "Attributes: CN:<common name> (required), O:<organization>, OU:<unit>, L:<locality>,\n" +
	"ST:<state>, C:<two-letter country code>, subjectAltName:<name>,<name>,<ip>…, key:rsa2048|rsa4096|ecdsa-p256\n" +
	"(default rsa2048). Quote values with spaces: O:\"Example Inc.\""

func pkiCommands() []*Command {
	file := func(n string) Arg { return Arg{Name: n, Kind: ArgFile} }
	attrs := Arg{Name: "attribute", Repeat: true}
	return []*Command{
		{
			Words:   []string{"pki", "list"},
			Summary: "List the files area: each file's kind, and for certificates subject, SANs and expiry",
			Perm:    PermRead,
			Run:     runPKIList,
		},
		{
			Words:   []string{"pki", "csr"},
			Args:    []Arg{{Name: "base"}, attrs},
			Summary: "Make a new private key <base>.key and a certificate signing request <base>.csr",
			Help:    attrHelp + "\nSend <base>.csr to your CA (sftp get), then upload the certificate it returns.",
			Example: "pki csr xmpp CN:example.com O:\"Example Inc.\" C:NO subjectAltName:example.com,conference.example.com",
			Perm:    PermPKI,
			Run:     func(c *Ctx, args []string) error { return runPKIGenerate(c, "pki csr", ".csr", args) },
		},
		{
			Words:   []string{"pki", "selfsigned"},
			Args:    []Arg{{Name: "base"}, attrs},
			Summary: "Make a new private key <base>.key and a self-signed certificate <base>.crt",
			Help:    attrHelp + ", days:<validity> (default 365).",
			Example: "pki selfsigned test CN:test.example.com days:30 key:ecdsa-p256",
			Perm:    PermPKI,
			Run:     func(c *Ctx, args []string) error { return runPKIGenerate(c, "pki selfsigned", ".crt", args) },
		},
		{
			Words:   []string{"pki", "inspect"},
			Args:    []Arg{file("file")},
			Summary: "Show what a key, certificate, CSR or bundle holds",
			Example: "pki inspect xmpp.crt",
			Perm:    PermRead,
			Run: func(c *Ctx, args []string) error {
				data, err := c.Files.ReadFile(args[0])
				if err != nil {
					return errorf("pki inspect: %v", err)
				}
				out, err := pki.Inspect(data, c.now())
				if err != nil {
					return errorf("pki inspect: %s: %v", args[0], err)
				}
				c.printf("%s\n", out)
				return nil
			},
		},
		{
			Words:   []string{"pki", "match"},
			Args:    []Arg{file("key"), file("crt")},
			Summary: "Check that a private key belongs to a certificate",
			Example: "pki match xmpp.key xmpp.crt",
			Perm:    PermRead,
			Run: func(c *Ctx, args []string) error {
				key, err := c.Files.ReadFile(args[0])
				if err != nil {
					return errorf("pki match: %v", err)
				}
				crt, err := c.Files.ReadFile(args[1])
				if err != nil {
					return errorf("pki match: %v", err)
				}
				if err := pki.Match(key, crt); err != nil {
					err = pki.NameInputs(err, map[string]string{"key": args[0], "certificate": args[1]})
					return errorf("pki match: %s and %s: %v", args[0], args[1], err)
				}
				c.printf("%s matches %s\n", args[0], args[1])
				return nil
			},
		},
		{
			Words:   []string{"pki", "verify"},
			Args:    []Arg{file("crt"), {Name: "bundle", Kind: ArgFile, Optional: true}},
			Summary: "Verify a certificate's chain against a CA bundle (intermediates first, root last)",
			Help:    "Without a bundle, the certificate is checked against the system's trusted roots.",
			Example: "pki verify xmpp.crt ca-bundle.pem",
			Perm:    PermRead,
			Run: func(c *Ctx, args []string) error {
				crt, err := c.Files.ReadFile(args[0])
				if err != nil {
					return errorf("pki verify: %v", err)
				}
				var bundle []byte
				if len(args) == 2 {
					if bundle, err = c.Files.ReadFile(args[1]); err != nil {
						return errorf("pki verify: %v", err)
					}
				}
				chain, err := pki.Verify(crt, bundle, c.now())
				if err != nil {
					names := map[string]string{"certificate": args[0]}
					if len(args) == 2 {
						names["bundle"] = args[1]
					}
					return errorf("pki verify: %v", pki.NameInputs(err, names))
				}
				c.printf("%s: verified\n", args[0])
				for i, s := range chain {
					c.printf("  %d  %s\n", i+1, s)
				}
				return nil
			},
		},
	}
}

func runPKIList(c *Ctx, args []string) error {
	entries, err := c.Files.List()
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		c.printf("The files area is empty: upload files with sftp, or make them with 'pki csr' or 'pki selfsigned'.\n")
		return nil
	}
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tKIND\tSUBJECT\tSANS\tEXPIRES")
	for _, e := range entries {
		kind, subject, sans, expires := "other", "-", "-", "-"
		if data, err := c.Files.ReadFile(e.Name); err == nil {
			s := pki.Summarize(data)
			kind = string(s.Kind)
			if s.Kind == pki.KindBundle {
				kind = fmt.Sprintf("bundle (%d)", s.Count)
			}
			if s.Detail != "" && (s.Kind == pki.KindKey || s.Kind == pki.KindPublicKey) {
				subject = s.Detail
			}
			if s.Subject != "" {
				subject = s.Subject
			}
			if len(s.SANs) > 0 {
				sans = strings.Join(s.SANs, ",")
			}
			if !s.NotAfter.IsZero() {
				expires = s.NotAfter.UTC().Format("2006-01-02")
				if !s.NotAfter.After(c.now()) {
					expires += " (expired)"
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, kind, subject, sans, expires)
	}
	return tw.Flush()
}

func runPKIGenerate(c *Ctx, what, ext string, args []string) error {
	base := args[0]
	if err := pki.CheckName(base + ".key"); err != nil {
		return errorf("%s: bad base name: %v", what, err)
	}
	req, err := pki.ParseAttributes(args[1:])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	keyName, outName := base+".key", base+ext
	for _, n := range []string{keyName, outName} {
		if c.Files.Exists(n) {
			return errorf("%s: %s already exists in the files area: remove or rename it first, or choose another base name", what, n)
		}
	}
	key, keyPEM, err := pki.GenerateKey(req.Key)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	var out []byte
	if ext == ".csr" {
		out, err = pki.CreateCSR(key, req)
	} else {
		out, err = pki.SelfSigned(key, req, c.now())
	}
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if err := c.Files.WriteFile(keyName, keyPEM, 0o600, true); err != nil {
		return errorf("%s: %v", what, err)
	}
	if err := c.Files.WriteFile(outName, out, 0o644, true); err != nil {
		c.Files.Remove(keyName)
		return errorf("%s: %v", what, err)
	}
	c.printf("Wrote %s and %s\n", keyName, outName)
	return nil
}
