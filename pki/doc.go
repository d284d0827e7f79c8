// Package pki owns keys, CSRs, self-signed certificates, inspection, matching
// and chain verification, and the files area shared with SFTP.
//
// The crypto half is plain functions over PEM bytes: ParseAttributes turns the
// arguments of `pki csr` and `pki selfsigned` into a Request; GenerateKey,
// CreateCSR and SelfSigned produce PEM; Classify, Summarize and Inspect
// describe whatever an administrator uploaded; Match and Verify check a key
// against a certificate and a certificate against a CA bundle;
// ParseCertificates is the one decoder of PEM certificates (one, a chain or
// a bundle) that all of them use, and KeyPair builds from it the TLS
// certificate and chain an XMPP domain is served with. Every error is one
// line that says what is wrong and how to fix it.
package pki
