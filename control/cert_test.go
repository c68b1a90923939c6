package control

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestParseFingerprint(t *testing.T) {
	const want = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	upper := strings.ToUpper(want)
	var pairs []string
	for i := 0; i < len(upper); i += 2 {
		pairs = append(pairs, upper[i:i+2])
	}
	colons := strings.Join(pairs, ":")
	for _, in := range []string{want, upper, colons, "sha256 Fingerprint=" + colons, " " + want + "\n"} {
		if got, err := ParseFingerprint(in); err != nil || got != want {
			t.Errorf("ParseFingerprint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", want[:62], want + "00", strings.Replace(want, "0", "g", 1), "sha1=" + want[:40]} {
		if got, err := ParseFingerprint(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseFingerprint(%q) = %q, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestCertificateFile(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app-1"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	// A key first, as in a combined file: skipped.
	file := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	fp, cn, err := CertificateFile(file)
	if err != nil || fp != Fingerprint(der) || cn != "app-1" {
		t.Fatalf("CertificateFile = %q, %q, %v; want %q, app-1", fp, cn, err, Fingerprint(der))
	}
	if _, _, err := CertificateFile([]byte("not pem")); err == nil {
		t.Error("CertificateFile of no PEM: no error")
	}
}

// bind sets both halves of a credential's binding.
func bind(s *Bolt, id uint32, b CertBinding) (Credential, error) {
	return s.UpdateCredential(id, CredentialUpdate{CertSHA256: &b.SHA256, CertCN: &b.CN})
}

func TestBindCertificate(t *testing.T) {
	s, path := openTest(t, Policy{MemoryBytes: 100 * mib, MinLimitBytes: mib})
	c, err := s.CreateCache(Cache{Name: "a", LimitBytes: mib, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	one, _, _ := s.CreateCredential(c.ID, NewCredential{Caps: CapAll, Primary: true})
	two, _, _ := s.CreateCredential(c.ID, NewCredential{Caps: CapWrite})
	var changes []Change
	defer s.Watch(func(ch Change) { changes = append(changes, ch) })()

	fp := strings.Repeat("AB", 32)
	got, err := bind(s, one.ID, CertBinding{SHA256: fp, CN: "app-1"})
	want := CertBinding{SHA256: strings.Repeat("ab", 32), CN: "app-1"}
	if err != nil || got.Cert != want || !got.Cert.Bound() || got.Caps != CapAll {
		t.Fatalf("bind: %+v, %v; want %+v", got, err, want)
	}
	if len(changes) != 1 || changes[0].Kind != CredentialChanged || changes[0].Credential.Cert != want {
		t.Fatalf("watchers saw %+v", changes)
	}
	refused := []struct {
		b    CertBinding
		want error
	}{
		{CertBinding{SHA256: fp}, ErrExists},
		{CertBinding{CN: "app-1"}, ErrExists},
		{CertBinding{SHA256: "abc"}, ErrInvalid},
		{CertBinding{CN: strings.Repeat("x", 65)}, ErrInvalid},
		{CertBinding{CN: "a\nb"}, ErrInvalid},
	}
	for _, r := range refused {
		// With a capability change in the same update: all or nothing.
		u := CredentialUpdate{Caps: new(CapAll), CertSHA256: &r.b.SHA256, CertCN: &r.b.CN}
		if _, err := s.UpdateCredential(two.ID, u); !errors.Is(err, r.want) {
			t.Errorf("bind %+v to another credential: %v, want %v", r.b, err, r.want)
		}
		if _, _, err := s.CreateCredential(c.ID, NewCredential{Caps: CapAll, Cert: r.b}); !errors.Is(err, r.want) {
			t.Errorf("create bound to %+v: %v, want %v", r.b, err, r.want)
		}
	}
	if _, err := bind(s, 999, CertBinding{CN: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("bind to no credential: %v", err)
	}
	all, _ := s.Credentials(c.ID)
	if cr, _ := s.Credential(two.ID); cr.Cert.Bound() || cr.Caps != CapWrite || len(changes) != 1 || len(all) != 2 {
		t.Errorf("refused changes changed something: %+v, %d changes, %d credentials", cr, len(changes), len(all))
	}
	// Rebinding the same credential to its own certificate is no clash.
	if _, err := bind(s, one.ID, CertBinding{SHA256: fp}); err != nil {
		t.Errorf("rebind: %v", err)
	}

	// The halves are set apart: one left nil stays as it is.
	cn := "worker"
	if cr, err := s.UpdateCredential(two.ID, CredentialUpdate{CertCN: &cn}); err != nil || cr.Cert != (CertBinding{CN: cn}) {
		t.Fatalf("bind a CN alone: %+v, %v", cr.Cert, err)
	}
	other := strings.Repeat("cd", 32)
	if cr, err := s.UpdateCredential(two.ID, CredentialUpdate{CertSHA256: &other}); err != nil || cr.Cert != (CertBinding{SHA256: other, CN: cn}) {
		t.Fatalf("then a fingerprint alone: %+v, %v", cr.Cert, err)
	}

	// A credential is created bound.
	third := strings.Repeat("ef", 32)
	cr, _, err := s.CreateCredential(c.ID, NewCredential{Caps: CapWrite, Cert: CertBinding{SHA256: strings.ToUpper(third)}})
	if err != nil || cr.Cert.SHA256 != third {
		t.Fatalf("create bound: %+v, %v", cr.Cert, err)
	}

	// The binding survives a reopen; the zero binding unbinds.
	s.Close()
	s2, err := Open(path, Policy{MemoryBytes: 100 * mib, MinLimitBytes: mib}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if cr, _ := s2.Credential(one.ID); cr.Cert.SHA256 != want.SHA256 || cr.Cert.CN != "" {
		t.Errorf("after reopen: %+v", cr.Cert)
	}
	if cr, err := bind(s2, one.ID, CertBinding{}); err != nil || cr.Cert.Bound() {
		t.Errorf("unbind: %+v, %v", cr.Cert, err)
	}
	if _, err := bind(s2, two.ID, CertBinding{SHA256: fp}); err != nil {
		t.Errorf("bind a freed certificate: %v", err)
	}
}
