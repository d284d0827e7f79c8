package store

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/parley-xmpp/parley/pki"
)

// The files the configuration uses (a domain's key, certificate and
// bundle) travel through the log with their contents, so that an admin
// uploads them once, on any node: every node writes them into its files
// area (server/files.go). The store holds the bytes; the files area holds
// the copy the engine and the shell read.
//
// The bucket is created by the first op that writes to it, so stores of
// an older layout need no migration.
var (
	bucketFiles   = []byte("files")
	bucketSecrets = []byte("secrets")
)

// Bounds of the stored files: one file, and how many the bucket holds.
// Keys, certificates and CA bundles fit well below MaxStoredFile (a
// bundle of every public root CA is about 200 KiB).
const (
	MaxStoredFile  = 1 << 20
	MaxStoredFiles = 256
)

// StoredFile is one file of the files area as the replicated store holds
// it. Mode is its permission bits: 0600 for a private key, 0644 for a
// certificate or bundle (as an SFTP upload gets).
type StoredFile struct {
	Name string      `json:"name"`
	Data []byte      `json:"data"`
	Mode os.FileMode `json:"mode"`
}

// FilePut stores a file's contents under its bare name, replacing what
// was stored under that name. Over MaxStoredFiles, the files no hosted
// domain names are dropped first; still over: ErrFull.
type FilePut struct {
	File StoredFile `json:"file"`
}

func (FilePut) Kind() OpKind { return "file.put" }

func (o FilePut) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	f := o.File
	if err := pki.CheckName(f.Name); err != nil {
		return nil, fmt.Errorf("file.put: %w", err)
	}
	if len(f.Data) > MaxStoredFile {
		return nil, fmt.Errorf("%s is larger than %d KiB, the most the cluster replicates of one file: %w", f.Name, MaxStoredFile>>10, ErrFull)
	}
	if f.Mode&^0o777 != 0 || f.Mode&0o600 != 0o600 {
		return nil, fmt.Errorf("file.put of %s: mode %o is not a file's permissions readable and writable by its owner", f.Name, f.Mode)
	}
	b, err := tx.CreateBucketIfNotExists(bucketFiles)
	if err != nil {
		return nil, err
	}
	if b.Get([]byte(f.Name)) == nil && countKeys(b) >= MaxStoredFiles {
		if err := dropUnnamedFiles(tx, b); err != nil {
			return nil, err
		}
		if countKeys(b) >= MaxStoredFiles {
			return nil, fmt.Errorf("the store holds %d files the configuration uses, the most it keeps: %w", MaxStoredFiles, ErrFull)
		}
	}
	return nil, putJSON(b, f.Name, f)
}

func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// dropUnnamedFiles deletes the stored files that no hosted domain and no
// federation setting names.
func dropUnnamedFiles(tx *bolt.Tx, b *bolt.Bucket) error {
	named := map[string]bool{string(tx.Bucket(bucketConfig).Get([]byte(FedTrust))): true}
	tx.Bucket(bucketDomains).ForEach(func(k, v []byte) error {
		var d Domain
		if jsonUnmarshal(v, &d) == nil {
			named[d.Key], named[d.Cert], named[d.Bundle] = true, true, true
		}
		return nil
	})
	var drop [][]byte
	b.ForEach(func(k, v []byte) error {
		if !named[string(k)] {
			drop = append(drop, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// StoredFile returns a stored file by name (ErrNotFound if none).
func (s *Store) StoredFile(name string) (StoredFile, error) {
	var f StoredFile
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFiles)
		if b == nil {
			return fmt.Errorf("file %s: %w", name, ErrNotFound)
		}
		ok, err := getJSON(b, name, &f)
		if err == nil && !ok {
			err = fmt.Errorf("file %s: %w", name, ErrNotFound)
		}
		return err
	})
	return f, err
}

// StoredFiles returns every stored file, by name.
func (s *Store) StoredFiles() ([]StoredFile, error) {
	var out []StoredFile
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFiles)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var f StoredFile
			if err := jsonUnmarshal(v, &f); err != nil {
				return err
			}
			out = append(out, f)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// DialbackSecretSize is the length of the cluster's dialback secret.
const DialbackSecretSize = 32

var keyDialback = []byte("dialback")

// DialbackSecretInit sets the cluster's one dialback secret (XEP-0185: a
// key made on one node verifies on every node) if none is set; one already
// set is kept, so nodes that propose at once agree on the first. The
// proposer makes the random bytes.
type DialbackSecretInit struct {
	Secret []byte `json:"secret"`
}

func (DialbackSecretInit) Kind() OpKind { return "secret.dialback-init" }

func (o DialbackSecretInit) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	if len(o.Secret) != DialbackSecretSize {
		return nil, fmt.Errorf("secret.dialback-init: the secret is %d bytes, not %d", len(o.Secret), DialbackSecretSize)
	}
	b, err := tx.CreateBucketIfNotExists(bucketSecrets)
	if err != nil {
		return nil, err
	}
	if b.Get(keyDialback) != nil {
		return nil, nil
	}
	return nil, b.Put(keyDialback, o.Secret)
}

// ErrNoSecret: no dialback secret is set yet (DialbackSecretInit).
var ErrNoSecret = errors.New("no dialback secret yet")

// DialbackSecret returns the cluster's dialback secret, or ErrNoSecret.
func (s *Store) DialbackSecret() ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketSecrets); b != nil {
			out = append([]byte(nil), b.Get(keyDialback)...)
		}
		return nil
	})
	if err == nil && len(out) == 0 {
		err = ErrNoSecret
	}
	return out, err
}
