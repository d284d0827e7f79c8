package server

import (
	"testing"

	"mellium.im/sasl"
)

// A client may send <auth/> without an initial response: the server asks
// for it with an empty challenge (RFC 6120 §6.4.2).
func TestSASLWithoutInitialResponse(t *testing.T) {
	f := start(t)
	c := f.dial()
	c.preauth("example.lan")
	neg := sasl.NewClient(sasl.Plain, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte("alice"), []byte("alice-password"), nil
	}))
	_, resp, err := neg.Step(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>`)
	if el := c.next(); el.Name.Local != "challenge" || el.Text() != "" {
		t.Fatalf("want an empty challenge, got %s", el)
	}
	c.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + b64(resp) + `</response>`)
	if el := c.next(); el.Name.Local != "success" {
		t.Fatalf("want success, got %s", el)
	}
}
