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
