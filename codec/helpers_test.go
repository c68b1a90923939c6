package codec

import (
	"errors"
	"fmt"
	"strings"
)

// describe renders a parse result compactly, listing only the fields that
// are set, so table tests can state expectations as one string.
func describe(n int, err error, r *Request) string {
	if errors.Is(err, ErrIncomplete) {
		return fmt.Sprintf("incomplete n=%d", n)
	}
	if err != nil {
		return fmt.Sprintf("error %v n=%d", err, n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "n=%d %s", n, r.Cmd)
	asciiRetrieval := !r.Binary && (r.Cmd == CmdGet || r.Cmd == CmdGets || r.Cmd == CmdGat || r.Cmd == CmdGats)
	if r.Key != nil && !asciiRetrieval {
		fmt.Fprintf(&b, " key=%q", r.Key)
	}
	if len(r.Keys) > 0 {
		b.WriteString(" keys=[")
		for i, k := range r.Keys {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%q", k)
		}
		b.WriteByte(']')
	}
	if r.Value != nil {
		fmt.Fprintf(&b, " value=%q", r.Value)
	}
	if r.Flags != 0 {
		fmt.Fprintf(&b, " flags=%d", r.Flags)
	}
	if r.Exptime != 0 {
		fmt.Fprintf(&b, " exp=%d", r.Exptime)
	}
	if r.CAS != 0 {
		fmt.Fprintf(&b, " cas=%d", r.CAS)
	}
	if r.Delta != 0 {
		fmt.Fprintf(&b, " delta=%d", r.Delta)
	}
	if r.Initial != 0 {
		fmt.Fprintf(&b, " initial=%d", r.Initial)
	}
	if r.NoReply {
		b.WriteString(" noreply")
	}
	if r.Binary {
		fmt.Fprintf(&b, " op=%#02x", r.Opcode)
	}
	if r.Quiet {
		b.WriteString(" quiet")
	}
	if r.WithKey {
		b.WriteString(" withkey")
	}
	if r.ErrReply != nil {
		fmt.Fprintf(&b, " reply=%q", r.ErrReply)
	}
	if r.Status != 0 {
		fmt.Fprintf(&b, " status=%#02x", r.Status)
	}
	if r.Swallow != 0 {
		fmt.Fprintf(&b, " swallow=%d", r.Swallow)
	}
	if r.Close {
		b.WriteString(" close")
	}
	if r.Abort {
		b.WriteString(" abort")
	}
	if r.BadData {
		b.WriteString(" baddata")
	}
	if r.BadFlush {
		b.WriteString(" badflush")
	}
	if r.Flush {
		b.WriteString(" flush")
	}
	if r.Refused != CmdNone {
		fmt.Fprintf(&b, " refused=%s", r.Refused)
	}
	return b.String()
}

// sameRequest reports whether two parse results are equal field by field
// (byte slices by content).
func sameRequest(a, b *Request) bool {
	return describe(0, nil, a) == describe(0, nil, b) && a.Opaque == b.Opaque
}
