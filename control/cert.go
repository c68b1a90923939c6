package control

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// CertBinding ties a credential to a TLS client certificate: a connection
// that presents the certificate is logged in as the credential when its
// handshake completes. The zero value binds nothing.
type CertBinding struct {
	// SHA256 is the certificate's fingerprint: the SHA-256 of its DER
	// encoding, in lower-case hex ("" for none).
	SHA256 string `json:"cert_sha256,omitempty"`
	// CN is a subject common name ("" for none). It matches only a
	// certificate the server has verified against its client CAs
	// (memhive serve --tls-ca): anyone can put any name in a certificate
	// of their own.
	CN string `json:"cert_cn,omitempty"`
}

// Bound reports whether b binds anything.
func (b CertBinding) Bound() bool { return b.SHA256 != "" || b.CN != "" }

// maxCNLength is the longest subject CN accepted: X.509's upper bound
// (ub-common-name, RFC 5280).
const maxCNLength = 64

// Fingerprint is a certificate's SHA-256 fingerprint from its DER
// encoding, as CertBinding.SHA256 holds it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ParseFingerprint normalises a SHA-256 fingerprint written as 64 hex
// digits in either case, bare or in pairs separated by colons as
// `openssl x509 -fingerprint -sha256` prints it (after any "=").
func ParseFingerprint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		s = s[i+1:]
	}
	s = strings.ReplaceAll(s, ":", "")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("certificate fingerprint: want 64 hex digits (a SHA-256), got %q: %w", s, ErrInvalid)
	}
	return hex.EncodeToString(b), nil
}

// CertificateFile reads the first certificate of a PEM file and returns
// its fingerprint and subject CN.
func CertificateFile(pemBytes []byte) (fingerprint, cn string, err error) {
	for {
		var block *pem.Block
		block, pemBytes = pem.Decode(pemBytes)
		if block == nil {
			return "", "", errors.New("no PEM CERTIFICATE block in it")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return "", "", err
		}
		return Fingerprint(block.Bytes), cert.Subject.CommonName, nil
	}
}

// normalize checks b and returns it in canonical form.
func (b CertBinding) normalize() (CertBinding, error) {
	if b.SHA256 != "" {
		fp, err := ParseFingerprint(b.SHA256)
		if err != nil {
			return CertBinding{}, err
		}
		b.SHA256 = fp
	}
	if len(b.CN) > maxCNLength {
		return CertBinding{}, fmt.Errorf("certificate CN: longer than %d bytes: %w", maxCNLength, ErrInvalid)
	}
	for _, r := range b.CN {
		if r < ' ' || r == 0x7f {
			return CertBinding{}, fmt.Errorf("certificate CN %q: a control character: %w", b.CN, ErrInvalid)
		}
	}
	return b, nil
}
